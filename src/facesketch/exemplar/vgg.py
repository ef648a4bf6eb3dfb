"""VGG19 features by layer name (relu1_2 = 'r12', ...), from either of the two VGG19 files used here.

- CoCosNet's training losses load ``models/vgg19_conv.pth`` (registry ``cocosnet_vgg19``): a Caffe
  VGG19 with keys ``conv1_1.weight`` ... ``conv5_4.bias``, fed BGR images in [0, 255] minus the
  Caffe means (the reference's ``vgg_preprocess`` with ``--vgg_normal_correct``).
- The semantic score uses "an ImageNet pretrained VGG" (CoCosNet, Sec. 4): torchvision's VGG19
  (registry ``vgg19``, keys ``features.N.weight``), fed RGB in [0, 1] with ImageNet's mean and std.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facesketch.errors import WeightsError

BLOCKS = (2, 2, 4, 4, 4)  # convolutions per block of VGG19
NAMES = [f"conv{b + 1}_{i + 1}" for b, n in enumerate(BLOCKS) for i in range(n)]
TORCHVISION_INDEX = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]  # features.N of each conv
CAFFE_BGR_MEAN = (0.40760392, 0.45795686, 0.48501961)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """The 16 convolutions of VGG19 with max pooling; ``forward(x, keys)`` returns the named ReLU outputs."""

    def __init__(self, preprocess: str):
        super().__init__()
        if preprocess not in ("caffe", "imagenet"):
            raise ValueError(f"unknown VGG preprocessing {preprocess!r}")
        self.preprocess = preprocess
        chans = [3] + [64] * 2 + [128] * 2 + [256] * 4 + [512] * 8
        for k, name in enumerate(NAMES):
            self.add_module(name, nn.Conv2d(chans[k], chans[k + 1], 3, padding=1))
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: RGB in [-1, 1] (grey is repeated)."""
        x = (x.expand(-1, 3, -1, -1) + 1) / 2
        if self.preprocess == "caffe":
            mean = torch.tensor(CAFFE_BGR_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            return (x.flip(1) - mean) * 255
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def forward(self, x: torch.Tensor, keys: list[str]) -> list[torch.Tensor]:
        x = self._prepare(x)
        out, last = {}, max(int(k[1:]) for k in keys)
        for name in NAMES:
            b, i = int(name[4]), int(name[6])
            x = F.relu(getattr(self, name)(x))
            out[f"r{b}{i}"] = x
            if 10 * b + i >= last:
                break
            if i == BLOCKS[b - 1]:
                x = F.max_pool2d(x, 2)
        return [out[k] for k in keys]


def _load(net: VGG19Features, state: dict, key_of, path) -> VGG19Features:
    mapped = {}
    for k, name in enumerate(NAMES):
        for p in ("weight", "bias"):
            key = key_of(k, name, p)
            if key not in state:
                raise WeightsError(f"{path}: not a VGG19 state dict: missing {key}")
            mapped[f"{name}.{p}"] = state[key]
    try:
        net.load_state_dict(mapped)
    except RuntimeError as e:
        raise WeightsError(f"{path}: VGG19 shapes do not match ({str(e).splitlines()[0]})") from e
    return net


def from_cocosnet_state(state: dict, path: Path | str = "state dict") -> VGG19Features:
    return _load(VGG19Features("caffe"), state, lambda k, name, p: f"{name}.{p}", path)


def from_torchvision_state(state: dict, path: Path | str = "state dict") -> VGG19Features:
    return _load(VGG19Features("imagenet"), state, lambda k, name, p: f"features.{TORCHVISION_INDEX[k]}.{p}", path)


def load(name: str, weights_dir: Path) -> VGG19Features:
    """``cocosnet_vgg19`` (training losses) or ``vgg19`` (the semantic score), verified by the registry."""
    from facesketch.maps.weights import require
    from facesketch.metrics.networks import _torch_load

    path = require(name, weights_dir)
    state = _torch_load(path)
    return from_cocosnet_state(state, path) if name == "cocosnet_vgg19" else from_torchvision_state(state, path)
