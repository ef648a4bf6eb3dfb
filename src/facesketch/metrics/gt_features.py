"""Ground-truth features of FSIM and SCOOT, computed once and kept on disk.

Every method of every table is scored against the same test sketches, and half of FSIM's work
(phase congruency and gradient maps) and of SCOOT's (the 32-vector) is the ground truth's side.
Those are stored per ground truth as computed (float32 maps, float64 vector), so a score from the
cache equals a fresh one bit for bit. Entries are keyed by the framed pixels (content_id, not the
path: a changed file or crop is another entry) under a folder named after the code that computes
them and the torch version (FFT rounding), so a change of either starts a new folder instead of
reusing stale features. About 0.5 MB per 250x250 sketch (0.55 GB for the FS2K test set).

A damaged entry is recomputed and replaced; a cache folder that cannot be written is reported
once and scoring goes on without it: the cache can make scoring faster, never wrong or failed.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from pathlib import Path

import numpy as np
import torch

from facesketch.errors import FacesketchError
from facesketch.metrics import fsim, scoot
from facesketch.metrics.protocol import content_id

log = logging.getLogger(__name__)


def code_version() -> str:
    """16 hex digits over the FSIM and SCOOT code and the torch version the features come from."""
    h = hashlib.sha256(torch.__version__.encode())
    for module in (fsim, scoot):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:16]


PARTS = {"fsim": ("pc", "gm"), "scoot": ("scoot",)}  # each metric's arrays in an entry


def _compute(gt: np.ndarray, parts=tuple(PARTS)) -> dict[str, np.ndarray]:
    entry = {}
    if "fsim" in parts:
        pc, gm = fsim.features(torch.from_numpy(gt).float()[None, None])
        entry.update(pc=pc.numpy(), gm=gm.numpy())
    if "scoot" in parts:
        entry["scoot"] = scoot.features(gt)
    return entry


def _valid(entry: dict[str, np.ndarray], gt: np.ndarray) -> bool:
    k = fsim.downsampling(*gt.shape)
    shape = (1, gt.shape[0] // k, gt.shape[1] // k)
    maps_ok = all(entry[m].shape == shape and entry[m].dtype == np.float32 and np.isfinite(entry[m]).all()
                  for m in ("pc", "gm"))
    return maps_ok and entry["scoot"].shape == (2 * scoot.GRID ** 2,) and np.isfinite(entry["scoot"]).all()


class GroundTruthFeatures:
    """FSIM's and SCOOT's features of ground truths, from memory, the folder, or computed."""

    def __init__(self, folder: Path | None):
        self.folder = None if folder is None else Path(folder) / code_version()
        self.memo: dict[str, dict[str, np.ndarray]] = {}

    def get(self, gt: np.ndarray, part: str) -> dict[str, np.ndarray]:
        """The entry of ``gt`` holding at least ``part`` (fsim or scoot). With a folder, entries are
        whole (stored for every later evaluation); without one, only what is asked is computed."""
        key = content_id(gt)
        if key not in self.memo:
            entry = self._read(key, gt)
            if entry is None:
                entry = _compute(gt) if self.folder is not None else {}
                self._write(key, entry)
            self.memo = {key: entry}  # results sorted by ground truth: the last one is all a chunk needs
        entry = self.memo[key]
        if not all(a in entry for a in PARTS[part]):
            entry.update(_compute(gt, (part,)))
        return entry

    def fsim(self, gt: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.get(gt, "fsim")
        return torch.from_numpy(e["pc"]), torch.from_numpy(e["gm"])

    def scoot(self, gt: np.ndarray) -> np.ndarray:
        return self.get(gt, "scoot")["scoot"]

    def _read(self, key: str, gt: np.ndarray) -> dict[str, np.ndarray] | None:
        if self.folder is None:
            return None
        path = self.folder / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as z:
                entry = {m: z[m] for m in ("pc", "gm", "scoot")}
        except (FileNotFoundError, NotADirectoryError):  # not stored yet; the folder's own problem: _write
            return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            log.warning("ground-truth feature cache: %s is damaged (%s); recomputing it", path, e)
            return None
        if not _valid(entry, gt):
            log.warning("ground-truth feature cache: %s does not fit its image; recomputing it", path)
            return None
        return entry

    def _write(self, key: str, entry: dict[str, np.ndarray]) -> None:
        if self.folder is None:
            return
        from facesketch.fileio import atomic_path

        try:
            with atomic_path(self.folder / f"{key}.npz") as tmp:
                np.savez(tmp, **entry)
        except (OSError, FacesketchError) as e:  # a full or read-only disk, a forbidden folder
            log.warning("ground-truth feature cache off: cannot write %s (%s)", self.folder, e)
            self.folder = None
