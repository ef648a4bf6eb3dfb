"""Generators: pix2pix U-Net, HIDA's depth-aware U-Net, ResNet (CycleGAN / Pix2PixHD global),
and the AttentionGAN generator of the edge/normal CycleGAN (docs/architectures.md).

Every generator takes ``forward(x, depth=None, style=None)``: x in [-1, 1], depth (B, 1, H, W)
in [0, 1], style (B, 3) one-hot. Each uses what its switches ask for.

Constructors are the one home of each switch's default: their keyword-only arguments are the
switches a variant's ``generator`` block may set (facesketch.models.registry reads them from the
signature); the positional ones (channels in and out, the input size) come from the variant.
Each generator says what it reads besides the photo in ``reads_depth`` and ``reads_style``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from facesketch.models.layers import IDAUp, activation, norm_layer, style_maps


def u_net_depth(num_downs: int | None, crop: int) -> int:
    """Down layers of a U-Net that ends at 1x1: log2(crop) unless set; they must divide crop."""
    if num_downs is not None:
        if crop % (2 ** num_downs):
            raise ValueError(f"generator.num_downs {num_downs} does not divide input.crop {crop}")
        return num_downs
    n = int(round(math.log2(crop)))
    if 2 ** n != crop:
        raise ValueError(f"input.crop {crop} is not a power of two; set generator.num_downs")
    return n


def style_input_channels(style_input: str) -> int:
    """3 one-hot channels appended to the input for ``channels``; networks without a DySPADE
    condition take only ``none`` or ``channels``."""
    if style_input not in ("none", "channels"):
        raise ValueError(f"style_input {style_input!r} needs a HIDA generator (this one takes none or channels)")
    return 3 if style_input == "channels" else 0


# --- pix2pix U-Net ------------------------------------------------------------------------------


class UNet(nn.Module):
    """pix2pix's U-Net: ``num_downs`` stride-2 convs down to 1x1 and back, skips between mirrors.

    Down: [LeakyReLU 0.2] -> Conv4x4/2 -> [norm]; up: ReLU -> TrConv4x4/2 -> norm [-> dropout],
    the outermost up ending in tanh, dropout in the (num_downs - 5) layers below the innermost,
    as in the reference implementation (unet_256 = 8 downs).
    """

    def __init__(self, cin: int, cout: int, crop: int = 256, *, ngf: int = 64, num_downs: int | None = None,
                 norm: str = "batch", dropout: bool = True, style_input: str = "none"):
        super().__init__()
        num_downs = u_net_depth(num_downs, crop)
        self.style_channels = style_channels = style_input_channels(style_input)
        self.reads_depth, self.reads_style = False, style_channels > 0
        bias = norm != "batch"
        chans = [min(ngf * 2 ** i, ngf * 8) for i in range(num_downs)]
        self.downs = nn.ModuleList()
        prev = cin + style_channels
        for i, c in enumerate(chans):
            layers = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(prev, c, 4, 2, 1, bias=bias))
            if 0 < i < num_downs - 1:
                layers.append(norm_layer(norm, c))
            self.downs.append(nn.Sequential(*layers))
            prev = c
        self.ups = nn.ModuleList()
        for i in reversed(range(num_downs)):
            cin_up = chans[i] if i == num_downs - 1 else 2 * chans[i]
            if i == 0:
                self.ups.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(cin_up, cout, 4, 2, 1), nn.Tanh()))
                continue
            layers = [nn.ReLU(), nn.ConvTranspose2d(cin_up, chans[i - 1], 4, 2, 1, bias=bias),
                      norm_layer(norm, chans[i - 1])]
            if dropout and 4 <= i <= num_downs - 2:  # the num_downs - 5 blocks around the innermost
                layers.append(nn.Dropout(0.5))
            self.ups.append(nn.Sequential(*layers))

    def forward(self, x, depth=None, style=None):
        if self.style_channels:
            x = torch.cat([x, style_maps(style, x.shape[-2:], x.dtype)], 1)
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        x = self.ups[0](skips[-1])
        for up, skip in zip(self.ups[1:], reversed(skips[:-1])):
            x = up(torch.cat([x, skip], 1))
        return x


# --- HIDA ---------------------------------------------------------------------------------------


class HIDAGenerator(nn.Module):
    """HIDA's U-Net (docs/architectures.md, "HIDA generator"): photo and depth each through their
    own first conv, seven more down layers (activation -> Conv4x4/2 -> IN, the last without IN),
    seven IDA up layers, a sketch head and a depth-reconstruction head.
    """

    @staticmethod
    def dog_layers(placement: str, n_up: int) -> tuple[int, ...]:
        """Up layers (0 = coarsest) with DOG: top2 the two coarsest, btm2 the two finest, mid3 the
        three in the middle (layers 3-5 of the 256x256 net's seven), all, or none."""
        start = (n_up - 3) // 2
        return {"none": (), "top2": (0, 1), "mid3": (start, start + 1, start + 2), "btm2": (n_up - 2, n_up - 1),
                "all": tuple(range(n_up))}[placement]

    def __init__(self, cin: int = 3, cout: int = 1, crop: int = 256, *, ngf: int = 64, num_downs: int | None = None,
                 depth_input: bool = True, decoder_norm: str = "dyspade", encoder_activation: str = "metaacon",
                 decoder_activation: str = "infoacon", dog: str = "top2", depth_head: bool = True,
                 residual: str = "paper", depth_pyramid: str = "gaussian", appearance: bool = True,
                 style_input: str = "condition"):
        super().__init__()
        num_downs = u_net_depth(num_downs, crop)
        if num_downs < 4:
            raise ValueError("HIDA needs at least 4 down layers (3 up layers for the DOG placements)")
        self.depth_input, self.style_input = depth_input, style_input
        self.reads_depth, self.reads_style = depth_input, style_input != "none"
        n_up = num_downs - 1
        dog_at = set(self.dog_layers(dog, n_up))
        style_ch = 3 if style_input == "channels" else 0
        self.first_photo = nn.Conv2d(cin + style_ch, ngf, 4, 2, 1)
        self.first_depth = nn.Conv2d(1, ngf, 4, 2, 1) if depth_input else None
        c0 = ngf * (2 if depth_input else 1)
        # encoder widths after the first layer: 2ngf, 4ngf, 8ngf, 8ngf, ... (128, 256, 512 x4 at ngf 64)
        enc = [min(ngf * 2 ** (i + 1), ngf * 8) for i in range(n_up)]
        self.downs = nn.ModuleList()
        prev = c0
        for i, c in enumerate(enc):
            layers = [activation(encoder_activation, prev), nn.Conv2d(prev, c, 4, 2, 1)]
            if i < n_up - 1:
                layers.append(nn.InstanceNorm2d(c))
            self.downs.append(nn.Sequential(*layers))
            prev = c
        # up layer k mirrors encoder feature n_up-1-k (the last one ends at ngf) and, from k = 1
        # on, concatenates encoder feature n_up-k as its skip
        fch = [c0] + enc
        cond_style = 3 if style_input == "condition" else 0
        self.ups = nn.ModuleList()
        prev = enc[-1]
        for k in range(n_up):
            out = fch[n_up - 1 - k] if k < n_up - 1 else ngf
            skip = fch[n_up - k] if k > 0 else 0
            self.ups.append(IDAUp(
                prev + skip, out, skip_channels=skip, dog=k in dog_at, norm=decoder_norm,
                act=decoder_activation, appearance=appearance and k > 0, depth=depth_input,
                style_channels=cond_style, residual=residual, dropout=k < 3, depth_pyramid=depth_pyramid))
            prev = out
        head_act = "metaacon" if decoder_activation in ("metaacon", "infoacon") else decoder_activation
        self.sketch_head = nn.Sequential(activation(head_act, 2 * ngf),
                                         nn.ConvTranspose2d(2 * ngf, cout, 4, 2, 1), nn.Tanh())
        self.depth_head = None
        if depth_head and depth_input:
            self.depth_head = nn.Sequential(activation(head_act, 2 * ngf), nn.ConvTranspose2d(2 * ngf, 1, 4, 2, 1))

    def forward(self, x, depth=None, style=None):
        return self.forward_all(x, depth, style)[0]

    def forward_all(self, x, depth=None, style=None):
        """(sketch, reconstructed depth or None)."""
        if self.style_input == "channels":
            x = torch.cat([x, style_maps(style, x.shape[-2:], x.dtype)], 1)
        p = self.first_photo(x)
        feats = [p]
        if self.depth_input:
            d = self.first_depth(depth)
            feats = [torch.cat([p, d], 1)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        y = self.ups[0](feats[-1], None, depth, style)
        for up, skip in zip(self.ups[1:], reversed(feats[1:-1])):
            y = up(y, skip, depth, style)
        sketch = self.sketch_head(torch.cat([y, p], 1))
        depth_out = self.depth_head(torch.cat([y, d], 1)) if self.depth_head is not None else None
        return sketch, depth_out


# --- ResNet generators (CycleGAN, Pix2PixHD global) -------------------------------------------------


class ResBlock(nn.Module):
    def __init__(self, c: int, norm: str, dropout: bool = False):
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), norm_layer(norm, c), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), norm_layer(norm, c)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.body(x)


