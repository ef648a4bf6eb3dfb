"""Choosing the device, and giving each concurrent GPU job a GPU of its own.

Snakemake schedules ``resources: gpu=1`` jobs up to ``--resources gpu=N`` at a time but does
not say which GPU each should use. A job therefore takes the first GPU whose lock file it can
lock (``fcntl.flock``, released by the OS when the process ends, even if it is killed) and
logs which one it took. Locks live in ``$FACESKETCH_LOCK_DIR`` (default: the system temp
folder), shared by every job of the machine; only the devices CUDA shows (CUDA_VISIBLE_DEVICES,
as a cluster scheduler sets it) are candidates.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_held: list = []  # open lock files, kept for the life of the process
_announced = False


def _lock_dir() -> Path:
    d = Path(os.environ.get("FACESKETCH_LOCK_DIR") or tempfile.gettempdir()) / "facesketch-gpu-locks"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _try_lock(index: int) -> bool:
    import fcntl

    f = open(_lock_dir() / f"gpu{index}.lock", "a+")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return False
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    _held.append(f)
    return True


def acquire_gpu(wait_s: float = 600.0) -> int:
    """Lock and return the index of a free visible GPU; waits while every one is taken."""
    n = torch.cuda.device_count()
    deadline = time.monotonic() + wait_s
    while True:
        for i in range(n):
            if _try_lock(i):
                return i
        if time.monotonic() > deadline:
            raise RuntimeError(f"all {n} GPUs stayed locked for {wait_s:.0f}s ({_lock_dir()})")
        time.sleep(2.0)


def pick(requested: str = "auto") -> torch.device:
    """'auto' = a locked free GPU when CUDA works, else the CPU (said once); 'cpu'; 'cuda[:i]'."""
    global _announced
    if requested == "cpu":
        return torch.device("cpu")
    if requested.startswith("cuda") and ":" in requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        index = acquire_gpu()
        torch.cuda.set_device(index)
        log.info("using GPU %d (%s), locked for this job", index, torch.cuda.get_device_name(index))
        return torch.device("cuda", index)
    if requested.startswith("cuda"):
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    if not _announced:
        log.info("CUDA not available: running on the CPU")
        _announced = True
    return torch.device("cpu")
