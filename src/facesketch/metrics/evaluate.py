"""Scoring sketches under the FS2K protocol (docs/metrics.md) into one Parquet of per-image values.

Rows: variant, seed, style_asked, style_gt, image_id, metric, value, scope ('image', or 'set'
for FID and KID, properties of a set: per seed and style, and per seed over all styles; or
'set_boot' for their bootstrap replicates over resamplings of the generated set, numbered in
``replicate``, -1 elsewhere), n_images, reason, replicate. A value that cannot be computed
(an unreadable or missing result, weights that are not installed when ``metrics.allow_missing``
is true) is NaN with the reason, so one bad image never silently shifts a mean and never stops
the others being scored.

SCOOT, SSIM, MS-SSIM and FSIM run in a process pool (one process per core, one thread each),
dispatched through the table of metrics (facesketch.metrics.catalogue); LPIPS and FID run
batched on the device.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from facesketch import STYLES
from facesketch.data.fs2k import fs2k_id, load_manifest
from facesketch.errors import DataError, FacesketchError, WeightsError
from facesketch.fileio import read_array, write_parquet
from facesketch.metrics import inputs, protocol
from facesketch.metrics.catalogue import CPU_METRICS, LOWER_IS_BETTER, METRICS, SET_METRICS  # noqa: F401 (re-exported)
from facesketch.metrics.inputs import read_result_grey
from facesketch.metrics.protocol import content_id  # noqa: F401 (the FID cache's key; re-exported)
from facesketch.progress import progress

log = logging.getLogger(__name__)

COLUMNS = ["variant", "seed", "style_asked", "style_gt", "image_id", "metric", "value", "scope", "n_images", "reason",
           "replicate", "n_expected"]


@dataclass(frozen=True)
class Job:
    """One result image to score, with everything a worker needs to frame it."""
    key: int
    result: str | None
    gt_framing: str            # aligned | native
    result_framing: str        # aligned | original
    gt_aligned: str
    gt_source: str
    orig_width: int
    orig_height: int
    crop_x: int
    crop_y: int
    crop_size: int


def _job(key: int, result: Path | None, row, root: Path, gt_framing: str, result_framing: str) -> Job:
    return Job(key, None if result is None else str(result), gt_framing, result_framing, str(root / row.sketch),
               str(row.sketch_source), int(row.orig_width), int(row.orig_height), int(row.crop_x),
               int(row.crop_y), int(row.crop_size))


def load_pair(job: Job) -> tuple[np.ndarray, np.ndarray]:
    """(result, ground truth), grey uint8, same framing and size."""
    if job.result is None:
        raise DataError("no result image")
    if job.gt_framing == "aligned":
        gt = protocol.load_grey(Path(job.gt_aligned))
    else:
        full = protocol.rgb2gray(read_array(Path(job.gt_source), "RGB"))
        gt = full[job.crop_y:job.crop_y + job.crop_size, job.crop_x:job.crop_x + job.crop_size]
    result = read_result_grey(Path(job.result))  # 16-bit converted, undefined ranges refused by name
    return protocol.frame_result(result, job, job.result_framing, gt.shape), gt


def _cpu_chunk(jobs: list[Job], names: tuple[str, ...], cache: Path | None = None) -> list[tuple[int, str, float, str]]:
    """Worker: (key, metric, value, reason) for every job and CPU metric."""
    import torch

    torch.set_num_threads(1)
    from facesketch.metrics import fsim, scoot
    from facesketch.metrics.gt_features import GroundTruthFeatures

    gt_features = GroundTruthFeatures(cache)  # the ground truth's half of FSIM and SCOOT, computed once
    out, loaded = [], []
    for job in jobs:
        try:
            loaded.append((job, *load_pair(job)))
        except FacesketchError as e:
            out += [(job.key, m, float("nan"), str(e)) for m in names]
    for job, res, gt in loaded:
        for m in names:
            try:
                if m == "FSIM":
                    v = fsim.fsim_from_features(fsim.features(torch.from_numpy(res).float()[None, None]),
                                                gt_features.fsim(gt))[0]
                elif m == "SCOOT":  # load_pair framed the result to the ground truth's size
                    v = scoot.scoot_from_features(scoot.features(res), gt_features.scoot(gt))
                else:
                    v = METRICS[m].cpu(res, gt)
                out.append((job.key, m, float(v), ""))
            except (ValueError, RuntimeError) as e:  # e.g. an image too small for MS-SSIM's 5 scales
                out.append((job.key, m, float("nan"), f"{m} failed: {e}"))
    return out


def gt_key(job: Job) -> tuple:
    """Which ground truth (file, framing, crop) a job is scored against."""
    return (job.gt_framing, job.gt_aligned, job.gt_source, job.crop_x, job.crop_y, job.crop_size)


def cpu_metrics(jobs: list[Job], names: tuple[str, ...], workers: int | None = None,
                cache: Path | None = None) -> list[tuple]:
    """(key, metric, value, reason) of the CPU metrics; ``cache``: the ground-truth feature folder."""
    names = tuple(m for m in CPU_METRICS if m in names)
    if not names or not jobs:
        return []
    jobs = sorted(jobs, key=gt_key)  # results against one ground truth share a chunk and its features
    workers = workers or os.cpu_count() or 1
    chunk = 16
    chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
    if workers == 1 or len(jobs) <= 2 * chunk:
        return [r for c in progress(chunks, desc="metrics", unit="chunk") for r in _cpu_chunk(c, names, cache)]
    import multiprocessing as mp

    results = []
    from facesketch.workers import die_with_parent

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(_cpu_chunk, c, names, cache) for c in chunks]
        for f in progress(futures, desc=f"metrics ({workers} processes)", unit="chunk"):
            results += f.result()
    return results


def _network(name: str, loader, weights_dir: Path, allow_missing: bool, device):
    try:
        return loader(weights_dir).to(device), ""
    except WeightsError as e:
        if not allow_missing:
            raise
        log.warning("%s not computed: %s", name, e)
        return None, f"{name} not computed: {str(e).split(' [')[0]}"  # the file and where; the log has how


def _images(jobs: list[Job]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    pairs = {}
    for job in jobs:
        try:
            pairs[job.key] = load_pair(job)
        except FacesketchError:
            pass  # reported by the CPU metrics' rows
    return pairs


def network_metrics(jobs: list[Job], groups: dict[tuple, list[int]], names, weights_dir: Path, allow_missing: bool,
                    device, batch_size: int, cache: Path | None, n_boot: int = 0) -> tuple[list[tuple], list[dict]]:
    """LPIPS per image, FID and KID (and ``n_boot`` bootstrap replicates of each) per group of
    keys: (image rows, set rows). Groups' members are in test-image order, so replicate b of
    two methods scored on the same images resampled the same images (facesketch.report.stats)."""
    import torch

    image_rows, set_rows = [], []
    want_lpips, want_fid = "LPIPS" in names, any(m in names for m in SET_METRICS)
    if not (want_lpips or want_fid):
        return image_rows, set_rows
    pairs = _images(jobs)
    if want_lpips:
        from facesketch.metrics.networks import load_lpips

        net, reason = _network("LPIPS", load_lpips, weights_dir, allow_missing, device)
        keys = [j.key for j in jobs]
        if net is None:
            image_rows += [(k, "LPIPS", float("nan"), reason) for k in keys]
        else:
            with torch.no_grad():
                for k in progress(keys, desc="LPIPS", unit="img"):
                    if k not in pairs:
                        continue
                    res, gt = pairs[k]
                    to_t = lambda a: torch.from_numpy(a).float().div(127.5).sub(1)[None, None].expand(1, 3, -1, -1)  # noqa: E731
                    image_rows.append((k, "LPIPS", float(net(to_t(res).to(device), to_t(gt).to(device)).item()), ""))
    if want_fid:
        from facesketch.metrics.fid import fid_from_features, inception_features
        from facesketch.metrics.kid import kid, set_replicates
        from facesketch.metrics.networks import load_fid_inception

        set_names = [m for m in SET_METRICS if m in names]
        net, reason = _network("FID", load_fid_inception, weights_dir, allow_missing, device)
        keys = [k for k in (j.key for j in jobs) if k in pairs]
        if net is None:
            for g, members in groups.items():
                set_rows += [{"group": g, "metric": m, "value": float("nan"), "n": len(members),
                              "reason": reason.replace("FID", m, 1), "expected": len(members)} for m in set_names]
        else:
            fake = dict(zip(keys, inception_features(net, [pairs[k][0] for k in keys], device, batch_size)))
            real = _real_features(net, jobs, pairs, keys, device, batch_size, cache)
            for g, members in progress(list(groups.items()), desc="FID/KID and bootstrap", unit="set"):
                ok = [k for k in members if k in fake]
                r = np.stack([real[k] for k in ok]) if ok else np.zeros((0, 2048))
                f = np.stack([fake[k] for k in ok]) if ok else np.zeros((0, 2048))
                value = {"FID": fid_from_features(r, f), "KID": kid(r, f)}
                why = "" if len(ok) >= 2 else f"needs at least 2 images, the set has {len(ok)}"
                reps = set_replicates(r, f, n_boot) if n_boot and len(ok) >= 2 else {}
                for m in set_names:
                    set_rows.append({"group": g, "metric": m, "value": value[m], "n": len(ok),
                                     "reason": f"{m} {why}" if why else "", "expected": len(members)})
                    set_rows += [{"group": g, "metric": m, "value": float(v), "n": len(ok), "reason": "",
                                  "replicate": b, "expected": len(members)} for b, v in enumerate(reps.get(m, []))]
    return image_rows, set_rows


def network_fingerprint(net) -> str:
    """SHA-256 (16 hex digits) of a network's weights: cached features belong to one network."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _real_features(net, jobs, pairs, keys, device, batch_size, cache: Path | None) -> dict[int, np.ndarray]:
    """Inception features of the ground truths, cached on disk by their content and the network."""
    from facesketch.metrics.fid import inception_features

    gt_id = {k: content_id(pairs[k][1]) for k in keys}
    stored: dict[str, np.ndarray] = {}
    path = None if cache is None else Path(cache) / f"fid_real_features_{network_fingerprint(net)}.npz"
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            stored = dict(zip(z["ids"].tolist(), z["features"]))
    todo = sorted({gt_id[k] for k in keys} - set(stored))
    if todo:
        first = {}
        for k in keys:
            first.setdefault(gt_id[k], k)
        feats = inception_features(net, [pairs[first[t]][1] for t in todo], device, batch_size)
        stored.update(zip(todo, feats))
        if path is not None:
            from facesketch.fileio import atomic_path

            ids = sorted(stored)
            with atomic_path(path, suffix=".npz") as tmp:
                np.savez(tmp, ids=np.array(ids), features=np.stack([stored[i] for i in ids]))
    return {k: stored[gt_id[k]] for k in keys}


