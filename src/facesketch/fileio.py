"""Atomic writes and checked reads.

Every output of the pipeline is written to a temporary name in the destination folder and
renamed when complete, so a killed job never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from facesketch.errors import DataError

_FS_HINTS = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space (quota)",
             errno.EROFS: "the file system is read-only: choose another folder",
             errno.EACCES: "make it writable or choose another folder",
             errno.EPERM: "make it writable or choose another folder"}


def write_error(path: str | os.PathLike, e: OSError) -> DataError:
    """A file-system error while writing ``path`` as the project's one-line error."""
    hint = _FS_HINTS.get(e.errno, "check the folder and the disk")
    return DataError(f"cannot write {path}: {e.strerror or e} ({hint}, then rerun)")


def check_writable(folder: str | os.PathLike) -> None:
    """Before any work: create ``folder`` if needed and prove a file can be written in it.

    A real write, not ``os.access``: that answers yes for root on a read-only mount.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise write_error(folder, e) from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary name keeps the final suffix (some writers choose the format by it).
    """
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp_path, path)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        if e.errno in _FS_HINTS:  # full disk, read-only or forbidden folder: the file and what to do
            raise write_error(path, e) from None
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, and setting it while worker
# threads write (alignment, maps) would briefly give their new folders mode 0777.
_UMASK = _read_umask()


def folder_mode() -> int:
    """The mode ``mkdir`` gives a new folder under the user's umask."""
    return 0o777 & ~_UMASK


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_parquet(path: str | os.PathLike, df) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def save_image(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save a uint8 HxW or HxWxC array as an image (format from the suffix), atomically."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"save_image wants uint8, got {array.dtype} for {path}")
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp)


def save_pil(path: str | os.PathLike, image: Image.Image, **kwargs) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, **kwargs)


def read_image(path: str | os.PathLike, mode: str | None = None) -> Image.Image:
    """Open and fully decode an image; a missing or corrupt file raises DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            if mode is not None and im.mode != mode:
                if mode in ("L", "RGB") and im.mode in ("RGBA", "LA", "PA", "P"):
                    # Transparent pixels of FS2K's RGBA sketches are paper: composite on white.
                    im = flatten_on_white(im)
                im = im.convert(mode)
            else:
                im = im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {e}") from e
    return im


def flatten_on_white(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def read_array(path: str | os.PathLike, mode: str | None = None) -> np.ndarray:
    return np.asarray(read_image(path, mode))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def git_blob_sha1(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The id git gives a file's content: SHA-1 of ``b"blob <size>\\0" + bytes``."""
    import hashlib

    size = os.path.getsize(path)
    h = hashlib.sha1()
    h.update(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
