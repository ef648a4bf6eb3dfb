"""Losses of both papers and their baselines (docs/losses.md).

Images are in [-1, 1]; depth in [0, 1]; discriminator outputs are lists of scales, each a list
of feature maps whose last entry holds the logits (facesketch.models.discriminators).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facesketch.models.discriminators import as_scales

RGB2GRAY = (0.2989, 0.5870, 0.1140)  # MATLAB's rgb2gray, as the FS2K toolbox uses


def to_grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    # weights as Python numbers: a torch.tensor of them would be a host-to-device copy per call
    r, g, b = RGB2GRAY
    return r * x[:, 0:1] + g * x[:, 1:2] + b * x[:, 2:3]


class GANLoss:
    """vanilla (cross-entropy), lsgan (least squares) or hinge, summed over discriminator scales
    as pix2pixHD's GANLoss and HIDA's GANLoss_ver2 do (one scale: the plain loss).

    ``d_extra`` adds the released HIDA code's discriminator term (ganbase.py hinge_panalty,
    model_gpu.py): 0.5 * MSE(mean D(fake), mean D(real))^2 weighted by lambda_panalty = 2,
    i.e. (mean D(fake) - mean D(real))^4 per scale.
    """

    def __init__(self, kind: str = "vanilla", d_extra: bool = False):
        if kind not in ("vanilla", "lsgan", "hinge"):
            raise ValueError(f"unknown GAN loss {kind!r}")
        self.kind, self.d_extra = kind, d_extra

    def _target(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        if self.kind == "vanilla":
            return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(real)))
        return F.mse_loss(logits, torch.full_like(logits, float(real)))

    def d_loss(self, real_out, fake_out) -> torch.Tensor:
        total = 0.0
        for real_feats, fake_feats in zip(as_scales(real_out), as_scales(fake_out)):
            r, f = real_feats[-1].float(), fake_feats[-1].float()
            if self.kind == "hinge":
                loss = F.relu(1 - r).mean() + F.relu(1 + f).mean()
            else:
                loss = 0.5 * (self._target(r, True) + self._target(f, False))
            if self.d_extra:
                loss = loss + (f.mean() - r.mean()) ** 4
            total = total + loss
        return total

    def g_loss(self, fake_out) -> torch.Tensor:
        total = 0.0
        for feats in as_scales(fake_out):
            f = feats[-1].float()
            total = total + (-f.mean() if self.kind == "hinge" else self._target(f, True))
        return total


def feature_matching(real_out, fake_out) -> torch.Tensor:
    """Pix2PixHD: L1 between the discriminator's intermediate features of real and fake,
    weighted 4 / (layers) per scale and 1 / scales."""
    real_s, fake_s = as_scales(real_out), as_scales(fake_out)
    total = 0.0
    for real_feats, fake_feats in zip(real_s, fake_s):
        n = len(real_feats) - 1
        for r, f in zip(real_feats[:-1], fake_feats[:-1]):
            total = total + (4.0 / n) * F.l1_loss(f.float(), r.detach().float()) / len(real_s)
    return total


_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_PREWITT = torch.tensor([[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]]) / 3.0
_SMOOTHING = {"sobel": (1.0, 2.0, 1.0), "prewitt": (1 / 3, 1 / 3, 1 / 3)}


def image_gradients(x: torch.Tensor, kind: str = "sobel", grey: str = "luminance",
                    padding: str = "replicate") -> torch.Tensor:
    """(B, 2, H, W): horizontal and vertical gradients of a grey image.

    grey: ``luminance`` (MATLAB rgb2gray) or ``sum`` (R+G+B, as the released GMSDLoss convolves
    every input channel with one kernel); padding: ``replicate`` or ``zeros`` (the released
    conv2d(padding=1)).
    """
    # the 3x3 cross-correlation written out with slices (the kernel's columns/rows are -1, 0, +1
    # times the smoothing taps), so no kernel tensor is copied to the device on each call
    taps = _SMOOTHING[kind]  # the third column of _SOBEL / _PREWITT
    g = x.sum(1, keepdim=True) if grey == "sum" else to_grey(x)
    p = F.pad(g, (1, 1, 1, 1), mode="replicate") if padding == "replicate" else F.pad(g, (1, 1, 1, 1))
    h, w = x.shape[-2:]
    gx = sum(t * (p[:, :, i:i + h, 2:2 + w] - p[:, :, i:i + h, 0:w]) for i, t in enumerate(taps))
    gy = sum(t * (p[:, :, 2:2 + h, j:j + w] - p[:, :, 0:h, j:j + w]) for j, t in enumerate(taps))
    return torch.cat([gx, gy], 1)


# the textural loss's modes (paper, released code) -> the gradient kernel each uses
TEXTURAL_KERNEL = {"sobel_target": "sobel", "prewitt_photo": "prewitt"}


def textural_loss(pred: torch.Tensor, ref: torch.Tensor, kind: str = "sobel", eps: float = 1e-6,
                  grey: str = "luminance", padding: str = "replicate") -> torch.Tensor:
    """Mean cosine distance 1 - cos(grad pred, grad ref) over pixels.

    Paper: Sobel gradients of the sketch against the ground-truth sketch (mode sobel_target).
    Released code (gmsd_loss.py): Prewitt / 3 gradients against the input photo taken as
    R+G+B, zero padding (mode prewitt_photo: ``textural_mode_args``).
    """
    gp = image_gradients(pred.float(), kind, grey, padding)
    gr = image_gradients(ref.float(), kind, grey, padding)
    cos = (gp * gr).sum(1) / (gp.norm(dim=1) * gr.norm(dim=1) + eps)
    return (1 - cos).mean()


def textural_mode_args(mode: str) -> dict:
    """Keyword arguments of ``textural_loss`` for a config mode (the reference is chosen by the caller)."""
    if mode == "sobel_target":
        return {"kind": "sobel", "grey": "luminance", "padding": "replicate"}
    if mode == "prewitt_photo":
        return {"kind": "prewitt", "grey": "sum", "padding": "zeros"}
    raise ValueError(f"unknown textural mode {mode!r}")


def geometric_loss(pred_depth: torch.Tensor, depth: torch.Tensor, mode: str = "mse") -> torch.Tensor:
    """Paper: ||D_hat - D||^2 (mean squared error); released code: its square root (RMSE)."""
    mse = F.mse_loss(pred_depth.float(), depth.float())
    return mse if mode == "mse" else torch.sqrt(mse + 1e-12)


class VGGLoss(nn.Module):
    """Pix2PixHD's perceptual loss: L1 of VGG19 relu1_1..relu5_1 features, weights 1/32..1,
    on the [-1, 1] images as Pix2PixHD feeds them."""

    SLICES = (2, 7, 12, 21, 30)
    WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)

    def __init__(self, state_dict: dict):
        super().__init__()
        import torchvision

        vgg = torchvision.models.vgg19(weights=None)
        vgg.load_state_dict(state_dict)
        self.features = vgg.features[: self.SLICES[-1]].eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        loss, start = 0.0, 0
        for end, w in zip(self.SLICES, self.WEIGHTS):
            block = self.features[start:end]
            x, y = block(x), block(y)
            loss = loss + w * F.l1_loss(x, y.detach())
            start = end
        return loss


class EdgeLoss(nn.Module):
    """LPIPS(HED(a), HED(G_B(G_A(a)))): gradients flow through frozen HED and LPIPS networks."""

    def __init__(self, hed: nn.Module, lpips_net: nn.Module):
        super().__init__()
        self.hed, self.lpips = hed, lpips_net

    def edges(self, x: torch.Tensor) -> torch.Tensor:
        rgb01 = (x.expand(-1, 3, -1, -1) + 1) / 2
        return self.hed(rgb01)

    def forward(self, real: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            e_real = self.edges(real)
        e_rec = self.edges(rec)
        to_lpips = lambda e: (2 * e - 1).expand(-1, 3, -1, -1)  # noqa: E731
        # LPIPS runs under the step's autocast; its distance is averaged and returned in fp32
        return self.lpips(to_lpips(e_real), to_lpips(e_rec)).float().mean()


class NormalLoss(nn.Module):
    """MSE(N(a), N(G_B(G_A(a)))) for any normal estimator taking RGB in [0, 1]
    (facesketch.maps.dsine.NormalPredictor around DSINE, or a module with its interface)."""

    def __init__(self, estimator: nn.Module):
        super().__init__()
        self.estimator = estimator

    def forward(self, real: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            n_real = self.estimator((real + 1) / 2)
        return F.mse_loss(self.estimator((rec + 1) / 2), n_real)
