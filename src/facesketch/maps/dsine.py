"""DSINE surface normals (Bae & Davison, CVPR 2024), built here to load the official dsine.pt.

The network: an EfficientNet-B5 encoder (timm's ``tf_efficientnet_b5``, created without
downloading; the checkpoint brings its weights), a decoder that sees per-pixel ray directions,
a ray-ReLU that keeps normals visible, and five ConvGRU refinement steps that rotate each
pixel's normal towards its neighbours', with convex upsampling (x8) of every estimate.
Module names follow the official checkpoint (``{'model': state_dict}``), so it loads strictly.

Normals come out in DSINE's convention (x right, y down, z towards the camera; see
facesketch.maps.encoding). ``NormalPredictor`` is the interface the CycleGAN normal loss uses:
RGB in [0, 1] in, unit normals of the same size out, differentiable.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facesketch.errors import WeightsError
from facesketch.torchio import safe_load

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SKIP_CHANNELS = (2048, 176, 64)  # conv_head, blocks[4], blocks[2] of EfficientNet-B5


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        import timm

        self.original_model = timm.create_model("tf_efficientnet_b5", pretrained=False, num_classes=0,
                                                global_pool="")

    def forward(self, x):
        m = self.original_model
        x = m.bn1(m.conv_stem(x))  # timm's bn1 applies the SiLU that geffnet keeps as act1
        feats = []
        for block in m.blocks:
            x = block(x)
            feats.append(x)
        # the decoder takes blocks[2] (1/8), blocks[4] (1/16) and conv_head before its BN (1/32)
        return feats[2], feats[4], m.conv_head(x)


class WSConv2d(nn.Conv2d):
    """Convolution with weight standardisation (per output channel: zero mean, unit std)."""

    def forward(self, x):
        w = self.weight
        w = w - w.mean(dim=(1, 2, 3), keepdim=True)
        w = w / (w.flatten(1).std(dim=1).view(-1, 1, 1, 1) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class UpSampleGN(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self._net = nn.Sequential(WSConv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.LeakyReLU(),
                                  WSConv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.LeakyReLU())

    def forward(self, x, skip):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self._net(torch.cat([x, skip], dim=1))


def head(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, hidden, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(hidden, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, cout, 1))


class Decoder(nn.Module):
    def __init__(self, features: int = 2048):
        super().__init__()
        self.conv2 = nn.Conv2d(features + 2, features, 1)
        self.up1 = UpSampleGN(features + SKIP_CHANNELS[1] + 2, features // 2)
        self.up2 = UpSampleGN(features // 2 + SKIP_CHANNELS[2] + 2, features // 4)
        c = features // 4 + 2
        self.normal_head = head(c, 128, 3)
        self.feature_head = head(c, 128, 64)
        self.hidden_head = head(c, 128, 64)

    def forward(self, feats, uv32, uv16, uv8):
        b2, b4, top = feats
        x = self.conv2(torch.cat([top, uv32], 1))
        x = self.up1(x, torch.cat([b4, uv16], 1))
        x = self.up2(x, torch.cat([b2, uv8], 1))
        x = torch.cat([x, uv8], 1)
        return F.normalize(self.normal_head(x), dim=1), self.feature_head(x), self.hidden_head(x)


class ConvGRU(nn.Module):
    def __init__(self, hidden: int, inp: int, k: int):
        super().__init__()
        self.convz = nn.Conv2d(hidden + inp, hidden, k, padding=k // 2)
        self.convr = nn.Conv2d(hidden + inp, hidden, k, padding=k // 2)
        self.convq = nn.Conv2d(hidden + inp, hidden, k, padding=k // 2)

    def forward(self, h, x):
        hx = torch.cat([h, x], 1)
        z, r = torch.sigmoid(self.convz(hx)), torch.sigmoid(self.convr(hx))
        q = torch.tanh(self.convq(torch.cat([r * h, x], 1)))
        return (1 - z) * h + z * q


def ray_relu(normal: torch.Tensor, ray: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """Lift each normal's component along its viewing ray to at least eps (it must be visible)."""
    cos = F.cosine_similarity(normal, ray, dim=1).unsqueeze(1)
    return F.normalize(normal + ray * (F.relu(cos - eps) + eps - cos), dim=1)