def resnet_encoder(cin: int, ngf: int, n_down: int, n_blocks: int, norm: str) -> tuple[nn.Sequential, int]:
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(cin, ngf, 7), norm_layer(norm, ngf), nn.ReLU()]
    c = ngf
    for _ in range(n_down):
        layers += [nn.Conv2d(c, 2 * c, 3, 2, 1), norm_layer(norm, 2 * c), nn.ReLU()]
        c *= 2
    layers += [ResBlock(c, norm) for _ in range(n_blocks)]
    return nn.Sequential(*layers), c


def resnet_decoder_trunk(c: int, n_up: int, norm: str) -> tuple[nn.Sequential, int]:
    layers = []
    for _ in range(n_up):
        layers += [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1), norm_layer(norm, c // 2), nn.ReLU()]
        c //= 2
    return nn.Sequential(*layers), c


class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator: 2 stride-2 downsamplings, 9 residual blocks at 1/4 size, back up."""

    def __init__(self, cin: int, cout: int, crop: int | None = None, *, ngf: int = 64, n_downsampling: int = 2,
                 n_blocks: int = 9, norm: str = "instance", style_input: str = "none"):
        super().__init__()
        if crop is not None and crop % (2 ** n_downsampling):
            raise ValueError(f"input.crop {crop} is not divisible by 2^{n_downsampling}")
        self.style_channels = style_channels = style_input_channels(style_input)
        self.reads_depth, self.reads_style = False, style_channels > 0
        enc, c = resnet_encoder(cin + style_channels, ngf, n_downsampling, n_blocks, norm)
        dec, c = resnet_decoder_trunk(c, n_downsampling, norm)
        self.net = nn.Sequential(enc, dec, nn.ReflectionPad2d(3), nn.Conv2d(c, cout, 7), nn.Tanh())

    def forward(self, x, depth=None, style=None):
        if self.style_channels:
            x = torch.cat([x, style_maps(style, x.shape[-2:], x.dtype)], 1)
        return self.net(x)


class GlobalGenerator(ResnetGenerator):
    """Pix2PixHD's global generator: the ResNet generator with 4 downsamplings (its only difference)."""

    def __init__(self, cin: int, cout: int, crop: int | None = None, *, ngf: int = 64, n_downsampling: int = 4,
                 n_blocks: int = 9, norm: str = "instance", style_input: str = "none"):
        super().__init__(cin, cout, crop, ngf=ngf, n_downsampling=n_downsampling, n_blocks=n_blocks, norm=norm,
                         style_input=style_input)


class AttentionResnetGenerator(nn.Module):
    """AttentionGAN's generator: a ResNet encoder, then a content decoder drawing ``n_content``
    images (tanh) and an attention decoder drawing n_content + 1 masks (softmax over masks);
    output = sum_i content_i * mask_i + input * mask_last (the background taken from the input).
    """

    def __init__(self, cin: int, cout: int, *, ngf: int = 64, n_blocks: int = 9, n_content: int = 9,
                 norm: str = "instance"):
        super().__init__()
        self.cout, self.n_content = cout, n_content
        self.reads_depth = self.reads_style = False
        self.encoder, c = resnet_encoder(cin, ngf, 2, n_blocks, norm)
        content_trunk, c1 = resnet_decoder_trunk(c, 2, norm)
        attention_trunk, c2 = resnet_decoder_trunk(c, 2, norm)
        self.content = nn.Sequential(content_trunk, nn.ReflectionPad2d(3), nn.Conv2d(c1, cout * n_content, 7),
                                     nn.Tanh())
        self.attention = nn.Sequential(attention_trunk, nn.Conv2d(c2, n_content + 1, 1))

    def _background(self, x):
        if x.shape[1] == self.cout:
            return x
        if self.cout == 1:  # MATLAB rgb2gray weights (Python numbers: no host-to-device copy per call)
            return 0.2989 * x[:, 0:1] + 0.5870 * x[:, 1:2] + 0.1140 * x[:, 2:3]
        return x.expand(-1, self.cout, -1, -1)

    def forward(self, x, depth=None, style=None):
        return self.forward_all(x)[0]

    def forward_all(self, x, depth=None, style=None):
        """(output, attention masks (B, n_content + 1, H, W))."""
        h = self.encoder(x)
        b = x.shape[0]
        content = self.content(h).view(b, self.n_content, self.cout, *x.shape[-2:])
        att = torch.softmax(self.attention(h), dim=1)
        out = (content * att[:, : self.n_content, None]).sum(1)
        return out + self._background(x) * att[:, self.n_content:], att


def resize_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return x if x.shape[-2:] == ref.shape[-2:] else F.interpolate(x, size=ref.shape[-2:], mode="bilinear",
                                                                  align_corners=False)
