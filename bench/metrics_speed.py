"""Metric speed on the full FS2K test set (1046 pairs): SCOOT, FSIM, SSIM and MS-SSIM.

Scores stand-in results (each aligned test sketch blurred and noised, written as PNGs) with the
same code path as ``facesketch evaluate``, and, on a subset, side by side with a baseline of the
usual way: one process, piq's FSIM. Then the whole test set twice: the first evaluation computes
and stores the ground truths' FSIM and SCOOT features (metrics/gt_features.py), every later one,
whichever method it scores, reads them back. Prints images per second and the ratios.

    FS2K_ARCHIVE=/path/FS2K.zip python bench/metrics_speed.py [--subset N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

METRICS = ["SCOOT", "FSIM", "SSIM", "MS-SSIM"]


def prepare(workdir: Path) -> Path:
    from facesketch.data.archive import extract
    from facesketch.data.fs2k import prepare as align

    if (workdir / "data" / "manifest.parquet").is_file():
        return workdir / "data"
    archive = os.environ.get("FS2K_ARCHIVE")
    if not archive or not Path(archive).is_file():
        raise SystemExit("set FS2K_ARCHIVE=/path/to/FS2K.zip")
    raw = extract(Path(archive), workdir / "raw")
    align(raw, workdir / "data", {"align": {"size": 250, "portrait_top": 0.12}})
    return workdir / "data"


def stand_in_results(data: Path, out: Path) -> None:
    manifest = pd.read_parquet(data / "manifest.parquet")
    rng = np.random.default_rng(0)
    out.mkdir(parents=True, exist_ok=True)
    for r in manifest[manifest.split == "test"].itertuples():
        target = out / f"{r.id}.png"
        if target.exists():
            continue
        im = Image.open(data / r.sketch).filter(ImageFilter.GaussianBlur(1.2))
        a = np.clip(np.asarray(im, dtype=np.float64) + rng.normal(0, 12, (250, 250)), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(target)


def baseline(data: Path, results: Path, ids: list[str]) -> float:
    """The usual way: one process; piq for FSIM and MS-SSIM; the same SCOOT and SSIM."""
    import piq
    import torch

    from facesketch.metrics import protocol, scoot, similarity

    manifest = pd.read_parquet(data / "manifest.parquet").set_index("id")
    t0 = time.perf_counter()
    for image_id in ids:
        gt = protocol.load_grey(data / manifest.loc[image_id].sketch)
        res = protocol.load_grey(results / f"{image_id}.png")
        scoot.scoot(res, gt)
        similarity.ssim_matlab(res, gt)
        x, y = (torch.from_numpy(a).float()[None, None] for a in (res, gt))
        piq.fsim(x, y, data_range=255.0, chromatic=False)
        piq.multi_scale_ssim(x, y, data_range=255.0)
    return time.perf_counter() - t0


def ours(data: Path, results: Path, out: Path, ids: list[str] | None,
         cache: Path | None = None) -> tuple[float, pd.DataFrame]:
    from facesketch.metrics.evaluate import score

    manifest = pd.read_parquet(data / "manifest.parquet")
    manifest = manifest[manifest.split == "test"]
    manifest.attrs["root"] = str(data)
    chosen = manifest if ids is None else manifest[manifest.id.isin(ids)]
    items = pd.DataFrame({"variant": "bench", "seed": 0, "style_asked": "Style1", "image_id": chosen.id,
                          "result": [str(results / f"{i}.png") for i in chosen.id]})
    t0 = time.perf_counter()
    df = score(items, manifest, {"names": METRICS, "framing": "aligned"}, out, "cpu", cache=cache)
    return time.perf_counter() - t0, df


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "facesketch-bench")
    p.add_argument("--subset", type=int, default=0, help="pairs for the side-by-side run (0 = all)")
    args = p.parse_args()
    data = prepare(args.workdir)
    results = args.workdir / "results"
    stand_in_results(data, results)
    test_ids = sorted(pd.read_parquet(data / "manifest.parquet").query("split == 'test'").id)
    subset = test_ids[: args.subset] if args.subset else test_ids
    cache = args.workdir / "gt-cache"  # score() keeps the ground-truth features in cache/gt_features

    t_base = baseline(data, results, subset)
    t_sub, _ = ours(data, results, args.workdir, subset)
    shutil.rmtree(cache, ignore_errors=True)
    t_cold, df_cold = ours(data, results, args.workdir, None, cache)
    t_warm, df = ours(data, results, args.workdir, None, cache)
    same = np.array_equal(df_cold.value.to_numpy(), df.value.to_numpy(), equal_nan=True)
    n = len(test_ids)
    print(f"machine: {os.cpu_count()} cores; metrics: {', '.join(METRICS)}")
    print(f"side by side on {len(subset)} pairs, no feature cache:")
    print(f"  baseline (one process, piq FSIM/MS-SSIM):     {t_base:6.1f} s  {len(subset) / t_base:6.1f} img/s")
    print(f"  facesketch (process pool, fast FSIM/MS-SSIM): {t_sub:6.1f} s  {len(subset) / t_sub:6.1f} img/s")
    print(f"  speed-up: {t_base / t_sub:.2f}x")
    print(f"full FS2K test set, {n} pairs:")
    print(f"  first evaluation (fills the ground-truth feature cache): {t_cold:5.1f} s ({n / t_cold:.1f} img/s)")
    print(f"  every later one (the cache warm; values {'identical' if same else 'DIFFERENT'}): "
          f"{t_warm:5.1f} s ({n / t_warm:.1f} img/s), {t_base / len(subset) * n / t_warm:.1f}x the baseline's rate")
    print(f"  target <= 20 s on 2 cores with the cache warm: {'met' if t_warm <= 20 else 'NOT met'}")
    means = df[df.scope == "image"].groupby("metric").value.mean()
    print("means on the stand-in results: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()))


if __name__ == "__main__":
    main()
