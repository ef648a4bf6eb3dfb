"""3DDFA_V2 (Guo et al., ECCV 2020) inference, written for this project, on the official files.

Pipeline per photo: face box -> square region (the box enlarged 1.58x, shifted down 0.14 of its
size) -> 120x120 BGR crop, (x - 127.5) / 128 -> MobileNetV1 -> 62 parameters (12 pose, 40
shape, 10 expression), de-normalised with the official mean/std -> dense BFM mesh in image
pixels. A second pass crops around the 68 landmarks of the first (3DDFA_V2's "landmark" crop
policy), which corrects a loose face box. The mesh is rasterised by facesketch.maps.raster.

Official files (facesketch.maps.weights): mb1_120x120.pth, param_mean_std_62d_120x120.pkl,
bfm_noneck_v3.pkl, tri.pkl.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facesketch.errors import WeightsError
from facesketch.maps import safe_pickle
from facesketch.maps.weights import require
from facesketch.torchio import safe_load

INPUT = 120
N_PARAMS = 62
SHAPE_DIM, EXP_DIM = 40, 10


# --- regressor ------------------------------------------------------------------------------

class _DepthWise(nn.Module):
    """Depthwise 3x3 then pointwise 1x1, each with BN and ReLU (names as in the checkpoint)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv_dw = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
        self.bn_dw = nn.BatchNorm2d(cin)
        self.conv_sep = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn_sep = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = F.relu(self.bn_dw(self.conv_dw(x)))
        return F.relu(self.bn_sep(self.conv_sep(x)))


# (name, output channels at widen 1, stride) of the 13 depthwise blocks of MobileNetV1.
_BLOCKS = [("dw2_1", 64, 1), ("dw2_2", 128, 2), ("dw3_1", 128, 1), ("dw3_2", 256, 2),
           ("dw4_1", 256, 1), ("dw4_2", 512, 2), ("dw5_1", 512, 1), ("dw5_2", 512, 1),
           ("dw5_3", 512, 1), ("dw5_4", 512, 1), ("dw5_5", 512, 1), ("dw5_6", 1024, 2),
           ("dw6", 1024, 1)]


