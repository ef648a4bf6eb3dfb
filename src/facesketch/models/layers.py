"""Building blocks of HIDA and the baselines: metaACON, InfoACON, DySPADE, DOG, the IDA up block.

Each is one small module with its switches in the constructor, composed by the generators
the way SPADE composes its normalisation into residual blocks (docs/architectures.md).
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


def style_maps(style: torch.Tensor, size, dtype: torch.dtype) -> torch.Tensor:
    """One-hot styles (B, 3) as constant maps (B, 3, H, W) of ``size`` (H, W) in ``dtype``."""
    return style[:, :, None, None].expand(-1, -1, *size).to(dtype)


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

    def forward(self, x: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        """``theta`` is ignored: metaACON's switch comes from x itself (see ``activation``)."""
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


class ReLU(nn.ReLU):
    """ReLU that takes (and ignores) a condition ``theta``, as every IDA-layer activation does."""

    def forward(self, x: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)


class LeakyReLU(nn.LeakyReLU):
    """LeakyReLU (0.2) that takes (and ignores) a condition ``theta``, like ReLU above."""

    def __init__(self):
        super().__init__(0.2)

    def forward(self, x: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)


def activation(kind: str, channels: int) -> nn.Module:
    """relu, leakyrelu (0.2), metaacon or infoacon on ``channels`` channels.

    All take ``forward(x, theta=None)``: InfoACON needs the condition's theta, the others ignore
    it, so a decoder layer calls any of them the same way.
    """
    if kind == "relu":
        return ReLU()
    if kind == "leakyrelu":
        return LeakyReLU()
    if kind == "metaacon":
        return MetaACON(channels)
    if kind == "infoacon":
        return InfoACON(channels)
    raise ValueError(f"unknown activation {kind!r}")


def nearest_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(x, size=(size, size), mode="nearest")


class ConditionBranch(nn.Module):
    """The condition of one IDA up layer and the branch shared by DySPADE and InfoACON
    (docs/architectures.md, "Inside one IDA up layer").

    The condition c = cat(depth resized to the layer, style maps, appearance map), each part
    present when its switch asks; then h = metaACON(conv3x3(c)) and conv3x3 heads. ``heads``
    names the heads it builds among theta (InfoACON), gamma and beta (DySPADE), so a layer
    creates only the parameters it uses.
    """

    def __init__(self, channels: int, heads: tuple[str, ...], *, depth: bool, depth_pyramid: str,
                 style_channels: int, appearance: bool):
        super().__init__()
        cond_channels = int(depth) + style_channels + int(appearance)
        if cond_channels == 0:
            raise ValueError("DySPADE/InfoACON need a condition: enable depth, style or appearance")
        self.resize_depth = None
        if depth:
            self.resize_depth = gaussian_downsample if depth_pyramid == "gaussian" else nearest_resize
        self.style_channels = style_channels
        self.shared = nn.Conv2d(cond_channels, channels, 3, padding=1)
        self.act = MetaACON(channels)
        self.heads = nn.ModuleDict({h: nn.Conv2d(channels, channels, 3, padding=1) for h in heads})

    def condition(self, size: int, depth, style, appearance) -> torch.Tensor:
        parts = []
        if self.resize_depth is not None:
            parts.append(self.resize_depth(depth, size))
        if self.style_channels:
            parts.append(style_maps(style, (size, size), depth.dtype if depth is not None else style.dtype))
        if appearance is not None:
            parts.append(appearance)
        return torch.cat(parts, dim=1)

    def forward(self, size: int, depth, style, appearance) -> dict[str, torch.Tensor]:
        h = self.act(self.shared(self.condition(size, depth, style, appearance)))
        return {name: conv(h) for name, conv in self.heads.items()}


