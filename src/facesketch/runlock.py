"""One process per run folder: an exclusive lock that names its owner.

The lock is ``flock`` on ``<folder>/.lock``, so the kernel drops it when the owner dies (no stale
locks after a kill), while a live owner, even one Snakemake forgot after ``--unlock``, keeps it.
The file holds the owner's PID and host so that a refusal can name them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from facesketch.errors import DataError

LOCK_NAME = ".lock"


@contextlib.contextmanager
def run_lock(folder: Path, what: str = "run folder") -> Iterator[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"{folder}: this {what} is in use by {_owner(path)}; a second process would overwrite "
                            "its files. Wait for it to finish, or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        os.fsync(fd)
        yield path
    finally:
        os.close(fd)  # closing drops the lock


def _owner(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process (its PID and host are not yet written)"
    return f"PID {info.get('pid')} on host {info.get('host')} (since {info.get('since')})"
