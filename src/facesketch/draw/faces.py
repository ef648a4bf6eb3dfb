"""Finding the face in a photo and framing it as FS2K's aligned training photos are framed.

Ingestion (facesketch.data.fs2k) crops a square and resizes it to ``size`` (250) with Pillow's
bicubic filter; in those aligned photos the MediaPipe face box sits at a known place
(facesketch.maps.run.CANONICAL_BOXES, medians over the training photos; photo1, the CASIA crops
that most FS2K photos are, by default). A photo in the wild gets the same square crop and resize,
with the square chosen so that its detected face box lands on that canonical box: same scale
(mean of box width and height), same centre. Where the square leaves the photo, the border pixels
are repeated. ``paste_back`` inverts the transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from facesketch.errors import DataError
from facesketch.maps.run import CANONICAL_BOXES

ALIGN_SIZE = 250
DETECT_MAX = 1024   # longest side the detector sees (faster on huge photos, same boxes)
DETECT_MIN = 256    # shortest side the detector sees (tiny photos are upsampled first)


@dataclass(frozen=True)
class Square:
    """A square region of the photo, in its pixels: left, top, side (may extend past the edges)."""

    x0: float
    y0: float
    side: float


def box_area(box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def framing_square(box, framing: str = "photo1", size: int = ALIGN_SIZE) -> Square:
    """The square whose resize to ``size`` puts ``box`` (l, t, r, b) on the canonical box."""
    if framing not in CANONICAL_BOXES:
        raise DataError(f"unknown framing {framing!r}; known: {', '.join(CANONICAL_BOXES)}")
    cl, ct, cr, cb = (v * size / 250.0 for v in CANONICAL_BOXES[framing])
    l, t, r, b = box
    if r <= l or b <= t:
        raise DataError(f"empty face box {box}")
    scale = ((cr - cl) + (cb - ct)) / ((r - l) + (b - t))   # output pixels per photo pixel
    side = size / scale
    cx, cy = (l + r) / 2, (t + b) / 2
    return Square(cx - (cl + cr) / 2 / scale, cy - (ct + cb) / 2 / scale, side)


def crop_square(image: np.ndarray, sq: Square, size: int = ALIGN_SIZE) -> np.ndarray:
    """The square resized to size x size (bicubic, as ingestion), border pixels repeated outside."""
    h, w = image.shape[:2]
    x0, y0 = int(np.floor(sq.x0)), int(np.floor(sq.y0))
    x1, y1 = int(np.ceil(sq.x0 + sq.side)), int(np.ceil(sq.y0 + sq.side))
    pad = (max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w))
    region = image[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
    if any(pad):
        region = np.pad(region, ((pad[0], pad[1]), (pad[2], pad[3]), (0, 0)), mode="edge")
    # sub-pixel placement: the resize box is relative to the padded region's origin (x0, y0)
    box = (sq.x0 - x0, sq.y0 - y0, sq.x0 - x0 + sq.side, sq.y0 - y0 + sq.side)
    out = Image.fromarray(region).resize((size, size), Image.Resampling.BICUBIC, box=box,
                                         reducing_gap=3.0 if sq.side > 3 * size else None)
    return np.asarray(out)


def paste_back(image: np.ndarray, sketch: np.ndarray, sq: Square, feather: float = 0.08) -> np.ndarray:
    """The photo with the (grey) sketch put back over its square, edges blended over ``feather``
    of the side; the rest of the photo in grey so the sheet reads as one drawing."""
    h, w = image.shape[:2]
    side = max(1, int(round(sq.side)))
    x0, y0 = int(round(sq.x0)), int(round(sq.y0))
    tile = np.asarray(Image.fromarray(sketch).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32)
    ramp = np.minimum(np.arange(side) + 0.5, side - np.arange(side) - 0.5) / max(1.0, feather * side)
    ramp = np.clip(ramp, 0, 1)
    alpha = np.minimum(ramp[:, None], ramp[None, :])
    grey = np.asarray(Image.fromarray(image).convert("L"), dtype=np.float32)
    out = grey.copy()
    ys, xs = slice(max(0, y0), min(h, y0 + side)), slice(max(0, x0), min(w, x0 + side))
    ts = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
    a = alpha[ts]
    out[ys, xs] = a * tile[ts] + (1 - a) * out[ys, xs]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


class FaceFinder:
    """All faces of a photo with MediaPipe's offline face detector (BlazeFace, full range; the
    short-range model as a second try)."""

    def __init__(self, min_confidence: float = 0.5):
        from facesketch.maps.mediapipe_mesh import _import, _quiet

        _, _, face_detection = _import()
        with _quiet():
            self._full = face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_confidence)
            self._short = face_detection.FaceDetection(model_selection=0, min_detection_confidence=min_confidence)

    def boxes(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """(l, t, r, b) of every face in pixels of ``image``, largest first."""
        h, w = image.shape[:2]
        s = min(1.0, DETECT_MAX / max(h, w))
        if min(h, w) * s < DETECT_MIN:
            s = DETECT_MIN / min(h, w)
        small = image
        if s != 1.0:
            small = np.asarray(Image.fromarray(image).resize((max(1, round(w * s)), max(1, round(h * s))),
                                                             Image.Resampling.BILINEAR, reducing_gap=2.0))
        sh, sw = small.shape[:2]
        found = []
        for detector in (self._full, self._short):
            result = detector.process(np.ascontiguousarray(small))
            for d in result.detections or []:
                b = d.location_data.relative_bounding_box
                found.append((b.xmin * sw / s, b.ymin * sh / s, (b.xmin + b.width) * sw / s,
                              (b.ymin + b.height) * sh / s))
            if found:
                break
        return sorted(found, key=box_area, reverse=True)

    def close(self) -> None:
        self._full.close()
        self._short.close()
