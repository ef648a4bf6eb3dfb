"""Reading the photos people really have into 8-bit RGB arrays, upright, on white.

Handled: EXIF orientation (phone photos), greyscale, palette, CMYK, 16-bit and 32-bit grey
(scaled, not clipped: Pillow's own conversion clips 16-bit values to 255), 16-bit RGB,
transparency (composited on white, as FS2K's RGBA sketches are), huge images (decoded at a
reduced size where the format allows it, then shrunk to ``max_side``). Anything unreadable
raises DataError naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facesketch.errors import DataError
from facesketch.fileio import flatten_on_white

SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Photo:
    path: Path
    image: np.ndarray            # (H, W, 3) uint8, upright
    original_size: tuple[int, int]  # (width, height) of the file, upright
    notes: list[str] = field(default_factory=list)

    @property
    def scale(self) -> float:
        """Pixels of ``image`` per pixel of the upright original."""
        return self.image.shape[1] / self.original_size[0]


def list_photos(inputs: list[str | Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files given, and the image files of the folders given (sorted, not recursive).

    Returns (photos, problems): a path that does not exist is a problem, not an exception, so
    the other inputs are still drawn.
    """
    photos, problems = [], []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            photos += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in SUFFIXES)
        elif p.is_file():
            photos.append(p)
        else:
            problems.append((p, "no such file or folder"))
    return list(dict.fromkeys(photos)), problems


def _to_8bit(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64)
        # 16-bit files (and Pillow's 32-bit "I" mode, which 16-bit PNGs open as) hold 0..65535
        a = a / 257.0 if a.max() > 255 or im.mode != "I" else a
        return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L")
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        a = a * 255.0 if a.max() <= 1.0 else a
        return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L")
    return im


def read_photo(path: Path, max_side: int = 2048) -> Photo:
    path = Path(path)
    notes = []
    try:
        with Image.open(path) as im:
            original = _upright_size(im)  # before any reduced decoding
            if im.format == "JPEG" and max(im.size) > 2 * max_side:
                im.draft("RGB", (max_side, max_side))  # decode huge JPEGs at 1/2, 1/4 or 1/8 size
            im.load()
            im = ImageOps.exif_transpose(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot read this image ({e})") from e
    mode = im.mode
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    elif mode.startswith("I") or mode == "F":
        notes.append(f"{mode} image scaled to 8 bits")
    im = _to_8bit(im)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        im = flatten_on_white(im)
        notes.append("transparency composited on white")
    im = im.convert("RGB")
    if min(im.size) < 8:
        raise DataError(f"{path}: image is {im.size[0]}x{im.size[1]} pixels, too small to draw")
    if max(im.size) > max_side:
        s = max_side / max(im.size)
        im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))), Image.Resampling.BICUBIC,
                       reducing_gap=3.0)
    if im.size != original:
        notes.append(f"{original[0]}x{original[1]} shrunk to {im.size[0]}x{im.size[1]}")
    return Photo(path, np.asarray(im).copy(), original, notes)


def _upright_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) after the EXIF rotation (orientations 5-8 swap the sides)."""
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a corrupt EXIF block only loses the rotation
        orientation = 1
    w, h = im.size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
