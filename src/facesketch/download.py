"""Downloads through well-kept libraries: pooch checks the known SHA-256 and retries a failed or
corrupt download; gdown does the transfer (Google Drive's confirmation pages, a progress bar,
and a dropped connection continued with an HTTP Range request instead of restarted)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

RETRIES = 3
TIMEOUT_S = 60


def _gdown(output: Path, url: str | None = None, file_id: str | None = None) -> None:
    """gdown into `output`, by way of `<output>.gdown`: gdown takes an existing file (the empty
    temporary file pooch or atomic_path hands over) for a finished download."""
    import gdown

    part = Path(f"{output}.gdown")
    try:
        gdown.download(url=url, id=file_id, output=str(part), quiet=False, resume=True, retries=RETRIES,
                       timeout=TIMEOUT_S, use_cookies=False)
    except Exception as e:  # gdown's and requests' errors, after gdown's own retries
        for leftover in part.parent.glob(part.name + "*"):  # a temporary name is never resumed
            leftover.unlink(missing_ok=True)
        source = url or f"Google Drive file {file_id}"
        raise OSError(f"download of {source} failed: {type(e).__name__}: {e}") from e
    os.replace(part, output)


def _transfer(url: str, output_file, pooch_obj=None, check_only: bool = False):
    """A pooch downloader: gdown's resumable transfer into pooch's temporary file."""
    if check_only:
        return True
    _gdown(Path(output_file), url=url)
    return None


def fetch_url(url: str, dest: Path, sha256: str | None = None) -> Path:
    """Download `url` to `dest` (its folder is the cache: an existing file with the right hash
    is not fetched again). Raises OSError/ValueError from pooch when every try failed."""
    import pooch

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    known = f"sha256:{sha256}" if sha256 else None
    fetcher = pooch.create(path=dest.parent, base_url="", registry={dest.name: known}, urls={dest.name: url},
                           retry_if_failed=RETRIES)
    return Path(fetcher.fetch(dest.name, downloader=_transfer, progressbar=False))


def fetch_gdrive(file_id: str, dest: Path, url: str | None = None) -> Path:
    """A Google Drive file (by id) to `dest`, resumable. `url` replaces the Drive address (a mirror)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _gdown(dest, url=url, file_id=None if url else file_id)
    return dest
