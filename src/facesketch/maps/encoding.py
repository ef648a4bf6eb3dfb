"""How the geometry maps are stored: the one place that defines their ranges.

* depth: 16-bit grey PNG, value / 65535 in [0, 1], the face's z min-max normalised per face
  (1 = the point nearest the camera, usually the nose tip), background 0 (black), as
  3DDFA_V2's depth rendering and HIDA use it. Models read it in [0, 1], not [-1, 1].
* normal: 8-bit RGB PNG, (n + 1) / 2 * 255 for a unit normal n in DSINE's convention:
  x right, y down, z towards the camera (a surface facing the camera is (0, 0, 1), drawn
  lavender (128, 128, 255)). Pixels without a normal (background of a mesh rendering) are
  (0, 0, 0), which no unit normal produces.
* edge: 8-bit grey PNG, HED's fused edge probability * 255 (white = edge).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from facesketch.fileio import read_image, save_pil

KINDS = ("depth", "normal", "edge")


def encode_depth(depth: np.ndarray) -> Image.Image:
    d = np.clip(np.nan_to_num(np.asarray(depth, dtype=np.float64)), 0.0, 1.0)
    return Image.fromarray(np.round(d * 65535).astype(np.uint16))


def decode_depth(image: Image.Image) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype == np.uint8:  # an 8-bit depth map (e.g. from another tool) is accepted too
        return a.astype(np.float32) / 255.0
    return a.astype(np.float32) / 65535.0


def encode_normal(normals: np.ndarray, mask: np.ndarray | None = None) -> Image.Image:
    n = np.asarray(normals, dtype=np.float64)
    rgb = np.clip(np.round((n + 1.0) * 0.5 * 255.0), 0, 255).astype(np.uint8)
    if mask is not None:
        rgb[~mask] = 0
    return Image.fromarray(rgb, "RGB")


def decode_normal(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(normals (H, W, 3) unit vectors, mask of valid pixels)."""
    rgb = np.asarray(image.convert("RGB")).astype(np.float32)
    mask = rgb.any(axis=-1)
    n = rgb / 255.0 * 2.0 - 1.0
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.where(norm > 1e-6, n / np.maximum(norm, 1e-6), 0.0)
    n[~mask] = 0
    return n.astype(np.float32), mask


def encode_edge(prob: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.round(np.asarray(prob) * 255.0), 0, 255).astype(np.uint8), "L")


def decode_edge(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L")).astype(np.float32) / 255.0


def map_path(root: Path, kind: str, split: str, image_id: str) -> Path:
    return Path(root) / kind / split / f"{image_id}.png"


def save_map(root: Path, kind: str, split: str, image_id: str, image: Image.Image) -> Path:
    path = map_path(root, kind, split, image_id)
    save_pil(path, image)
    return path


def load_depth(path: Path) -> np.ndarray:
    return decode_depth(read_image(path))
