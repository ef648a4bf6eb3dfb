"""Intervals and paired comparisons of table cells from the per-image metrics Parquet
(the statistics themselves: facesketch.report.stats).

Per-image metrics: one array of values per seed (test images of the cell's style scope).
Set metrics (FID, KID): each seed's stored bootstrap replicates (scope 'set_boot').
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd

from facesketch.metrics.catalogue import SET_METRICS
from facesketch.report import stats


def _rng(*key) -> np.random.Generator:
    """Reproducible per cell: the same inputs give the same interval in every run."""
    return np.random.default_rng(zlib.crc32("|".join(map(str, key)).encode()))


def _image_part(df: pd.DataFrame, source: str, metric: str, scope: str) -> pd.DataFrame:
    d = df[(df.variant == source) & (df.metric == metric) & (df.scope == "image")]
    return d if scope == "all" else d[d.style_gt == scope]


def _boot_part(df: pd.DataFrame, source: str, metric: str, scope: str) -> pd.DataFrame:
    if "replicate" not in df:
        return df.iloc[0:0]
    return df[(df.variant == source) & (df.metric == metric) & (df.scope == "set_boot") & (df.style_gt == scope)]


def per_seed_values(df: pd.DataFrame, source: str, metric: str, scope: str) -> dict[int, pd.Series]:
    """{seed: per-image values indexed by image id}, seeds with at least one finite value."""
    out = {}
    for seed, g in _image_part(df, source, metric, scope).groupby("seed"):
        s = g.set_index("image_id").value.astype(float)
        if np.isfinite(s).any():
            out[int(seed)] = s
    return out


def per_seed_replicates(df: pd.DataFrame, source: str, metric: str, scope: str) -> dict[int, np.ndarray]:
    out = {}
    for seed, g in _boot_part(df, source, metric, scope).groupby("seed"):
        reps = g.sort_values("replicate").value.to_numpy(float)
        if np.isfinite(reps).all() and len(reps):
            out[int(seed)] = reps
    return out


def cell_interval(df: pd.DataFrame, source: str, metric: str, scope: str, n_boot: int = stats.N_BOOT,
                  alpha: float = stats.ALPHA, point: float = math.nan) -> tuple[float, float]:
    """(lo, hi) of the cell's (1 - alpha) interval; NaN when it cannot be had. ``point``: the
    cell's value, on which a set metric's replicates are re-centred."""
    rng = _rng(source, metric, scope)
    if metric in SET_METRICS:
        reps = per_seed_replicates(df, source, metric, scope)
        if not reps:
            return math.nan, math.nan
        over_seeds = stats.set_replicates_over_seeds(list(reps.values()), n_boot, rng)
        return stats.percentile_interval(stats.recentre(over_seeds, point), alpha)
    values = per_seed_values(df, source, metric, scope)
    if not values or sum(np.isfinite(s).sum() for s in values.values()) < 2:
        return math.nan, math.nan
    arrays = [s[np.isfinite(s.to_numpy(float))].to_numpy(float) for s in values.values()]
    return stats.percentile_interval(stats.mean_replicates(arrays, n_boot, rng), alpha)


def compare(df: pd.DataFrame, a: str, b: str, metric: str, scope: str, a_point: float, b_point: float,
            n_boot: int = stats.N_BOOT) -> dict | None:
    """Paired a - b on the same test images: {diff, lo, hi, p, n_images}, or None when the two
    share fewer than two test images (or have no replicates, for FID/KID)."""
    seed = zlib.crc32(f"{a}|{b}|{metric}|{scope}".encode())
    if metric in SET_METRICS:
        ra, rb = per_seed_replicates(df, a, metric, scope), per_seed_replicates(df, b, metric, scope)
        if not ra or not rb or not (np.isfinite(a_point) and np.isfinite(b_point)):
            return None
        sets = df[(df.variant == a) & (df.metric == metric) & (df.scope == "set") & (df.style_gt == scope)]
        na = sets.n_images.max() if len(sets) else 0
        out = stats.paired_set_diff(list(ra.values()), list(rb.values()), a_point, b_point, n_boot, seed)
        return out | {"n_images": int(na)}
    va, vb = per_seed_values(df, a, metric, scope), per_seed_values(df, b, metric, scope)
    if not va or not vb:
        return None
    # the test images with a finite value in every seed of both methods
    common = None
    for s in list(va.values()) + list(vb.values()):
        ok = set(s.index[np.isfinite(s.to_numpy(float))])
        common = ok if common is None else common & ok
    common = sorted(common or ())
    if len(common) < 2:
        return None
    out = stats.paired_image_diff([s.loc[common].to_numpy(float) for s in va.values()],
                                  [s.loc[common].to_numpy(float) for s in vb.values()], n_boot, seed)
    return out | {"n_images": len(common)}


def reference_rows(table: dict) -> dict[int, int]:
    """{row index: index of the row it is compared with} from the table's `reference`."""
    ref = table.get("reference")
    rows = table["rows"]
    if not ref:
        return {}
    if ref == "previous":
        return {i: i - 1 for i in range(1, len(rows))}
    idx = [i for i, r in enumerate(rows) if r["label"] == ref]
    if not idx:
        from facesketch.errors import ConfigError

        raise ConfigError(f"tables: reference '{ref}' is not a row label of table '{table['title']}'")
    return {i: idx[0] for i in range(len(rows)) if i != idx[0]}


def add_comparisons(spec: dict, metrics: pd.DataFrame, long: pd.DataFrame) -> pd.DataFrame:
    """Columns vs (the reference row's label), ref_diff, ref_lo, ref_hi, ref_p, ref_p_holm, ref_sig
    on ``long``; Holm's correction runs over every comparison of one table in one style scope."""
    st = spec.get("statistics", {})
    n_boot, alpha = int(st.get("replicates", stats.N_BOOT)), float(st.get("alpha", stats.ALPHA))
    long = long.copy()
    for col in ("ref_diff", "ref_lo", "ref_hi", "ref_p", "ref_p_holm"):
        long[col] = math.nan
    long["vs"] = ""
    long["ref_n"] = 0
    long["ref_sig"] = False
    for tname, table in spec["tables"].items():
        pairs = reference_rows(table)
        if not pairs:
            continue
        t = long[long.table == tname]
        for scope, part in t.groupby("style"):
            done = []
            for i, j in pairs.items():
                for metric in table["metrics"]:
                    a = part[(part.row == i) & (part.metric == metric)]
                    b = part[(part.row == j) & (part.metric == metric)]
                    if a.empty or b.empty or not a.source.iloc[0] or not b.source.iloc[0]:
                        continue
                    res = compare(metrics, a.source.iloc[0], b.source.iloc[0], metric, scope,
                                  float(a.ours.iloc[0]), float(b.ours.iloc[0]), n_boot)
                    idx = a.index[0]
                    long.loc[idx, "vs"] = table["rows"][j]["label"]
                    if res is None:
                        continue
                    long.loc[idx, ["ref_diff", "ref_lo", "ref_hi", "ref_p"]] = [res["diff"], res["lo"], res["hi"],
                                                                               res["p"]]
                    long.loc[idx, "ref_n"] = res["n_images"]
                    done.append(idx)
            if done:
                adj = stats.holm(long.loc[done, "ref_p"].tolist())
                long.loc[done, "ref_p_holm"] = adj
                long.loc[done, "ref_sig"] = [bool(np.isfinite(p) and p < alpha) for p in adj]
    return long
