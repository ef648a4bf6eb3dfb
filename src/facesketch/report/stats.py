"""95% intervals and paired comparisons for the tables (beyond the papers).

Per-image metrics: a hierarchical bootstrap. Each replicate draws the seeds with replacement,
then, within each drawn seed, the test images with replacement, and averages; with one seed it
is the ordinary bootstrap of the mean over test images. Intervals are percentile intervals.

Set metrics (FID, KID): facesketch.metrics.evaluate stores, per seed, replicates of the metric
over resamplings of the generated set's features (facesketch.metrics.kid.set_replicates);
here a replicate draws seeds with replacement and, for each drawn seed, one of its stored
replicates at random. A resample with replacement repeats features, which lowers the set's
diversity and so shifts FID (and KID) upward; the replicates are re-centred on the estimate
before the percentile interval is taken (``recentre``), so the interval measures spread, not
that shift.

Paired comparisons: the same image indices are drawn for both methods in a replicate (their
seeds are drawn independently, the runs being independent); the p-value is the two-sided
bootstrap p-value of a zero difference, and Holm's step-down correction is applied across the
comparisons of a table.
"""

from __future__ import annotations

import numpy as np

N_BOOT = 2000
ALPHA = 0.05


def percentile_interval(reps: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    reps = np.asarray(reps, np.float64)
    reps = reps[np.isfinite(reps)]
    if len(reps) < 2:
        return float("nan"), float("nan")
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _image_means(values: np.ndarray, image_idx: np.ndarray) -> np.ndarray:
    """values (n,), image_idx (B, n) -> (B,) means of the resampled images."""
    return values[image_idx].mean(axis=1)


def mean_replicates(per_seed: list[np.ndarray], n_boot: int = N_BOOT, rng=None,
                    image_idx: np.ndarray | None = None) -> np.ndarray:
    """(n_boot,) hierarchical bootstrap replicates of the mean over seeds of the mean over
    images. ``per_seed``: one array of finite per-image values per seed (all of one length when
    ``image_idx``, (n_boot, n) shared image draws, is given)."""
    rng = np.random.default_rng(0) if rng is None else rng
    k = len(per_seed)
    seeds = rng.integers(0, k, (n_boot, k)) if k > 1 else np.zeros((n_boot, 1), int)
    out = np.zeros(n_boot)
    for j in range(k):
        # each seed position of each replicate gets its own image draw (unless paired draws are given)
        cols = np.empty(n_boot)
        for s in range(k):
            rows = np.flatnonzero(seeds[:, j] == s)
            if not len(rows):
                continue
            vals = np.asarray(per_seed[s], np.float64)
            idx = image_idx[rows] if image_idx is not None else rng.integers(0, len(vals), (len(rows), len(vals)))
            cols[rows] = _image_means(vals, idx)
        out += cols
    return out / k


def set_replicates_over_seeds(per_seed_reps: list[np.ndarray], n_boot: int = N_BOOT, rng=None,
                              rep_idx: np.ndarray | None = None) -> np.ndarray:
    """(n_boot,) replicates of the mean over seeds of a set metric from each seed's stored
    replicates. ``rep_idx`` (n_boot,) pins which stored replicate is used (paired draws)."""
    rng = np.random.default_rng(0) if rng is None else rng
    k = len(per_seed_reps)
    seeds = rng.integers(0, k, (n_boot, k)) if k > 1 else np.zeros((n_boot, 1), int)
    out = np.zeros(n_boot)
    for j in range(k):
        for s in range(k):
            rows = np.flatnonzero(seeds[:, j] == s)
            reps = np.asarray(per_seed_reps[s], np.float64)
            pick = rep_idx[rows] % len(reps) if rep_idx is not None else rng.integers(0, len(reps), len(rows))
            out[rows] += reps[pick]
    return out / k


def recentre(reps: np.ndarray, point: float) -> np.ndarray:
    """Replicates shifted so that their mean is the estimate (bias-corrected percentile interval)."""
    reps = np.asarray(reps, np.float64)
    ok = np.isfinite(reps)
    if not ok.any() or not np.isfinite(point):
        return reps
    return reps - (reps[ok].mean() - point)


def bootstrap_p(diff_reps: np.ndarray) -> float:
    """Two-sided bootstrap p-value of 'no difference': twice the smaller tail beyond 0."""
    d = np.asarray(diff_reps, np.float64)
    d = d[np.isfinite(d)]
    if not len(d):
        return float("nan")
    tail = min((d <= 0).sum(), (d >= 0).sum())
    return float(min(1.0, 2.0 * (tail + 1) / (len(d) + 1)))


def paired_image_diff(a: list[np.ndarray], b: list[np.ndarray], n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Method a minus method b on the same test images: a and b are per-seed arrays over the
    same images in the same order. {diff, lo, hi, p}."""
    n = len(a[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, (n_boot, n))
    ra = mean_replicates(a, n_boot, rng, image_idx=idx)
    rb = mean_replicates(b, n_boot, rng, image_idx=idx)
    point = float(np.mean([np.nanmean(x) for x in a]) - np.mean([np.nanmean(x) for x in b]))
    lo, hi = percentile_interval(ra - rb)
    return {"diff": point, "lo": lo, "hi": hi, "p": bootstrap_p(ra - rb)}


def paired_set_diff(a_reps: list[np.ndarray], b_reps: list[np.ndarray], a_point: float, b_point: float,
                    n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """The same for a set metric: stored replicate i of both methods resampled the same images."""
    rng = np.random.default_rng(seed)
    n_rep = min(len(r) for r in a_reps + b_reps)
    pin = rng.integers(0, n_rep, n_boot)
    ra = set_replicates_over_seeds(a_reps, n_boot, rng, rep_idx=pin)
    rb = set_replicates_over_seeds(b_reps, n_boot, rng, rep_idx=pin)
    diff = recentre(ra - rb, a_point - b_point)
    lo, hi = percentile_interval(diff)
    return {"diff": float(a_point - b_point), "lo": lo, "hi": hi, "p": bootstrap_p(diff)}


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count)."""
    p = np.asarray(pvalues, np.float64)
    ok = np.flatnonzero(np.isfinite(p))
    adj = np.full(len(p), np.nan)
    m = len(ok)
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()
