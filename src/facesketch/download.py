"""Downloads through well-kept libraries: pooch checks the known SHA-256 and retries a failed or
corrupt download; gdown does the transfer (Google Drive's confirmation pages, a progress bar,
and a dropped connection continued with an HTTP Range request instead of restarted).

Resuming: pooch's own HTTP downloader cannot (it always starts at byte 0 and writes to a new
temporary name), so pooch hands every transfer to gdown, which can. gdown keeps the bytes it
received in ``<name>.download<8 characters>.part`` beside the destination and, with
``resume=True``, continues from them with ``Range: bytes=<received>-`` (and ``If-Range``, so a
changed remote file is fetched whole): within one call (its retries) and across calls, because
the name depends on the destination only. Run the same command again after an interrupted
download and it continues where it stopped; the hash check after it is unchanged.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

RETRIES = 3
TIMEOUT_S = 60
PARTIAL_SUFFIX = ".download"  # gdown appends 8 random characters and ".part" to this name


def partial_name(dest: str | os.PathLike) -> Path:
    """The name gdown downloads `dest` to; its unfinished bytes sit beside it as `<this>*.part`."""
    return Path(f"{dest}{PARTIAL_SUFFIX}")


def _gdown(output: Path, resume_as: Path, url: str | None = None, file_id: str | None = None) -> None:
    """gdown into `output` by way of partial_name(resume_as) (a name that stays the same from one
    call to the next, unlike the temporary files pooch and atomic_path hand over)."""
    import gdown

    part = partial_name(resume_as)
    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        gdown.download(url=url, id=file_id, output=str(part), quiet=False, resume=True, retries=RETRIES,
                       timeout=TIMEOUT_S, use_cookies=False)
    except Exception as e:  # gdown's and requests' errors, after gdown's own retries
        source = url or f"Google Drive file {file_id}"
        kept = sorted(part.parent.glob(part.name + "*.part"))
        again = f"; the bytes received are kept in {kept[0]}: run the same command to continue" if kept else ""
        raise OSError(f"download of {source} failed: {type(e).__name__}: {e}{again}") from e
    os.replace(part, output)


class _Transfer:
    """A pooch downloader: gdown's resumable transfer into pooch's temporary file."""

    def __init__(self, resume_as: Path):
        self.resume_as = resume_as

    def __call__(self, url: str, output_file, pooch_obj=None, check_only: bool = False):
        if check_only:
            return True
        _gdown(Path(output_file), self.resume_as, url=url)
        return None


def fetch_url(url: str, dest: Path, sha256: str | None = None, resume_as: Path | None = None) -> Path:
    """Download `url` to `dest` (its folder is the cache: an existing file with the right hash
    is not fetched again). An interrupted transfer continues at the next call with the same
    `resume_as` (default `dest`; give the final name when `dest` is a temporary one).
    Raises OSError/ValueError from pooch when every try failed."""
    import pooch

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    known = f"sha256:{sha256}" if sha256 else None
    fetcher = pooch.create(path=dest.parent, base_url="", registry={dest.name: known}, urls={dest.name: url},
                           retry_if_failed=RETRIES)
    return Path(fetcher.fetch(dest.name, downloader=_Transfer(Path(resume_as or dest)), progressbar=False))


def fetch_gdrive(file_id: str, dest: Path, url: str | None = None, resume_as: Path | None = None) -> Path:
    """A Google Drive file (by id) to `dest`, resumable as fetch_url. `url` replaces the Drive
    address (a mirror)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _gdown(dest, Path(resume_as or dest), url=url, file_id=None if url else file_id)
    return dest


def gdrive_folder_file(folder_id: str, path: str) -> str:
    """The Drive file id of `path` inside a shared Drive folder (DSINE publishes a folder, not
    file links), from gdown's listing of the folder; nothing is downloaded."""
    import gdown

    try:
        listing = gdown.download_folder(id=folder_id, skip_download=True, quiet=True, use_cookies=False,
                                        timeout=TIMEOUT_S)
    except Exception as e:
        raise OSError(f"could not list Google Drive folder {folder_id}: {type(e).__name__}: {e}") from e
    for f in listing or []:
        if Path(f.path).as_posix() == path:
            return f.id
    raise OSError(f"Google Drive folder {folder_id} has no {path}")
