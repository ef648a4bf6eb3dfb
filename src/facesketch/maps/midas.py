"""MiDaS v2.1 (Ranftl et al., TPAMI 2022) relative depth for natural images, written for this project.

HIDA (section 4.6) draws natural images with depth from MiDaS instead of 3DDFA. This is the
convolutional MiDaS v2.1 "large" model of the official release (``midas_v21_384.pt``, the file
torch.hub names ``midas_v21-f6b98070.pt``): a ResNeXt-101 32x8d encoder (torchvision's layout,
which the WSL weights share), 3x3 convolutions to 256 features per level ("scratch.layerN_rn"),
four RefineNet-style fusion blocks and a small output head ending in ReLU. It predicts relative
inverse depth (larger = nearer), which is min-max normalised per image to this project's depth
convention (facesketch.maps.encoding: 1 = nearest, 0 = farthest).

Official preprocessing (the release's ``run.py`` for ``midas_v21_384``): RGB in [0, 1],
ImageNet mean/std, the image resized keeping its aspect ratio so that it fits 384x384 with
sides that are multiples of 32; the prediction is resized back bicubically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facesketch.errors import WeightsError
from facesketch.maps.weights import require

NET_SIZE = 384
MULTIPLE = 32
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
FEATURES = 256


class _ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, 1, 1, bias=True)
        self.conv2 = nn.Conv2d(features, features, 3, 1, 1, bias=True)

    def forward(self, x):
        # not in place: x is reused for the skip connection
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + x


class _FusionBlock(nn.Module):
    """Adds the refined skip features (if any), refines, upsamples x2 (align_corners=True)."""

    def __init__(self, features: int):
        super().__init__()
        self.resConfUnit1 = _ResidualConvUnit(features)  # official key names
        self.resConfUnit2 = _ResidualConvUnit(features)

    def forward(self, x, skip=None):
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class _Upsample2(nn.Module):
    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class MidasNet(nn.Module):
    """MiDaS v2.1 with the official module tree, so the release's state dict loads strictly."""

    def __init__(self, features: int = FEATURES):
        super().__init__()
        from torchvision.models import resnext101_32x8d

        r = resnext101_32x8d(weights=None)
        self.pretrained = nn.Module()
        self.pretrained.layer1 = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1)
        self.pretrained.layer2, self.pretrained.layer3, self.pretrained.layer4 = r.layer2, r.layer3, r.layer4
        self.scratch = nn.Module()
        for i, cin in enumerate((256, 512, 1024, 2048), start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(cin, features, 3, 1, 1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", _FusionBlock(features))
        self.scratch.output_conv = nn.Sequential(
            nn.Conv2d(features, 128, 3, 1, 1), _Upsample2(), nn.Conv2d(128, 32, 3, 1, 1), nn.ReLU(True),
            nn.Conv2d(32, 1, 1), nn.ReLU(True),
        )

    def forward(self, x):
        p, s = self.pretrained, self.scratch
        l1 = p.layer1(x)
        l2 = p.layer2(l1)
        l3 = p.layer3(l2)
        l4 = p.layer4(l3)
        path = s.refinenet4(s.layer4_rn(l4))
        path = s.refinenet3(path, s.layer3_rn(l3))
        path = s.refinenet2(path, s.layer2_rn(l2))
        path = s.refinenet1(path, s.layer1_rn(l1))
        return s.output_conv(path)[:, 0]


def load_state(path: Path) -> dict:
    """The release's file: a plain state dict, or {'model': ..., 'optimizer': ...} (both occur)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        raise WeightsError(f"{path}: not a readable MiDaS checkpoint ({e})") from e
    if isinstance(state, dict) and "model" in state and "optimizer" in state:
        state = state["model"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def load_net(path: Path) -> MidasNet:
    net = MidasNet()
    state = load_state(path)
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise WeightsError(
            f"{path} is not MiDaS v2.1 (midas_v21_384.pt): {len(missing)} keys missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}), {len(wrong)} of another shape (e.g. {wrong[:2]})")
    net.load_state_dict(state)
    return net.eval()


def load(weights_dir: Path) -> MidasNet:
    return load_net(require("midas_v21", weights_dir))


def input_size(height: int, width: int) -> tuple[int, int]:
    """(h, w): the aspect ratio kept, within NET_SIZE x NET_SIZE, multiples of 32 (MiDaS "upper_bound")."""
    scale = min(NET_SIZE / height, NET_SIZE / width)

    def multiple(x: float) -> int:  # nearest multiple, rounded down when that exceeds the bound
        y = int(round(x / MULTIPLE)) * MULTIPLE
        if y > NET_SIZE:
            y = int(np.floor(x / MULTIPLE)) * MULTIPLE
        return max(MULTIPLE, y)

    return multiple(height * scale), multiple(width * scale)


class MidasDepth:
    """Batched MiDaS depth for uint8 RGB images of any size -> [0, 1] maps (1 = nearest)."""

    def __init__(self, net: MidasNet, device):
        self.net, self.device = net.to(device).eval(), device
        self.mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=device).view(1, 3, 1, 1)

    @torch.no_grad()
    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for image in images:  # sizes differ between scenes: one at a time
            h, w = image.shape[:2]
            x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].to(self.device).float() / 255.0
            x = F.interpolate(x, size=input_size(h, w), mode="bicubic", align_corners=False)
            inv = self.net((x - self.mean) / self.std)[:, None]
            inv = F.interpolate(inv, size=(h, w), mode="bicubic", align_corners=False)[0, 0]
            out.append(normalise(inv.cpu().numpy()))
        return out


def normalise(inverse_depth: np.ndarray) -> np.ndarray:
    """Relative inverse depth -> [0, 1], 1 = nearest; a constant map becomes all 0."""
    d = np.asarray(inverse_depth, dtype=np.float64)
    lo, hi = float(d.min()), float(d.max())
    if hi - lo < 1e-12:
        return np.zeros_like(d, dtype=np.float32)
    return ((d - lo) / (hi - lo)).astype(np.float32)
