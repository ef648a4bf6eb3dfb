"""Score MetFaces paintings as HIDA's Table 4 does: FID (set), LPIPS and Sem. (per image) against
the test paintings, in the long format facesketch.report.tables reads (one row per image x metric,
one FID row per seed)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from facesketch.data.fs2k import load_manifest
from facesketch.device import pick
from facesketch.errors import DataError, WeightsError
from facesketch.fileio import read_array, write_parquet
from facesketch.metrics.evaluate import COLUMNS

log = logging.getLogger(__name__)
NAMES = ("FID", "LPIPS", "Sem.")


SEMANTIC = {"mode": "region", "vgg": "cocosnet"}  # the defaults of metfaces.semantic (the schema's)
SEM_WEIGHTS = {"cocosnet": "cocosnet_vgg19", "torchvision": "vgg19"}


def _networks(names, weights_dir: Path, allow_missing: bool, semantic: dict):
    """name -> network, or name -> the reason it is missing (only when allow_missing)."""
    from facesketch.exemplar import vgg
    from facesketch.metrics import networks

    loaders = {"FID": networks.load_fid_inception, "LPIPS": networks.load_lpips,
               "Sem.": lambda d: vgg.load(SEM_WEIGHTS[semantic["vgg"]], d)}
    out = {}
    for n in names:
        try:
            out[n] = loaders[n](weights_dir)
        except WeightsError as e:
            if not allow_missing:
                raise
            out[n] = str(e)
    return out


def to_tensor(images: list[np.ndarray], device) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(device)


def score_samples(variant: str, manifest_path: Path, sample_dirs: list[Path], out: Path, weights_dir: Path,
                  device: str = "auto", names=NAMES, allow_missing: bool = False, batch_size: int = 16,
                  semantic: dict | None = None) -> pd.DataFrame:
    """``sample_dirs``: results/metfaces/samples/<variant>/<seed>, each holding <test id>.png;
    ``semantic``: metfaces.semantic (how Sem. is computed, facesketch.metrics.semantic)."""
    from facesketch.metrics import fid

    dev = pick(device)
    manifest = load_manifest(manifest_path, "test")
    root = Path(manifest.attrs["root"])
    ids = sorted(manifest.id)
    gt = {r.id: read_array(root / r.photo, "RGB") for r in manifest.itertuples()}
    labels = {r.id: read_array(root / r.edge, "L") for r in manifest.itertuples()}  # Sem.'s regions
    semantic = {**SEMANTIC, **(semantic or {})}
    nets = _networks(names, Path(weights_dir), allow_missing, semantic)
    records = []
    base = {"variant": variant, "style_asked": "Style1", "replicate": -1}
    for d in map(Path, sample_dirs):
        seed = int(d.name)
        present = [i for i in ids if (d / f"{i}.png").is_file()]
        missing = sorted(set(ids) - set(present))
        if missing:
            log.warning("%s: %d of %d test paintings missing, e.g. %s", d, len(missing), len(ids), missing[0])
        res = {i: read_array(d / f"{i}.png", "RGB") for i in present}
        for i, im in res.items():
            if im.shape != gt[i].shape:
                raise DataError(f"{d / f'{i}.png'}: {im.shape[1]}x{im.shape[0]}, the test painting is "
                                f"{gt[i].shape[1]}x{gt[i].shape[0]}")
        for name in names:
            net = nets[name]
            if isinstance(net, str):  # weights missing and metrics.allow_missing: the rows say which file
                if name == "FID":
                    records.append({**base, "seed": seed, "style_asked": "all", "style_gt": "all", "image_id": "",
                                    "metric": name, "value": np.nan, "scope": "set", "n_images": 0, "reason": net,
                                    "n_expected": len(ids)})
                else:
                    records += [{**base, "seed": seed, "style_gt": "Style1", "image_id": i, "metric": name,
                                 "value": np.nan, "scope": "image", "n_images": 1, "reason": net, "n_expected": 1}
                                for i in ids]
                continue
            if name == "FID":
                real = fid.inception_features(net.to(dev), [gt[i] for i in ids], dev)
                fake = fid.inception_features(net.to(dev), [res[i] for i in present], dev)
                records.append({**base, "seed": seed, "style_asked": "all", "style_gt": "all", "image_id": "",
                                "metric": "FID", "value": fid.fid_from_features(real, fake), "scope": "set",
                                "n_images": len(present), "reason": "", "n_expected": len(ids)})
                continue
            net = net.to(dev)
            values = {}
            for start in range(0, len(present), batch_size):
                chunk = present[start:start + batch_size]
                x, y = to_tensor([res[i] for i in chunk], dev), to_tensor([gt[i] for i in chunk], dev)
                with torch.no_grad():
                    if name == "LPIPS":
                        v = net(x, y).flatten()
                    else:
                        from facesketch.metrics.semantic import semantic_similarity

                        lab = torch.from_numpy(np.stack([labels[i] for i in chunk])).to(dev)
                        v = semantic_similarity(net, x, y, lab, semantic["mode"])
                values.update(zip(chunk, v.cpu().double().tolist()))
            for i in ids:
                records.append({**base, "seed": seed, "style_gt": "Style1", "image_id": i, "metric": name,
                                "value": values.get(i, np.nan), "scope": "image", "n_images": 1,
                                "reason": "" if i in values else "no result file", "n_expected": 1})
    df = pd.DataFrame(records, columns=COLUMNS)
    write_parquet(out, df)
    log.info("%s: %d values -> %s", variant, len(df), out)
    return df
