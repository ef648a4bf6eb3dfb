"""The training set as tensors on the training device, augmented there.

FS2K fits in GPU memory many times over (1058 pairs x 250 x 250 is ~0.3 GB as uint8), so the
images are decoded once, kept on the device and augmented per batch by index arithmetic: no
data-loader processes, no host-to-device copies inside the training loop.

Augmentation (released HIDA code): random horizontal flip, zero padding by ``input.pad`` on each
side (250 -> 286) and a random ``input.crop`` (256) window. At test time the image is padded to
``crop`` and the output cropped back (facesketch.train.infer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from facesketch.data.fs2k import load_manifest
from facesketch.errors import DataError
from facesketch.fileio import read_array
from facesketch.maps import encoding
from facesketch.progress import progress


@dataclass
class Batch:
    photo: torch.Tensor   # (B, 3, S, S) in [-1, 1]
    sketch: torch.Tensor  # (B, 1, S, S) in [-1, 1]
    depth: torch.Tensor | None  # (B, 1, S, S) in [0, 1]
    style: torch.Tensor   # (B, 3) one-hot
    index: torch.Tensor   # (B,) rows of the dataset


def _resize_u8(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size:
        return images
    x = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def load_split(manifest_path: Path, maps_root: Path | None, split: str, image_size: int | None,
               with_depth: bool, ids: list[str] | None = None) -> tuple[pd.DataFrame, dict[str, torch.Tensor]]:
    """Decode one split into CPU tensors: photo, sketch uint8 and depth float32, resized to
    ``image_size`` (None keeps the aligned size)."""
    manifest = load_manifest(manifest_path, split)
    if ids is not None:
        manifest = manifest.set_index("id").loc[ids].reset_index()
        manifest.attrs["root"] = str(Path(manifest_path).parent)
    if manifest.empty:
        raise DataError(f"{manifest_path}: no {split} pairs")
    root = Path(manifest_path).parent
    photos, sketches, depths = [], [], []
    for row in progress(list(manifest.itertuples()), desc=f"load {split}", unit="pair"):
        photos.append(torch.from_numpy(read_array(root / row.photo, "RGB").copy()).permute(2, 0, 1))
        sketches.append(torch.from_numpy(read_array(root / row.sketch, "L").copy())[None])
        if with_depth:
            if maps_root is None:
                raise DataError("this variant needs depth maps; give --maps")
            path = encoding.map_path(maps_root, "depth", split, row.id)
            depths.append(torch.from_numpy(encoding.load_depth(path))[None])
    image_size = image_size or photos[0].shape[-1]
    tensors = {
        "photo": _resize_u8(torch.stack(photos), image_size),
        "sketch": _resize_u8(torch.stack(sketches), image_size),
        "style": torch.from_numpy(manifest["style"].to_numpy(np.int64).copy()),
    }
    if with_depth:
        d = torch.stack(depths)
        if d.shape[-1] != image_size:
            d = F.interpolate(d, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
        tensors["depth"] = d
    return manifest, tensors


class DeviceDataset:
    """A split on the device with on-device augmentation and a seeded sampler."""

    def __init__(self, tensors: dict[str, torch.Tensor], device: torch.device, pad: int, crop: int,
                 flip: bool, seed: int):
        self.device, self.pad, self.crop, self.flip = device, pad, crop, flip
        p = pad
        # stored padded once; zeros = black for photos and sketches, background for depth
        self.photo = F.pad(tensors["photo"], (p, p, p, p)).to(device)
        self.sketch = F.pad(tensors["sketch"], (p, p, p, p)).to(device)
        self.depth = F.pad(tensors["depth"], (p, p, p, p)).to(device) if "depth" in tensors else None
        self.style = tensors["style"].to(device)
        self.n = self.photo.shape[0]
        self.size = self.photo.shape[-1]
        if self.size < crop:
            raise DataError(f"padded images ({self.size}) are smaller than input.crop ({crop})")
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return self.n

    def permutation(self) -> torch.Tensor:
        return torch.randperm(self.n, generator=self.generator, device=self.device)

    def batch(self, index: torch.Tensor) -> Batch:
        b, c, s = index.shape[0], self.crop, self.size
        g = self.generator
        oy = torch.randint(0, s - c + 1, (b,), generator=g, device=self.device)
        ox = torch.randint(0, s - c + 1, (b,), generator=g, device=self.device)
        flip = (torch.rand(b, generator=g, device=self.device) < 0.5) if self.flip else torch.zeros(
            b, dtype=torch.bool, device=self.device)
        ar = torch.arange(c, device=self.device)
        rows = (oy[:, None] + ar)[:, None, :, None]
        cols = ox[:, None] + ar
        cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
        idx = index[:, None, None, None]

        def take(t):
            ch = torch.arange(t.shape[1], device=self.device)[None, :, None, None]
            return t[idx, ch, rows, cols]

        photo = take(self.photo).float() / 127.5 - 1
        sketch = take(self.sketch).float() / 127.5 - 1
        depth = take(self.depth).float() if self.depth is not None else None
        style = F.one_hot(self.style[index], 3).float()
        return Batch(photo, sketch, depth, style, index)

    def epoch(self, batch_size: int, max_steps: int | None = None):
        """Batches of one epoch in a fresh random order (the last partial batch is dropped)."""
        order = self.permutation()
        steps = self.n // batch_size
        if max_steps:
            steps = min(steps, max_steps)
        for i in range(steps):
            yield self.batch(order[i * batch_size:(i + 1) * batch_size])

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
