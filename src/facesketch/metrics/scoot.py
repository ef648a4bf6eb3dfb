"""SCOOT (Fan et al., ICCV 2019), ported faithfully from the FS2K toolbox's definition.

For a uint8 grey image: quantise to 6 levels, level = clip(floor(I * 6 / 255), 0, 5); split
into a 4 x 4 grid of blocks with bounds floor(H v / 4), floor(W v / 4); per block, count
grey-level co-occurrences at distance 1 for the offsets (row, col) (0, 1), (-1, 1), (-1, 0),
(-1, -1), both pixels inside the block, non-symmetric; average the four count matrices and
round half away from zero; normalise to p (sum 1); take Contrast = sum (i - j)^2 p and
Energy = sum p^2. The 32-vector [C1, E1, ..., C16, E16] of the synthesis is compared with the
ground truth's: SCOOT = 1 / (1 + ||v_gt - v_syn||_2).

Common ports get this wrong in one of four places: quantisation (MATLAB graycomatrix's own
scaling is different), energy (sqrt of the sum), rounding of the mean matrix, or pooling.
"""

from __future__ import annotations

import numpy as np

LEVELS = 6
GRID = 4
OFFSETS = ((0, 1), (-1, 1), (-1, 0), (-1, -1))


def quantise(image: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(np.asarray(image, dtype=np.float64) * LEVELS / 255.0), 0, LEVELS - 1).astype(np.int64)


def block_ids(height: int, width: int) -> np.ndarray:
    """(H, W) index 0..15 of each pixel's block, bounds floor(H v / 4)."""
    rb = np.floor(height * np.arange(GRID + 1) / GRID).astype(int)
    cb = np.floor(width * np.arange(GRID + 1) / GRID).astype(int)
    rows = np.searchsorted(rb, np.arange(height), side="right") - 1
    cols = np.searchsorted(cb, np.arange(width), side="right") - 1
    return rows[:, None] * GRID + cols[None, :]


def glcm(levels: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """(16, 6, 6) rounded mean co-occurrence counts over the four offsets, per block."""
    h, w = levels.shape
    total = np.zeros(GRID * GRID * LEVELS * LEVELS, dtype=np.int64)
    for dr, dc in OFFSETS:
        r0, r1 = max(0, -dr), min(h, h - dr)
        c0, c1 = max(0, -dc), min(w, w - dc)
        a = levels[r0:r1, c0:c1]
        b = levels[r0 + dr:r1 + dr, c0 + dc:c1 + dc]
        ba = blocks[r0:r1, c0:c1]
        same = ba == blocks[r0 + dr:r1 + dr, c0 + dc:c1 + dc]
        code = (ba * LEVELS + a) * LEVELS + b
        total += np.bincount(code[same], minlength=total.size)
    mean = total.reshape(GRID * GRID, LEVELS, LEVELS) / len(OFFSETS)
    return np.floor(mean + 0.5)  # non-negative: half away from zero = half up


def features(image: np.ndarray) -> np.ndarray:
    """The 32-vector [C1, E1, ..., C16, E16] of a uint8 grey image."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"SCOOT takes a grey image, got shape {image.shape}")
    counts = glcm(quantise(image), block_ids(*image.shape))
    sums = counts.sum(axis=(1, 2), keepdims=True)
    p = np.divide(counts, sums, out=np.zeros_like(counts), where=sums > 0)
    i, j = np.meshgrid(np.arange(LEVELS), np.arange(LEVELS), indexing="ij")
    contrast = (p * (i - j) ** 2).sum(axis=(1, 2))
    energy = (p * p).sum(axis=(1, 2))
    return np.stack([contrast, energy], axis=1).reshape(-1)


def scoot(synthesis: np.ndarray, ground_truth: np.ndarray) -> float:
    if np.shape(synthesis) != np.shape(ground_truth):
        raise ValueError(f"SCOOT compares equal sizes, got {np.shape(synthesis)} and {np.shape(ground_truth)}")
    return scoot_from_features(features(synthesis), features(ground_truth))


def scoot_from_features(f_synthesis: np.ndarray, f_ground_truth: np.ndarray) -> float:
    return float(1.0 / (1.0 + np.linalg.norm(f_ground_truth - f_synthesis)))