def dyspade(f: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """DySPADE: parameter-free instance norm, modulated per pixel: IN(F) (1 + gamma) + beta."""
    return F.instance_norm(f) * (1 + gamma) + beta


class DySPADE(nn.Module):
    """The normalisation of an IDA layer with DySPADE: K = DySPADE(F; gamma, beta) from the
    condition, output H + K (paper, Eq. 4: ``residual: paper``) or K + F (released code)."""

    def __init__(self, residual: str):
        super().__init__()
        if residual not in ("paper", "code"):
            raise ValueError(f"unknown residual {residual!r}")
        self.add_upsampled = residual == "paper"

    def forward(self, h: torch.Tensor, f: torch.Tensor, mod: dict[str, torch.Tensor]) -> torch.Tensor:
        k = dyspade(f, mod["gamma"], mod["beta"])
        return h + k if self.add_upsampled else k + f


class InstanceNorm(nn.Module):
    """The normalisation of an IDA layer without DySPADE: IN(F), no residual, no parameters."""

    def forward(self, h: torch.Tensor, f: torch.Tensor, mod: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.instance_norm(f)


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
    if tuple(x.shape[-2:]) != (size, size):  # sizes that are not a power-of-two multiple, non-square maps
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


class IDAUp(nn.Module):
    """One up layer of HIDA's decoder, every difference between the ablations a switch, each
    chosen here so that ``forward`` is the same few lines for all of them.

    Input: x = cat(decoder feature, skip). Steps (docs/architectures.md, "Inside one IDA up
    layer"): appearance A = metaACON(TrConv(skip -> 1)); H = TrConv(x) or DOG(x); condition
    c = cat(depth at this size, style maps, A) through the shared branch to theta, gamma, beta;
    F = act(H; theta) with act ReLU, metaACON or InfoACON; out = IN(F), or with DySPADE H + K
    (paper, Eq. 4) or K + F (released code), K = DySPADE(F; gamma, beta); dropout 0.5 where asked.

    Parameter names (up, appearance, condition.{shared,act,heads}, f_act) are those of the first
    release, so its checkpoints load.
    """

    def __init__(self, cin: int, cout: int, *, skip_channels: int = 0, dog: bool = False,
                 norm: str = "instance", act: str = "relu", appearance: bool = False,
                 depth: bool = True, style_channels: int = 0, residual: str = "paper",
                 dropout: bool = False, depth_pyramid: str = "gaussian"):
        super().__init__()
        if norm not in ("instance", "dyspade"):
            raise ValueError(f"unknown decoder norm {norm!r}")
        if act not in ("relu", "leakyrelu", "metaacon", "infoacon"):
            raise ValueError(f"unknown decoder activation {act!r}")
        self.up = DOGUpsample(cin, cout) if dog else nn.ConvTranspose2d(cin, cout, 4, 2, 1)
        self.appearance = None
        if appearance and skip_channels:
            self.appearance = nn.Sequential(nn.ConvTranspose2d(skip_channels, 1, 4, 2, 1), MetaACON(1))
        heads = (("theta",) if act == "infoacon" else ()) + (("gamma", "beta") if norm == "dyspade" else ())
        if heads and not (depth or style_channels or self.appearance is not None):
            raise ValueError("DySPADE/InfoACON need a condition: enable depth, style or appearance")
        self.condition = None
        if heads:
            self.condition = ConditionBranch(cout, heads, depth=depth, depth_pyramid=depth_pyramid,
                                             style_channels=style_channels, appearance=self.appearance is not None)
        self.f_act = activation(act, cout)
        self.norm = DySPADE(residual) if norm == "dyspade" else InstanceNorm()
        self.dropout = nn.Dropout(0.5) if dropout else nn.Identity()

    def forward(self, x, skip=None, depth=None, style=None):
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        h = self.up(x)
        mod = {}
        if self.condition is not None:
            a = self.appearance(skip) if self.appearance is not None else None
            mod = self.condition(h.shape[-1], depth, style, a)
        f = self.f_act(h, mod.get("theta"))
        return self.dropout(self.norm(h, f, mod))
