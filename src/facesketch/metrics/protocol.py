"""The FS2K evaluation protocol's image handling, as the MATLAB toolbox does it.

* grey: ``rgb2gray`` (0.2989 R + 0.5870 G + 0.1140 B; MATLAB's exact coefficients below), uint8.
* resize: ``imresize(I, [h w])`` with its default bicubic kernel (a = -0.5), antialiased when
  shrinking (the kernel stretched by 1/scale), symmetric (mirror) border handling, one
  dimension at a time, the one shrunk most first, rounding to uint8 after each pass as
  imresize does for uint8 images. Pillow and OpenCV handle borders differently, so their
  numbers differ near the edges; this is written out instead.
* framing: results are compared with the ground truth under the same framing (see
  ``ground_truth`` and ``frame_result``): never stretched over a different field of view.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from facesketch.fileio import read_array

# MATLAB rgb2gray: the first row of inv([1 .956 .621; 1 -.272 -.647; 1 -1.106 1.703])
RGB2GRAY = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])


def round_half_away(x: np.ndarray) -> np.ndarray:
    """MATLAB's round (and its uint8 conversion): ties away from zero, where numpy rounds to even."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def rgb2gray(image: np.ndarray) -> np.ndarray:
    """uint8 grey image from uint8 RGB (or grey passed through), rounded as MATLAB does."""
    a = np.asarray(image)
    if a.ndim == 2:
        return a.astype(np.uint8)
    if a.shape[2] == 4:
        a = a[..., :3]
    grey = a[..., :3].astype(np.float64) @ RGB2GRAY
    return np.clip(round_half_away(grey), 0, 255).astype(np.uint8)


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def contributions(in_len: int, out_len: int, antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(weights, 0-based indices), each (out_len, P): imresize's contributions()."""
    scale = out_len / in_len
    width = 4.0
    kernel = cubic
    if scale < 1 and antialias:
        width = width / scale
        kernel = lambda x: scale * cubic(scale * x)  # noqa: E731
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)          # output pixel centre in input coordinates (1-based)
    left = np.floor(u - width / 2)
    p = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(p)[None, :]     # 1-based, may fall outside 1..in_len
    weights = kernel(u[:, None] - idx)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])  # symmetric padding
    idx = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], idx[:, keep]


def _resize_dim(a: np.ndarray, out_len: int, axis: int) -> np.ndarray:
    w, idx = contributions(a.shape[axis], out_len)
    moved = np.moveaxis(a, axis, 0).astype(np.float64)
    out = np.einsum("op,op...->o...", w, moved[idx])
    return np.moveaxis(out, 0, axis)


def imresize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """MATLAB ``imresize(image, [height width])`` (bicubic, antialiased) for uint8 or float arrays."""
    a = np.asarray(image)
    is_u8 = a.dtype == np.uint8
    scales = {0: height / a.shape[0], 1: width / a.shape[1]}
    targets = {0: height, 1: width}
    for axis in sorted(scales, key=lambda d: scales[d]):
        if a.shape[axis] == targets[axis]:
            continue
        a = _resize_dim(a, targets[axis], axis)
        if is_u8:
            a = np.clip(round_half_away(a), 0, 255).astype(np.uint8)
    return a


def load_grey(path: Path) -> np.ndarray:
    return rgb2gray(read_array(path))


def ground_truth(row, root: Path, framing: str) -> np.ndarray:
    """The grey ground-truth sketch: the aligned one, or (native) the same crop box at the
    archive's resolution."""
    if framing == "aligned":
        return load_grey(root / row.sketch)
    full = rgb2gray(read_array(Path(row.sketch_source), "RGB"))  # transparent paper is white, as the scorer's
    x, y, s = int(row.crop_x), int(row.crop_y), int(row.crop_size)
    return full[y:y + s, x:x + s]


def frame_result(result: np.ndarray, row, result_framing: str, target_shape: tuple[int, int]) -> np.ndarray:
    """A grey result brought to the ground truth's framing and size.

    ``result_framing`` aligned: the result shows the aligned crop; original: it shows the whole
    archive photo (released results of other methods), so the alignment's crop box is cut from
    it first, scaled to the result's resolution.
    """
    if result_framing == "original":
        sx = result.shape[1] / float(row.orig_width)
        sy = result.shape[0] / float(row.orig_height)
        x0, y0 = int(round(row.crop_x * sx)), int(round(row.crop_y * sy))
        x1, y1 = int(round((row.crop_x + row.crop_size) * sx)), int(round((row.crop_y + row.crop_size) * sy))
        result = result[y0:y1, x0:x1]
    if result.shape != tuple(target_shape):
        result = imresize(result, *target_shape)
    return result


def content_id(image: np.ndarray) -> str:
    """SHA-256 of a framed grey ground truth (its pixels and shape): the key of the feature caches,
    so a changed file, framing or crop is another entry, never a stale one."""
    return hashlib.sha256(repr(image.shape).encode() + np.ascontiguousarray(image).tobytes()).hexdigest()
