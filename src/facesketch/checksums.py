"""Checksum lists: the SHA-256 of every file of a folder (or of one file), in ``sha256sum`` format.

Why they exist: Snakemake reruns a job when an input is newer than its output, unless the input is
a file of at most ``--max-checksum-file-size`` whose checksum it recorded when the job ran; it never
records one for a folder (snakemake/dag.py, ``is_same_checksum``). Files that DVC restores or git
checks out get new modification times, so folders and checkpoints read directly would redo
finished jobs. Rules that produce a folder, or a file too large to hash at every job's end
(checkpoints), also write its checksum list beside it (``<target>.sha256``), and the rules that
read it take the list as input instead: a new modification time with the same content reruns
nothing (Snakemake compares the list's recorded checksum), new content writes a new list and
reruns every reader.

``cd <folder> && sha256sum -c ../<folder>.sha256`` (or ``sha256sum -c model.pt.sha256`` beside a
file) checks a list by hand.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from facesketch.errors import DataError
from facesketch.fileio import write_text

log = logging.getLogger(__name__)

SUFFIX = ".sha256"
# Snakemake's own marker in folder outputs: written after the job, not part of the content
IGNORED = frozenset({".snakemake_timestamp"})


def checksums_path(target: str | os.PathLike) -> str:
    """The checksum list beside ``target`` (a folder or a file)."""
    return f"{target}{SUFFIX}"


def target_of(checksums: str | os.PathLike) -> str:
    """The folder or file a checksum list describes."""
    text = str(checksums)
    if not text.endswith(SUFFIX):
        raise ValueError(f"not a checksum list ({SUFFIX}): {text}")
    return text[: -len(SUFFIX)]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def entries(target: str | os.PathLike) -> list[tuple[str, str]]:
    """(sha256, path) of every file: paths relative to a folder (sorted), or the file's name."""
    target = Path(target)
    if target.is_file():
        return [(_sha256(target), target.name)]
    if not target.is_dir():
        raise DataError(f"cannot list the checksums of {target}: no such file or folder")
    found = []
    for folder, dirs, files in os.walk(target):
        dirs.sort()
        for name in files:
            path = Path(folder) / name
            rel = path.relative_to(target).as_posix()
            if rel not in IGNORED:
                found.append((_sha256(path), rel))
    return sorted(found, key=lambda e: e[1])


def write_checksums(target: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write the checksum list of ``target`` (default: beside it, ``<target>.sha256``), atomically."""
    out = Path(out or checksums_path(target))
    lines = entries(target)
    for _, rel in lines:
        if "\n" in rel or "\\" in rel:  # sha256sum escapes these; keep the list plain
            raise DataError(f"{target}: file name {rel!r} cannot be listed in a sha256sum checksum list")
    write_text(out, "".join(f"{digest}  {rel}\n" for digest, rel in lines))
    log.info("checksums of %s: %d file(s) -> %s", target, len(lines), out)
    return out
