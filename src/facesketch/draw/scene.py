"""Natural images (``--scene``): the whole image, no face step, never distorted.

The image is resized, keeping its aspect ratio, so that its longer side is ``long_side``, then
zero-padded (as training pads FS2K's 250x250 photos to 256) on the right and bottom to a square
whose side is the next multiple of the generator's ``multiple`` (input.crop: a U-Net with
log2(crop) down layers needs it; HIDA's condition branches need square maps). The generator is
fully convolutional, so it draws the padded canvas in one pass; the output is cut back to the
resized image.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def scene_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    s = long_side / max(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """A square canvas: HIDA's condition branches assume square feature maps (as training's are)."""
    side = math.ceil(max(height, width) / multiple) * multiple
    return side, side


def fit(image: np.ndarray, long_side: int) -> np.ndarray:
    h, w = scene_size(*image.shape[:2], long_side)
    if (h, w) == image.shape[:2]:
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BICUBIC, reducing_gap=3.0))
