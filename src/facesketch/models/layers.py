"""Building blocks of HIDA and the baselines: metaACON, InfoACON, DySPADE, DOG, the IDA up block.

Each is one small module with its switches in the constructor, composed by the generators
the way SPADE composes its normalisation into residual blocks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d


def norm_layer(kind: str, channels: int, affine: bool | None = None) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=bool(affine))
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


def acon_form(x: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The ACON family's switch between linear and non-linear: (p1-p2) x s(beta (p1-p2) x) + p2 x."""
    d = (p1 - p2) * x
    return d * torch.sigmoid(beta * d) + p2 * x


class MetaACON(nn.Module):
    """metaACON (Ma et al., CVPR 2021): beta per sample and channel from the feature itself,
    beta = sigmoid(fc2(fc1(GAP(x)))), fc1: C -> max(16, C // 16), fc2 back to C (1x1 convs)."""

    def __init__(self, channels: int, ratio: int = 16, min_hidden: int = 16):
        super().__init__()
        hidden = max(min_hidden, channels // ratio)
        self.p1 = nn.Parameter(torch.randn(1, channels, 1, 1))
        self.p2 = nn.Parameter(torch.randn(1, channels, 1, 1))
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def beta(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(self.fc1(x.mean(dim=(2, 3), keepdim=True))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return acon_form(x, self.p1, self.p2, self.beta(x))


class InfoACON(nn.Module):
    """HIDA's information-aware ACON: beta per pixel from the condition branch,
    F = (p1-p2) H s(s(theta) (p1-p2) H) + p2 H, theta = the conditioned logits."""

    def __init__(self, channels: int):
        super().__init__()
        self.p1 = nn.Parameter(torch.randn(1, channels, 1, 1))
        self.p2 = nn.Parameter(torch.randn(1, channels, 1, 1))

    def forward(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return acon_form(x, self.p1, self.p2, torch.sigmoid(theta))


def activation(kind: str, channels: int) -> nn.Module:
    """A plain (input-only) activation: relu, leakyrelu (0.2) or metaacon."""
    if kind == "relu":
        return nn.ReLU()
    if kind == "leakyrelu":
        return nn.LeakyReLU(0.2)
    if kind == "metaacon":
        return MetaACON(channels)
    raise ValueError(f"unknown activation {kind!r}")


class ConditionBranch(nn.Module):
    """The shared part of DySPADE/InfoACON: h = metaACON(conv3x3(c)), then conv3x3 heads.

    ``heads`` names the heads it builds among theta, gamma, beta, so a layer creates only the
    parameters it uses.
    """

    def __init__(self, cond_channels: int, channels: int, heads: tuple[str, ...]):
        super().__init__()
        self.shared = nn.Conv2d(cond_channels, channels, 3, padding=1)
        self.act = MetaACON(channels)
        self.heads = nn.ModuleDict({h: nn.Conv2d(channels, channels, 3, padding=1) for h in heads})

    def forward(self, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.act(self.shared(cond))
        return {name: conv(h) for name, conv in self.heads.items()}


def dyspade(f: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """DySPADE: parameter-free instance norm, modulated per pixel: IN(F) (1 + gamma) + beta."""
    return F.instance_norm(f) * (1 + gamma) + beta


class DOGUpsample(nn.Module):
    """Deformable outline generation: bilinear x2, then a modulated deformable 3x3 conv whose
    offsets and mask a zero-initialised 3x3 conv predicts from the same upsampled input.

    Mask = sigmoid(logits) as in DCNv2, so at initialisation (zero offsets, mask 0.5) it is half
    the plain convolution on the upsampled input; with zero offsets and unit mask it is that
    convolution exactly.
    """

    def __init__(self, cin: int, cout: int, groups: int = 2, kernel: int = 3):
        super().__init__()
        if cin % groups:
            raise ValueError(f"DOG: {cin} input channels do not split into {groups} deformable groups")
        self.groups, self.k = groups, kernel
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.offset = nn.Conv2d(cin, 3 * groups * kernel * kernel, kernel, padding=kernel // 2)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        o = self.offset(x)
        n = self.groups * self.k * self.k
        offsets, mask = o[:, : 2 * n], torch.sigmoid(o[:, 2 * n:])
        # in fp32 and back to the input's dtype, as torchvision's CUDA autocast wrapper runs it; its CPU
        # kernel has no bf16 and no autocast wrapper, so the bf16 recipe on the CPU needs this spelled out
        f = lambda t: None if t is None else t.float()  # noqa: E731
        with torch.autocast(x.device.type, enabled=False):
            y = deform_conv2d(f(x), f(offsets), f(self.weight), f(self.bias), padding=self.k // 2, mask=f(mask))
        return y.to(x.dtype)


def gaussian_downsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """A Gaussian pyramid level: 5-tap binomial blur then /2, repeated down to ``size``."""
    taps = (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)  # separable; Python numbers: no host-to-device copy

    def blur(p: torch.Tensor) -> torch.Tensor:
        h, w = p.shape[-2] - 4, p.shape[-1] - 4
        p = sum(t * p[..., i:i + h, :] for i, t in enumerate(taps))
        return sum(t * p[..., j:j + w] for j, t in enumerate(taps))

    while x.shape[-1] > size:
        x = blur(F.pad(x, (2, 2, 2, 2), mode="replicate"))[..., ::2, ::2]
    if x.shape[-1] != size:  # sizes that are not a power-of-two multiple
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


class IDAUp(nn.Module):
    """One up layer of HIDA's decoder, every difference between the ablations a switch.

    Input: x = cat(decoder feature, skip). Steps (REFERENCE 1, "Inside one IDA up layer"):
    appearance A = metaACON(TrConv(skip -> 1)); H = TrConv(x) or DOG(x); condition
    c = cat(depth at this size, style maps, A); F = act(H) with act ReLU, metaACON or
    InfoACON(theta(c)); K = IN(F) or DySPADE(F; gamma(c), beta(c)); with DySPADE the output is
    H + K (paper, Eq. 4) or K + F (released code); dropout 0.5 where asked.
    """

    def __init__(self, cin: int, cout: int, *, skip_channels: int = 0, dog: bool = False,
                 norm: str = "instance", act: str = "relu", appearance: bool = False,
                 depth: bool = True, style_channels: int = 0, residual: str = "paper",
                 dropout: bool = False, depth_pyramid: str = "gaussian"):
        super().__init__()
        self.norm, self.act_kind, self.residual, self.depth_pyramid = norm, act, residual, depth_pyramid
        self.use_depth, self.style_channels = depth, style_channels
        self.up = DOGUpsample(cin, cout) if dog else nn.ConvTranspose2d(cin, cout, 4, 2, 1)
        self.appearance = None
        if appearance and skip_channels:
            self.appearance = nn.Sequential(nn.ConvTranspose2d(skip_channels, 1, 4, 2, 1), MetaACON(1))
        cond = int(depth) + style_channels + int(self.appearance is not None)
        heads = (("theta",) if act == "infoacon" else ()) + (("gamma", "beta") if norm == "dyspade" else ())
        if heads and cond == 0:
            raise ValueError("DySPADE/InfoACON need a condition: enable depth, style or appearance")
        self.condition = ConditionBranch(cond, cout, heads) if heads else None
        if act == "infoacon":
            self.f_act = InfoACON(cout)
        elif act == "metaacon":
            self.f_act = MetaACON(cout)
        elif act in ("relu", "leakyrelu"):
            self.f_act = activation(act, cout)
        else:
            raise ValueError(f"unknown decoder activation {act!r}")
        self.dropout = nn.Dropout(0.5) if dropout else nn.Identity()

    def _condition(self, size: int, depth, style, skip) -> torch.Tensor:
        parts = []
        if self.use_depth:
            if self.depth_pyramid == "gaussian":
                parts.append(gaussian_downsample(depth, size))
            else:
                parts.append(F.interpolate(depth, size=(size, size), mode="nearest"))
        if self.style_channels:
            parts.append(style[:, :, None, None].expand(-1, -1, size, size).to(depth.dtype if depth is not None
                                                                                else style.dtype))
        if self.appearance is not None:
            parts.append(self.appearance(skip))
        return torch.cat(parts, dim=1)

    def forward(self, x, skip=None, depth=None, style=None):
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        h = self.up(x)
        params = self.condition(self._condition(h.shape[-1], depth, style, skip)) if self.condition else {}
        f = self.f_act(h, params["theta"]) if self.act_kind == "infoacon" else self.f_act(h)
        if self.norm == "dyspade":
            k = dyspade(f, params["gamma"], params["beta"])
            out = h + k if self.residual == "paper" else k + f
        else:
            out = F.instance_norm(f)
        return self.dropout(out)
