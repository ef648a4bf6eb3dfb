"""Discriminators: pix2pix's 70x70 PatchGAN, HIDA's (depth, sketch) PatchGAN, and Pix2PixHD's
multi-scale discriminator (docs/architectures.md). Each returns a list of feature maps whose last
entry is the patch logits, so feature matching can use the rest.

As for the generators, the keyword-only constructor arguments are the switches a variant's
``discriminator`` block may set, with their defaults.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from facesketch.models.layers import norm_layer


def _conv(cin, cout, stride, padding, norm):
    conv = nn.Conv2d(cin, cout, 4, stride, padding, bias=norm in ("instance", "none", "spectral"))
    return spectral_norm(conv) if norm == "spectral" else conv


def _norm(kind, c):
    return nn.Identity() if kind == "spectral" else norm_layer(kind, c)


class PatchGAN(nn.Module):
    """pix2pix NLayerDiscriminator: C64-C128-C256-C512 (stride 2, 2, 2, 1) then 1 channel,
    4x4 kernels with padding 1: a 70x70 receptive field, 30x30 logits for 256x256 input."""

    def __init__(self, cin: int, padding: int = 1, *, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        stages = [nn.Sequential(_conv(cin, ndf, 2, padding, "none"), nn.LeakyReLU(0.2))]
        c = ndf
        for n in range(1, n_layers + 1):
            c_out = ndf * min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            stages.append(nn.Sequential(_conv(c, c_out, stride, padding, norm), _norm(norm, c_out), nn.LeakyReLU(0.2)))
            c = c_out
        stages.append(nn.Sequential(_conv(c, 1, 1, padding, "none")))
        self.stages = nn.ModuleList(stages)

    def forward(self, x) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class HIDADiscriminator(nn.Module):
    """HIDA's released discriminator on cat(depth, sketch): stages 64-128-256-512 with the norm
    before each conv, LeakyReLU 0.2, padding 2, then InstanceNorm over the last features and
    LeakyReLU 0.2 before the 1-channel conv (spade_discraminator.py NLayerDiscriminator; 35x35
    logits for 256x256 input)."""

    def __init__(self, cin: int, *, ndf: int = 64, n_layers: int = 3, norm: str = "instance"):
        super().__init__()
        stages = [nn.Sequential(_conv(cin, ndf, 2, 2, "none"), nn.LeakyReLU(0.2))]
        c = ndf
        for n in range(1, n_layers + 1):
            c_out = ndf * min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            stages.append(nn.Sequential(_norm(norm, c), _conv(c, c_out, stride, 2, norm), nn.LeakyReLU(0.2)))
            c = c_out
        stages.append(nn.Sequential(nn.InstanceNorm2d(c), nn.LeakyReLU(0.2)))
        stages.append(nn.Sequential(_conv(c, 1, 1, 2, "none")))
        self.stages = nn.ModuleList(stages)

    forward = PatchGAN.forward


class MultiScale(nn.Module):
    """Pix2PixHD: ``num_d`` PatchGANs (padding 2) on the input downsampled by 1, 2, 4, ..."""

    def __init__(self, cin: int, *, ndf: int = 64, n_layers: int = 3, num_d: int = 2, norm: str = "instance"):
        super().__init__()
        self.scales = nn.ModuleList(PatchGAN(cin, 2, ndf=ndf, n_layers=n_layers, norm=norm) for _ in range(num_d))

    def forward(self, x) -> list[list[torch.Tensor]]:
        out = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
            out.append(d(x))
        return out


def as_scales(outputs) -> list[list[torch.Tensor]]:
    """Single discriminators return one feature list; multi-scale ones a list of them."""
    return outputs if isinstance(outputs[0], list) else [outputs]
