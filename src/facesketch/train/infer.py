"""Drawing test photos with a trained model: ``facesketch infer``.

Test framing (released HIDA code): the aligned 250x250 photo (resized to ``input.image`` when a
variant trains smaller) is zero-padded to ``input.crop`` (256), and the output is cropped back and
resized to the aligned size, so every sketch lines up with its 250x250 ground truth. Outputs are
grey PNGs named by FS2K id.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facesketch import STYLES
from facesketch.config import style_aware, style_index
from facesketch.data.fs2k import load_manifest
from facesketch.device import pick
from facesketch.errors import DataError
from facesketch.fileio import save_image
from facesketch.models import registry
from facesketch.progress import progress
from facesketch.train import checkpoint as ckpt
from facesketch.train.data import load_split
from facesketch.train.losses import to_grey

log = logging.getLogger(__name__)


def fit_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-pad with zeros (or centre-crop) a (B, C, S, S) batch to size x size."""
    s = x.shape[-1]
    if s == size:
        return x
    if s < size:
        a = (size - s) // 2
        return F.pad(x, (a, size - s - a, a, size - s - a))
    a = (s - size) // 2
    return x[..., a:a + size, a:a + size]


def network_inputs(photo_u8: torch.Tensor, depth: torch.Tensor | None, spec: dict):
    """uint8 photos (B, 3, S0, S0) and depth -> network inputs at input.crop."""
    image, crop = spec["input"]["image"], spec["input"]["crop"]
    x = photo_u8.float()
    if x.shape[-1] != image:
        x = F.interpolate(x, size=(image, image), mode="bilinear", antialias=True, align_corners=False)
    x = fit_to(x, crop) / 127.5 - 1
    if depth is not None:
        if depth.shape[-1] != image:
            depth = F.interpolate(depth, size=(image, image), mode="bilinear", antialias=True, align_corners=False)
        depth = fit_to(depth, crop)
    return x, depth


def network_outputs(y: torch.Tensor, spec: dict, size: int) -> torch.Tensor:
    """Network outputs (B, C, crop, crop) in [-1, 1] -> grey (B, 1, size, size) in [-1, 1]."""
    y = to_grey(fit_to(y.float(), spec["input"]["image"]))
    if y.shape[-1] != size:
        y = F.interpolate(y, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return y.clamp(-1, 1)


def to_uint8(y: torch.Tensor) -> np.ndarray:
    return ((y[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def load_model(path: Path, device) -> tuple[dict, dict[str, torch.nn.Module]]:
    state = ckpt.load(path, map_location="cpu")
    if "spec" not in state or "generators" not in state:
        raise DataError(f"{path}: not a facesketch model file (no spec/generators)")
    spec = json.loads(state["spec"])
    nets = registry.build(spec)
    gens = {}
    for name, sd in state["generators"].items():
        nets[name].load_state_dict(sd)
        gens[name] = nets[name].to(device).eval()
    return spec, gens


@torch.no_grad()
def draw(generator: torch.nn.Module, spec: dict, photo_u8, depth, style_idx: torch.Tensor, size: int) -> np.ndarray:
    dev = next(generator.parameters()).device
    x, d = network_inputs(photo_u8.to(dev), None if depth is None else depth.to(dev), spec)
    style = F.one_hot(style_idx.to(dev), 3).float()
    return to_uint8(network_outputs(generator(x, d, style), spec, size))


def set_infer_mode(generator: torch.nn.Module, spec: dict, batch_size: int) -> int:
    """``infer.mode`` of a variant: eval, or train as pix2pix's test script runs without --eval
    (BatchNorm on each test image's own statistics, dropout on, batch size 1, as its test options
    force). Returns the batch size to draw with; train mode seeds dropout so a rerun draws the same."""
    if spec["infer"]["mode"] == "train":
        generator.train()
        torch.manual_seed(0)
        return 1
    generator.eval()
    return batch_size


def infer(spec: dict, checkpoint: Path, manifest_path: Path, maps: Path, out: Path, style: str,
          cross_style: int = 0, batch_size: int = 8, device: str = "auto") -> int:
    """Draw the test photos whose ground truth is in ``style`` (or, with ``style='cross'``, the
    first ``cross_style`` test photos in all three styles, into out/<Style>/)."""
    dev = pick(device)
    saved_spec, gens = load_model(checkpoint, dev)
    if ckpt.spec_hash(saved_spec) != ckpt.spec_hash(spec):
        raise DataError(f"{checkpoint} was trained with a different spec of {spec.get('name')}; retrain it")
    generator = gens["G"] if "G" in gens else gens["G_A"]  # unpaired: photo -> sketch
    batch_size = set_infer_mode(generator, spec, batch_size)
    manifest = load_manifest(manifest_path, "test")
    if style == "cross":
        ids = sorted(manifest.id)[:cross_style]
        jobs = [(s, ids) for s in range(3)]
    else:
        s = style_index(style)
        jobs = [(s, sorted(manifest[manifest["style"] == s].id))]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with_depth = registry.needs_depth(spec)
    n = 0
    for s, ids in jobs:
        if not ids:
            continue
        rows, tensors = load_split(manifest_path, maps if with_depth else None, "test", None, with_depth, ids=ids)
        size0 = tensors["photo"].shape[-1]
        target = out / STYLES[s] if style == "cross" else out
        label = f"{spec.get('name')} {STYLES[s]}" + (" (cross)" if style == "cross" else "")
        for start in progress(range(0, len(ids), batch_size), desc=f"draw {label}", unit="batch"):
            sl = slice(start, start + batch_size)
            styles = torch.full((len(ids[sl]),), s, dtype=torch.long)
            depth = tensors["depth"][sl] if with_depth else None
            images = draw(generator, spec, tensors["photo"][sl], depth, styles, size0)
            for image_id, img in zip(ids[sl], images):
                save_image(target / f"{image_id}.png", img)
                n += 1
    if not style_aware(spec) and style == "cross":
        log.info("%s is style-agnostic: its cross-style drawings are all the same", spec.get("name"))
    log.info("drew %d sketches into %s", n, out)
    return n
