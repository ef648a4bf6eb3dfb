"""The one table of metrics: name, direction, scope, where it runs, how it is printed, and (for
the per-image CPU metrics) the function that computes it. Evaluation dispatches on it, tables
and plots read their arrows, decimals and scopes from it (docs/metrics.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def _scoot(result: np.ndarray, gt: np.ndarray) -> float:
    from facesketch.metrics import scoot

    return float(scoot.scoot(result, gt))


def _ssim(result: np.ndarray, gt: np.ndarray) -> float:
    from facesketch.metrics import similarity

    return float(similarity.ssim_matlab(result, gt)[0])


def _ms_ssim(result: np.ndarray, gt: np.ndarray) -> float:
    from facesketch.metrics import similarity

    return float(similarity.ms_ssim(result, gt)[0])


def _fsim(result: np.ndarray, gt: np.ndarray) -> float:
    from facesketch.metrics import similarity

    return float(similarity.fsim(result, gt)[0])


@dataclass(frozen=True)
class Metric:
    name: str
    lower_is_better: bool
    scope: str                    # image: one value per image; set: one value per set of images
    decimals: int = 3             # in tables
    cpu: Callable[[np.ndarray, np.ndarray], float] | None = None  # grey uint8 (result, gt) -> value
    sketches: bool = True         # computed by the sketch evaluation (metrics.names); else MetFaces' only


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("FID", lower_is_better=True, scope="set", decimals=2),   # batched on the device
    Metric("KID", lower_is_better=True, scope="set", decimals=4),   # the same Inception features as FID
    Metric("LPIPS", lower_is_better=True, scope="image"),            # batched on the device
    Metric("SCOOT", lower_is_better=False, scope="image", cpu=_scoot),
    Metric("FSIM", lower_is_better=False, scope="image", cpu=_fsim),
    Metric("SSIM", lower_is_better=False, scope="image", cpu=_ssim),
    Metric("MS-SSIM", lower_is_better=False, scope="image", cpu=_ms_ssim),
    Metric("Sem.", lower_is_better=False, scope="image", sketches=False),  # MetFaces (Table 4): metrics.semantic
)}
SKETCH_METRICS = tuple(n for n, m in METRICS.items() if m.sketches)  # what metrics.names may ask for
CPU_METRICS = tuple(n for n, m in METRICS.items() if m.cpu is not None)
LOWER_IS_BETTER = {n for n, m in METRICS.items() if m.lower_is_better}
SET_METRICS = tuple(n for n, m in METRICS.items() if m.scope == "set")