def score(items: pd.DataFrame, manifest: pd.DataFrame, metrics: dict, weights_dir: Path, device,
          result_framing: str = "aligned", cache: Path | None = None, issues: list | None = None) -> pd.DataFrame:
    """Score ``items`` (columns variant, seed, style_asked, image_id, result) against the manifest.

    Results that do not match the framing are refused (``metrics.framing_mismatch: error``) or
    scored with their findings appended to ``issues`` (facesketch.metrics.inputs)."""
    names = tuple(metrics.get("names", CPU_METRICS))
    gt_framing = metrics.get("framing", "aligned")
    root = Path(manifest.attrs["root"])
    rows_by_id = {r.id: r for r in manifest.itertuples()}
    items = items.reset_index(drop=True)
    jobs = [_job(i, None if pd.isna(it.result) else Path(it.result), rows_by_id[it.image_id], root, gt_framing,
                 result_framing) for i, it in enumerate(items.itertuples())]
    style_gt = [STYLES[int(rows_by_id[i].style)] for i in items.image_id]
    found = inputs.framing_issues(jobs, lambda k: (items.variant[k], int(items.seed[k]), items.style_asked[k],
                                                   items.image_id[k]))
    inputs.enforce(found, metrics.get("framing_mismatch", "warn"))
    if issues is not None:
        issues += found
    groups: dict[tuple, list[int]] = {}
    for k, it in enumerate(items.itertuples()):
        groups.setdefault((it.variant, it.seed, it.style_asked, style_gt[k]), []).append(k)
        groups.setdefault((it.variant, it.seed, "all", "all"), []).append(k)
    keep = cache is not None and metrics.get("feature_cache", True)
    results = cpu_metrics(jobs, names, cache=Path(cache) / "gt_features" if keep else None)
    image_rows, set_rows = network_metrics(jobs, groups, names, weights_dir, metrics.get("allow_missing", False),
                                           device, metrics.get("batch_size", 25), cache, metrics.get("bootstrap", 200))
    records = []
    for key, metric, value, reason in results + image_rows:
        it = items.iloc[key]
        records.append({"variant": it.variant, "seed": int(it.seed), "style_asked": it.style_asked,
                        "style_gt": style_gt[key], "image_id": it.image_id, "metric": metric, "value": value,
                        "scope": "image", "n_images": 1, "reason": reason, "replicate": -1, "n_expected": 1})
    for s in set_rows:
        variant, seed, asked, gt = s["group"]
        rep = s.get("replicate", -1)
        records.append({"variant": variant, "seed": int(seed), "style_asked": asked, "style_gt": gt, "image_id": "",
                        "metric": s["metric"], "value": s["value"], "scope": "set" if rep < 0 else "set_boot",
                        "n_images": s["n"], "reason": s["reason"], "replicate": rep,
                        "n_expected": s["expected"]})
    df = pd.DataFrame(records, columns=COLUMNS)
    bad = df[(df.scope == "image") & df.value.isna()]
    if len(bad):
        log.warning("%d per-image values could not be computed (see the reason column), e.g. %s: %s",
                    len(bad), bad.image_id.iloc[0], bad.reason.iloc[0])
    return df.sort_values(["variant", "seed", "metric", "style_gt", "image_id", "replicate"]).reset_index(drop=True)