def axis_angle_to_matrix(v: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula for rotation vectors (..., 3) -> (..., 3, 3), stable near zero."""
    theta2 = (v * v).sum(-1, keepdim=True)
    theta = theta2.sqrt()
    small = theta < 1e-4
    safe = torch.where(small, torch.ones_like(theta), theta)
    a = torch.where(small, 1 - theta2 / 6, torch.sin(safe) / safe)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(safe)) / (safe * safe))
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(v.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(k)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


def _unfold(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, k*k, H, W) neighbourhoods with replicated borders."""
    b, c, h, w = x.shape
    x = F.pad(x, (k // 2,) * 4, mode="replicate")
    return F.unfold(x, k).view(b, c, k * k, h, w)


def convex_upsample(x: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Each output pixel a softmax-weighted mix of the 3x3 low-resolution neighbours."""
    b, c, h, w = x.shape
    mask = torch.softmax(mask.view(b, 1, 9, k, k, h, w), dim=2)
    nb = _unfold(x, 3).view(b, c, 9, 1, 1, h, w)
    up = (mask * nb).sum(2).permute(0, 1, 4, 2, 5, 3)
    return up.reshape(b, c, k * h, k * w)


class DSINE(nn.Module):
    def __init__(self, patch: int = 5, iterations: int = 5, downsample: int = 8):
        super().__init__()
        self.ps, self.num_iter, self.ds = patch, iterations, downsample
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.gru = ConvGRU(64, 64 + 2, patch)
        self.prob_head = head(64 + 2, 64, patch * patch)
        self.xy_head = head(64 + 2, 64, patch * patch * 2)
        self.angle_head = head(64 + 2, 64, patch * patch)
        self.up_prob_head = head(64 + 2, 64, 9 * downsample * downsample)

    @staticmethod
    def _pixel_coords(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        ys, xs = torch.meshgrid(torch.arange(h, dtype=like.dtype, device=like.device),
                                torch.arange(w, dtype=like.dtype, device=like.device), indexing="ij")
        return torch.stack([xs + 0.5, ys + 0.5, torch.ones_like(xs)]).unsqueeze(0)

    @staticmethod
    def _scaled(intrins, h, w, oh, ow):
        fu = intrins[:, 0, 0] * (w / ow)
        cu = intrins[:, 0, 2] * (w / ow)
        fv = intrins[:, 1, 1] * (h / oh)
        cv = intrins[:, 1, 2] * (h / oh)
        return [t.view(-1, 1, 1, 1) for t in (fu, cu, fv, cv)]

    def _ray(self, intrins, h, w, oh, ow, uv_only):
        fu, cu, fv, cv = self._scaled(intrins, h, w, oh, ow)
        p = self._pixel_coords(h, w, intrins).expand(intrins.shape[0], -1, -1, -1)
        ray = torch.cat([(p[:, :1] - cu) / fu, (p[:, 1:2] - cv) / fv, p[:, 2:]], 1)
        return ray[:, :2] if uv_only else F.normalize(ray, dim=1)

    def _refine(self, h, feat, norm, intrins, oh, ow, uv8, ray8):
        b, _, hh, ww = norm.shape
        fu, cu, fv, cv = self._scaled(intrins, hh, ww, oh, ow)
        h = self.gru(h, feat)
        hu = torch.cat([h, uv8], 1)
        prob = torch.sigmoid(self.prob_head(hu)).unsqueeze(1)
        nb = _unfold(norm, self.ps)  # (B, 3, P, H, W)
        xs, ys = self.xy_head(hu).split(self.ps * self.ps, dim=1)
        xy = F.normalize(torch.stack([xs, ys], 1), dim=1)
        angle = torch.sigmoid(self.angle_head(hu)).unsqueeze(1) * math.pi
        pix = _unfold(self._pixel_coords(hh, ww, norm), self.ps)
        du, dv = xy[:, 0] / fu, xy[:, 1] / fv
        tu = (pix[:, 0] + xy[:, 0] - cu) / fu
        tv = (pix[:, 1] + xy[:, 1] - cv) / fv
        nx, ny, nz = nb[:, 0], nb[:, 1], nb[:, 2]
        den = tu * nx + tv * ny + nz
        den = torch.where(den.abs() < 1e-8, 1e-8 * torch.sign(den), den)
        dz = -(du * nx + dv * ny) / den
        axes = F.normalize(torch.stack([du + dz * tu, dv + dz * tv, dz], 1), dim=1)
        axes = torch.where(torch.isfinite(axes).all(1, keepdim=True), axes, torch.zeros_like(axes))
        rot = axis_angle_to_matrix((axes * angle).permute(0, 2, 3, 4, 1))  # (B, P, H, W, 3, 3)
        rotated = torch.einsum("bpxyij,bpxyj->bpxyi", rot, nb.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
        rotated = F.normalize(rotated, dim=1)
        rotated = torch.stack([ray_relu(rotated[:, :, i], ray8) for i in range(rotated.shape[2])], 2)
        norm = F.normalize((prob * rotated).sum(2), dim=1)
        up = F.normalize(convex_upsample(norm, self.up_prob_head(hu), self.ds), dim=1)
        return h, norm, up

    def forward(self, img: torch.Tensor, intrins: torch.Tensor) -> list[torch.Tensor]:
        """img: ImageNet-normalised RGB, H and W multiples of 32; intrins (B, 3, 3), top-left pixel (0, 0)."""
        feats = self.encoder(img)
        _, _, oh, ow = img.shape
        intrins = intrins.clone()
        intrins[:, 0, 2] += 0.5
        intrins[:, 1, 2] += 0.5
        uv32 = self._ray(intrins, oh // 32, ow // 32, oh, ow, True)
        uv16 = self._ray(intrins, oh // 16, ow // 16, oh, ow, True)
        uv8 = self._ray(intrins, oh // 8, ow // 8, oh, ow, True)
        ray8 = self._ray(intrins, oh // 8, ow // 8, oh, ow, False)
        norm, feat, h = self.decoder(feats, uv32, uv16, uv8)
        norm = ray_relu(norm, ray8)
        feat = torch.cat([feat, uv8], 1)
        preds = [F.normalize(convex_upsample(norm, self.up_prob_head(torch.cat([h, uv8], 1)), self.ds), dim=1)]
        for _ in range(self.num_iter):
            h, norm, up = self._refine(h, feat, norm.detach(), intrins, oh, ow, uv8, ray8)
            preds.append(up)
        return preds


def intrinsics_from_fov(h: int, w: int, fov_deg: float = 60.0, batch: int = 1, device=None) -> torch.Tensor:
    """DSINE's default camera: principal point at the centre, focal from the field of view."""
    f = (max(h, w) / 2.0) / math.tan(math.radians(fov_deg / 2.0))
    # filled on the device from Python numbers: torch.tensor(list, device=...) would be a blocking
    # host-to-device copy in every training step of the normal loss
    k = torch.zeros(batch, 3, 3, device=device)
    k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = f, f, w / 2.0 - 0.5, h / 2.0 - 0.5, 1.0
    return k


def load_checkpoint(path: Path) -> DSINE:
    ckpt = safe_load(path, WeightsError, "PyTorch checkpoint")
    state = ckpt.get("model") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected {{'model': state_dict}} as DSINE saves it")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = DSINE()
    own = model.state_dict()
    for key in own:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = own[key]  # older torch versions did not save this counter
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or wrong:
        detail = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected
                  else f"wrong shapes {wrong[:3]}")
        raise WeightsError(f"{path}: not a DSINE (v02) checkpoint: {detail}")
    model.load_state_dict(state)
    return model.eval()


class NormalPredictor(nn.Module):
    """RGB in [0, 1] (B, 3, H, W) -> unit normals (B, 3, H, W), differentiable.

    Wraps any module with DSINE's interface ``net(img, intrins) -> [..., normals]``: pads to a
    multiple of 32 with ImageNet-normalised black, as DSINE's demo does, and assumes a 60 degree
    field of view.
    """

    def __init__(self, net: nn.Module, fov_deg: float = 60.0):
        super().__init__()
        self.net = net
        self.fov = fov_deg
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        b, _, h, w = rgb01.shape
        ph, pw = (-h) % 32, (-w) % 32
        left, top = pw // 2, ph // 2
        x = F.pad(rgb01, (left, pw - left, top, ph - top), value=0.0)
        x = (x - self.mean) / self.std
        intr = intrinsics_from_fov(h, w, self.fov, b, rgb01.device).to(x.dtype)
        intr[:, 0, 2] += left
        intr[:, 1, 2] += top
        out = self.net(x, intr)[-1]
        return out[:, :, top:top + h, left:left + w]


def load(weights_dir: Path) -> NormalPredictor:
    from facesketch.maps.weights import require

    model = NormalPredictor(load_checkpoint(require("dsine", weights_dir)))
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()