class MobileNetV1(nn.Module):
    def __init__(self, widen: float = 1.0, num_outputs: int = N_PARAMS):
        super().__init__()
        c = int(32 * widen)
        self.conv1 = nn.Conv2d(3, c, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.block_names = []
        for name, cout, stride in _BLOCKS:
            cout = int(cout * widen)
            setattr(self, name, _DepthWise(c, cout, stride))
            self.block_names.append(name)
            c = cout
        self.fc = nn.Linear(c, num_outputs)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        for name in self.block_names:
            x = getattr(self, name)(x)
        return self.fc(x.mean(dim=(2, 3)))


def load_regressor(path: Path, widen: float = 1.0) -> MobileNetV1:
    """The official checkpoint: {'state_dict': {'module.conv1.weight': ..., 'module.fc_param.*'}}."""
    ckpt = safe_load(path, WeightsError, "PyTorch checkpoint")
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a dict with 'state_dict', got {type(ckpt).__name__}")
    cleaned = {}
    for key, value in state.items():
        key = key.removeprefix("module.").replace("fc_param.", "fc.")
        cleaned[key] = value
    model = MobileNetV1(widen)
    own = model.state_dict()
    missing = sorted(set(own) - set(cleaned))
    wrong = sorted(k for k in own if k in cleaned and tuple(cleaned[k].shape) != tuple(own[k].shape))
    if missing or wrong:
        detail = f"missing {missing[:4]}" if missing else f"wrong shapes {wrong[:4]}"
        raise WeightsError(f"{path}: not a 3DDFA_V2 MobileNetV1 (x{widen}) checkpoint: {detail}")
    model.load_state_dict({k: cleaned[k] for k in own})
    return model.eval()


# --- face model -------------------------------------------------------------------------------

@dataclass
class FaceModel:
    u: torch.Tensor          # (3N, 1) mean shape, x y z interleaved per vertex
    w_shp: torch.Tensor      # (3N, 40)
    w_exp: torch.Tensor      # (3N, 10)
    keypoints: torch.Tensor  # (204,) indices of the 68 landmarks' x, y, z in u
    tri: torch.Tensor        # (T, 3)
    mean: torch.Tensor       # (62,) parameter mean
    std: torch.Tensor        # (62,) parameter std

    def to(self, device) -> FaceModel:
        return FaceModel(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def _array(obj, key: str, path: Path) -> np.ndarray:
    if not isinstance(obj, dict) or key not in obj:
        have = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise WeightsError(f"{path}: missing '{key}' (has {have})")
    return np.asarray(obj[key])


def load_face_model(bfm_path: Path, tri_path: Path, stats_path: Path) -> FaceModel:
    bfm = safe_pickle.load(bfm_path)
    u = _array(bfm, "u", bfm_path).astype(np.float32).reshape(-1, 1)
    w_shp = _array(bfm, "w_shp", bfm_path).astype(np.float32)
    w_exp = _array(bfm, "w_exp", bfm_path).astype(np.float32)
    keypoints = _array(bfm, "keypoints", bfm_path).astype(np.int64).reshape(-1)
    n3 = u.shape[0]
    if n3 % 3 or w_shp.shape[0] != n3 or w_exp.shape[0] != n3 or w_shp.shape[1] < SHAPE_DIM \
            or w_exp.shape[1] < EXP_DIM or keypoints.size != 204 or keypoints.max() >= n3:
        raise WeightsError(f"{bfm_path}: inconsistent BFM shapes u {u.shape}, w_shp {w_shp.shape}, "
                           f"w_exp {w_exp.shape}, keypoints {keypoints.shape}")
    tri = np.asarray(safe_pickle.load(tri_path))
    if tri.ndim != 2 or 3 not in tri.shape:
        raise WeightsError(f"{tri_path}: expected a (3, T) or (T, 3) triangle array, got {tri.shape}")
    tri = tri.T if tri.shape[0] == 3 and tri.shape[1] != 3 else tri
    if tri.max() >= n3 // 3 or tri.min() < 0:
        raise WeightsError(f"{tri_path}: triangle indices exceed the {n3 // 3} BFM vertices")
    stats = safe_pickle.load(stats_path)
    mean = _array(stats, "mean", stats_path).astype(np.float32).reshape(-1)
    std = _array(stats, "std", stats_path).astype(np.float32).reshape(-1)
    if mean.size != N_PARAMS or std.size != N_PARAMS:
        raise WeightsError(f"{stats_path}: mean/std must have {N_PARAMS} values, got {mean.size}/{std.size}")
    t = torch.from_numpy
    return FaceModel(t(u), t(np.ascontiguousarray(w_shp[:, :SHAPE_DIM])),
                     t(np.ascontiguousarray(w_exp[:, :EXP_DIM])), t(keypoints),
                     t(np.ascontiguousarray(tri.astype(np.int64))), t(mean), t(std))


# --- geometry ---------------------------------------------------------------------------------

def roi_from_box(box) -> np.ndarray:
    """Square region for a face box (l, t, r, b): 3DDFA_V2's crop of its FaceBoxes detections."""
    l, t, r, b = box
    old = (r - l + b - t) / 2.0
    cx, cy = r - (r - l) / 2.0, b - (b - t) / 2.0 + old * 0.14
    size = int(old * 1.58)
    return np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], dtype=np.float64)


def roi_from_landmarks(pts: np.ndarray) -> np.ndarray:
    """Square region around 2D landmarks (2, 68): the landmarks' square, side x sqrt(2)."""
    x0, y0, x1, y1 = pts[0].min(), pts[1].min(), pts[0].max(), pts[1].max()
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    radius = max(x1 - x0, y1 - y0) / 2
    side = math.sqrt(2) * 2 * radius
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], dtype=np.float64)