def score_variant(spec: dict, manifest_path: Path, sample_dirs: list[Path], out: Path, weights_dir: Path,
                  device: str = "auto", cache: Path | None = None) -> pd.DataFrame:
    """What the metrics rule calls: sample_dirs are results/samples/<variant>/<seed>/<Style>."""
    from facesketch.device import pick

    manifest = load_manifest(manifest_path, "test")
    rows, issues = [], []
    for d in sample_dirs:
        d = Path(d)
        style, seed = d.name, int(d.parent.name)
        if style not in STYLES:
            raise DataError(f"{d}: sample folders end in <seed>/<Style1|Style2|Style3>")
        expected = set()
        for image_id in sorted(manifest[manifest["style"] == STYLES.index(style)].id):
            path = d / f"{image_id}.png"
            expected.add(path.name)
            rows.append({"variant": spec["variant"], "seed": seed, "style_asked": style, "image_id": image_id,
                         "result": str(path) if path.is_file() else None})
            if not path.is_file():
                issues.append({"variant": spec["variant"], "seed": seed, "style": style, "image_id": image_id,
                               "file": str(path), "issue": "missing", "detail": "no result file"})
        for path in sorted(d.iterdir()) if d.is_dir() else []:
            if path.name not in expected and not path.name.startswith("."):
                issues.append({"variant": spec["variant"], "seed": seed, "style": style, "image_id": path.stem,
                               "file": str(path), "issue": "ignored", "detail": f"not a {style} test id's result"})
    df = score(pd.DataFrame(rows), manifest, spec["metrics"], weights_dir, pick(device), "aligned",
               cache or Path(out).parent / ".cache", issues=issues)
    write_parquet(out, df)
    inputs.report(issues, out)
    log.info("%s: %d values -> %s", spec["variant"], len(df), out)
    return df


