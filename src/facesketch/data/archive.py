"""Getting FS2K.zip: a local copy or a Google Drive download, checked, then extracted safely.

Safe extraction: every entry must be a plain file or folder under ``FS2K/``, with a relative
path free of ``..``, drive letters and backslashes; links and device files are refused, and
so is an archive whose contents would exceed a size cap. The tree is extracted into a
temporary folder and renamed into place only when every entry is written, so a killed
extraction never leaves a tree that looks complete.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from facesketch.errors import DataError, UnsafeArchiveError
from facesketch.fileio import atomic_path, folder_mode, sha256_file, write_json
from facesketch.progress import progress

log = logging.getLogger(__name__)

ROOT = "FS2K"
MAX_TOTAL_BYTES = 4 << 30  # the real archive unpacks to ~150 MB; refuse zip bombs
MANUAL_HINT = (
    "Download FS2K.zip by hand from https://drive.google.com/file/d/{id}/view (or the Baidu "
    "mirror named in the FS2K README) and give its path in config (fs2k.archive) or in the "
    "environment variable FS2K_ARCHIVE."
)


def fetch(out: Path, source: str | None, gdrive_id: str, sha256: str | None) -> Path:
    """Put the archive at ``out``: copied from ``source`` when given, else downloaded."""
    out = Path(out)
    if out.is_file() and sha256 and sha256_file(out) == sha256:
        # the verified copy is the input: up to date wherever the original lies now, or if it is gone
        log.info("%s matches fs2k.sha256: kept", out)
        return out
    if source:
        src = Path(source).expanduser()
        if src.is_dir():
            raise DataError(f"FS2K archive {src} (from fs2k.archive or FS2K_ARCHIVE) is a folder; give the path "
                            "of the FS2K.zip file itself")
        if not src.is_file():
            raise DataError(f"FS2K archive not found: {src} (from fs2k.archive or FS2K_ARCHIVE)")
        with atomic_path(out) as tmp:
            shutil.copyfile(src, tmp)
            _check_sha(tmp, sha256, shown=src)
        log.info("copied %s -> %s", src, out)
        return out
    with atomic_path(out) as tmp:
        _download_gdrive(gdrive_id, tmp, resume_as=out)
        _check_sha(tmp, sha256, shown=f"download of Google Drive file {gdrive_id}")
    return out


def _check_sha(path: Path, expected: str | None, shown) -> None:
    if not expected:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise DataError(
            f"{shown}: SHA-256 {actual} does not match fs2k.sha256 {expected}; the file is "
            "corrupt or not the official FS2K.zip (set fs2k.sha256: null to accept it anyway)"
        )


def _download_gdrive(file_id: str, dest: Path, resume_as: Path) -> None:
    # gdown: Drive's confirmation pages, retries that resume the transfer (the next run continues
    # an interrupted one: its bytes are kept beside `resume_as`), a progress bar
    from facesketch.download import fetch_gdrive

    hint = MANUAL_HINT.format(id=file_id)
    try:
        fetch_gdrive(file_id, dest, resume_as=resume_as)
    except Exception as e:  # gdown raises its own errors and requests' on the network
        raise DataError(f"could not download FS2K from Google Drive ({type(e).__name__}: {e}). {hint}") from e
    if not zipfile.is_zipfile(dest):
        raise DataError(f"what Google Drive sent for {file_id} is not a zip archive. {hint}")


# --- safe extraction ----------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    name: str
    is_dir: bool
    size: int


def _check_name(raw: str, archive: Path, root: str = ROOT) -> str:
    where = f"{archive}: entry {raw!r}"
    if "\\" in raw or "\0" in raw:
        raise UnsafeArchiveError(f"{where} has a backslash or NUL in its name")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise UnsafeArchiveError(f"{where} is an absolute path")
    parts = PurePosixPath(raw).parts
    if any(p == ".." for p in parts):
        raise UnsafeArchiveError(f"{where} climbs out of the archive with '..'")
    clean = "/".join(p for p in parts if p not in ("", "."))
    if clean != root and not clean.startswith(root + "/"):
        raise UnsafeArchiveError(f"{where} lies outside {root}/")
    return clean


def _zip_entries(zf: zipfile.ZipFile, archive: Path, root: str = ROOT) -> list[Entry]:
    entries = []
    for info in zf.infolist():
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip tool stored no Unix mode
        if kind == stat.S_IFLNK:
            raise UnsafeArchiveError(f"{archive}: entry {info.filename!r} is a symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchiveError(f"{archive}: entry {info.filename!r} is not a plain file or folder")
        name = _check_name(info.filename, archive, root)
        entries.append(Entry(name, info.is_dir(), info.file_size))
    return entries


def _tar_entries(tf: tarfile.TarFile, archive: Path, root: str = ROOT) -> list[Entry]:
    entries = []
    for member in tf.getmembers():
        if member.issym() or member.islnk():
            raise UnsafeArchiveError(f"{archive}: entry {member.name!r} is a link")
        if not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(f"{archive}: entry {member.name!r} is not a plain file or folder")
        entries.append(Entry(_check_name(member.name, archive, root), member.isdir(), member.size))
    return entries


def list_safe_entries(archive: Path, root: str = ROOT) -> list[Entry]:
    """Every entry of the archive, checked to lie under ``root/``; raises UnsafeArchiveError on the first bad one."""
    archive = Path(archive)
    if archive.is_dir():
        raise DataError(f"{archive} is a folder; give the path of the FS2K.zip file itself")
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                entries = _zip_entries(zf, archive, root)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                entries = _tar_entries(tf, archive, root)
        else:
            raise DataError(f"{archive} is neither a zip nor a tar archive")
    except _DAMAGED as e:
        raise DataError(f"{archive}: the archive's index is damaged ({e}); delete it and fetch it again") from None
    total = sum(e.size for e in entries)
    if total > MAX_TOTAL_BYTES:
        raise UnsafeArchiveError(f"{archive} would unpack to {total / 2**30:.1f} GiB, over the "
                                 f"{MAX_TOTAL_BYTES / 2**30:.0f} GiB cap")
    return entries


def extract(archive: Path, dest: Path, root: str = ROOT) -> Path:
    """Extract ``archive`` so that ``dest/<root>/...`` exists (FS2K, APDrawingDB); all or nothing."""
    archive, dest = Path(archive), Path(dest)
    entries = list_safe_entries(archive, root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        os.chmod(staging, folder_mode())  # mkdtemp makes 0700; the tree gets the user's umask like every output
        _extract_into(archive, entries, staging, root)
        write_json(staging / "extracted.json", {"archive": str(archive), "files": sum(not e.is_dir for e in entries)})
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("extracted %d files from %s into %s", len(entries), archive, dest)
    return dest


_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, tarfile.TarError)


def _damaged(archive: Path, member: str, e: Exception) -> DataError:
    return DataError(f"{archive}: entry {member!r} is damaged ({e}); the archive is corrupt or cut short: "
                     "delete it and fetch it again")


def _extract_into(archive: Path, entries: list[Entry], staging: Path, root: str = ROOT) -> None:
    files = [e for e in entries if not e.is_dir]
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            by_name = {_check_name(i.filename, archive, root): i for i in zf.infolist()}
            _copy_members(archive, files, staging, lambda name: zf.open(by_name[name]))
    else:
        with tarfile.open(archive) as tf:
            by_name = {_check_name(m.name, archive, root): m for m in tf.getmembers()}
            _copy_members(archive, files, staging, lambda name: tf.extractfile(by_name[name]))
    for e in entries:
        if e.is_dir:
            (staging / e.name).mkdir(parents=True, exist_ok=True)


def _copy_members(archive: Path, files: list[Entry], staging: Path, open_member) -> None:
    """Each checked entry's bytes into ``staging``; a damaged member is a one-line error."""
    for e in progress(files, desc="extract", unit="file"):
        target = staging / e.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open_member(e.name) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        except _DAMAGED as err:
            raise _damaged(archive, e.name, err) from None