def crop(image: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """Crop with zero fill outside the image (the region may overhang)."""
    h, w = image.shape[:2]
    sx, sy, ex, ey = (int(round(v)) for v in roi)
    out = np.zeros((ey - sy, ex - sx) + image.shape[2:], dtype=image.dtype)
    ix0, iy0, ix1, iy1 = max(sx, 0), max(sy, 0), min(ex, w), min(ey, h)
    if ix1 > ix0 and iy1 > iy0:
        out[iy0 - sy:iy1 - sy, ix0 - sx:ix1 - sx] = image[iy0:iy1, ix0:ix1]
    return out


def reconstruct(params: torch.Tensor, model: FaceModel, roi: np.ndarray, dense: bool = True) -> torch.Tensor:
    """Vertices (N, 3) in image pixels (x right, y down, z nearness >= 0) from 62 parameters."""
    pose = params[:12].reshape(3, 4)
    rot, offset = pose[:, :3], pose[:, 3:]
    a_shp, a_exp = params[12:12 + SHAPE_DIM, None], params[12 + SHAPE_DIM:, None]
    if dense:
        shape = model.u + model.w_shp @ a_shp + model.w_exp @ a_exp
    else:
        k = model.keypoints
        shape = model.u[k] + model.w_shp[k] @ a_shp + model.w_exp[k] @ a_exp
    pts = rot @ shape.reshape(-1, 3).T + offset  # (3, N); x y z interleaved per vertex
    sx, sy, ex, ey = roi
    scale_x, scale_y = (ex - sx) / INPUT, (ey - sy) / INPUT
    x = (pts[0] - 1) * scale_x + sx
    y = (INPUT - pts[1]) * scale_y + sy
    z = (pts[2] - 1) * (scale_x + scale_y) / 2
    return torch.stack([x, y, z - z.min()], dim=1)


def fit_problem(landmarks: np.ndarray, height: int, width: int) -> str | None:
    """Why a fit is not credible (None if it is): NaNs, or 68 landmarks off the photo or of
    implausible size."""
    if not np.isfinite(landmarks).all():
        return "non-finite parameters"
    x0, y0, x1, y1 = landmarks[0].min(), landmarks[1].min(), landmarks[0].max(), landmarks[1].max()
    size = max(x1 - x0, y1 - y0)
    inside = ((landmarks[0] >= -0.05 * width) & (landmarks[0] <= 1.05 * width)
              & (landmarks[1] >= -0.05 * height) & (landmarks[1] <= 1.05 * height)).mean()
    if inside < 0.9:
        return f"only {inside:.0%} of the 68 landmarks fall on the photo"
    if not 0.15 * min(height, width) <= size <= 1.3 * max(height, width):
        return f"landmark extent {size:.0f}px is implausible for a {width}x{height} photo"
    return None


class TDDFA:
    """The regressor plus face model; ``fit`` turns photos and face boxes into meshes."""

    def __init__(self, weights_dir: Path, device: torch.device | str = "cpu", arch: str = "mb1"):
        self.device = torch.device(device)
        name, widen = {"mb1": ("3ddfa_mb1", 1.0), "mb05": ("3ddfa_mb05", 0.5)}[arch]
        self.net = load_regressor(require(name, weights_dir), widen).to(self.device)
        self.model = load_face_model(require("3ddfa_bfm", weights_dir), require("3ddfa_tri", weights_dir),
                                     require("3ddfa_param_stats", weights_dir)).to(self.device)

    @torch.no_grad()
    def _params(self, images: list[np.ndarray], rois: list[np.ndarray]) -> torch.Tensor:
        import cv2

        batch = []
        for image, roi in zip(images, rois):
            patch = cv2.resize(crop(image[..., ::-1], roi), (INPUT, INPUT), interpolation=cv2.INTER_LINEAR)
            batch.append(torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1).float())
        x = (torch.stack(batch).to(self.device) - 127.5) / 128.0
        return self.net(x) * self.model.std + self.model.mean

    def fit(self, images: list[np.ndarray], boxes: list) -> list[dict]:
        """For RGB uint8 photos and face boxes: dense vertices, landmarks, region, problem."""
        rois = [roi_from_box(b) for b in boxes]
        params = self._params(images, rois)
        rois2 = []
        for p, roi in zip(params, rois):
            lm = reconstruct(p, self.model, roi, dense=False)[:, :2].T.cpu().numpy()
            rois2.append(roi_from_landmarks(lm) if np.isfinite(lm).all() else roi)
        params = self._params(images, rois2)
        out = []
        for image, p, roi in zip(images, params, rois2):
            lm = reconstruct(p, self.model, roi, dense=False)[:, :2].T.cpu().numpy()
            problem = fit_problem(lm, *image.shape[:2])
            verts = reconstruct(p, self.model, roi, dense=True) if problem is None else None
            out.append({"vertices": verts, "landmarks": lm, "roi": roi, "problem": problem})
        return out