def _image_files(folder: Path) -> list[Path]:
    return [p for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")]


def index_results(folder: Path) -> dict[str, Path]:
    """Files of a results folder by FS2K id: photo1_image0001.*, photo1/image0001.* or
    sketch1/sketch0001.* (other methods publish all three layouts)."""
    found: dict[str, Path] = {}
    for path in _image_files(folder):
        stem, parent = path.stem, path.parent.name
        if stem.startswith("photo") and "_image" in stem:
            found.setdefault(stem, path)
        elif stem[:1].isdigit() and stem[1:7] == "_image":  # released HIDA test.py: 1_image0001.jpg
            found.setdefault(f"photo{stem}", path)
        elif parent.startswith("photo") and stem.startswith("image"):
            found.setdefault(fs2k_id(f"{parent}/{stem}"), path)
        elif parent.startswith("sketch") and stem.startswith("sketch"):
            found.setdefault(fs2k_id(f"photo{parent.removeprefix('sketch')}/image{stem.removeprefix('sketch')}"), path)
    return found


def evaluate_folder(folder: Path, manifest_path: Path, out: Path, metrics: dict, weights_dir: Path,
                    framing: str = "original", label: str | None = None, device: str = "auto",
                    cache: Path | None = None, index=None) -> pd.DataFrame:
    """``facesketch evaluate DIR``: score any folder of test sketches named by FS2K id (or, with
    another ``index``, as that function names them: APDrawing's by file stem)."""
    from facesketch.device import pick

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"results folder not found: {folder}")
    manifest = load_manifest(manifest_path, "test")
    found = (index or index_results)(folder)
    if not found:
        raise DataError(f"{folder}: no images named by FS2K id (photo1_image0001.png, photo1/image0001.jpg "
                        "or sketch1/sketch0001.jpg)")
    label = label or folder.name
    rows = [{"variant": label, "seed": 0, "style_asked": STYLES[int(r.style)], "image_id": r.id,
             "result": str(found[r.id]) if r.id in found else None} for r in manifest.itertuples()]
    issues = [{"variant": label, "seed": 0, "style": r["style_asked"], "image_id": r["image_id"], "file": "",
               "issue": "missing", "detail": f"no result in {folder}"} for r in rows if r["result"] is None]
    if issues:
        log.warning("%s: %d of %d test images have no result (scored as missing)", folder, len(issues), len(rows))
    used = {Path(r["result"]) for r in rows if r["result"]}
    for path in _image_files(folder):
        if path not in used:
            known = path in found.values()
            issues.append({"variant": label, "seed": 0, "style": "", "image_id": "", "file": str(path),
                           "issue": "ignored", "detail": ("not a test id of the manifest" if known else
                                                          "not named by FS2K id, or a second file for an id")})
    df = score(pd.DataFrame(rows), manifest, metrics, weights_dir, pick(device), framing,
               cache or Path(out).parent / ".cache", issues=issues)
    write_parquet(out, df)
    inputs.report(issues, out)
    log.info("%s: %d values -> %s", label, len(df), out)
    return df
