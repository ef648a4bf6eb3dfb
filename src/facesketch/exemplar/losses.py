"""CoCosNet's training losses as models/pix2pix_model.py composes them (edge-to-face options).

Generator: hinge GAN x weight_gan (10); discriminator feature matching (L1 per layer, lambda_feat
10 / num_D); VGG feature matching to the ground truth on r12..r52 (weights 1/32..1), counted only
for self-referenced samples, x lambda_vgg (10) x fm_ratio (1); perceptual MSE on r42 x 0.001;
contextual loss to the exemplar on r52 (x8), r42 (x4), 2x-pooled r32 (x2), x lambda_vgg x ctx_w (1);
domain alignment L1 between the two adaptors' normalised features (novgg_featpair 10); warp cycle
L1 to the 4x-pooled exemplar (warp_cycle_w 1). Discriminator: hinge on real and fake x weight_gan.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from facesketch.exemplar.cocosnet import feature_normalize

VGG_KEYS = ["r12", "r22", "r32", "r42", "r52"]
FM_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


def hinge_g(preds: list[list[torch.Tensor]]) -> torch.Tensor:
    return sum(-p[-1].mean() for p in preds) / len(preds)


def hinge_d(preds: list[list[torch.Tensor]], real: bool) -> torch.Tensor:
    sign = -1 if real else 1
    return sum(F.relu(1 + sign * p[-1]).mean() for p in preds) / len(preds)


def feature_matching(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]) -> torch.Tensor:
    total = 0.0
    for f_layers, r_layers in zip(fake, real):
        for f, r in zip(f_layers[:-1], r_layers[:-1]):
            total = total + F.l1_loss(f, r.detach())
    return total / len(fake)


def contextual(x: torch.Tensor, y: torch.Tensor, h: float = 0.1) -> torch.Tensor:
    """ContextualLoss_forward with PONO: both centred by the target's per-position channel mean,
    cosine distances normalised by each row's minimum, CX = mean over x of max over y; -log CX per sample."""
    b, c = x.shape[:2]
    mean = y.mean(dim=1, keepdim=True)
    x = feature_normalize(x - mean).view(b, c, -1)
    y = feature_normalize(y - mean).view(b, c, -1)
    d = 1 - torch.matmul(x.permute(0, 2, 1), y)
    d_norm = d / (d.min(dim=-1, keepdim=True)[0] + 1e-3)
    w = torch.exp((1 - d_norm) / h)
    a = w / w.sum(dim=-1, keepdim=True)
    return -torch.log(a.max(dim=-1)[0].mean(dim=1))


def contextual_layers(fake: list[torch.Tensor], ref: list[torch.Tensor]) -> torch.Tensor:
    return (contextual(fake[-1], ref[-1].detach()).mean() * 8 + contextual(fake[-2], ref[-2].detach()).mean() * 4
            + contextual(F.avg_pool2d(fake[-3], 2), F.avg_pool2d(ref[-3].detach(), 2)).mean() * 2)


def generator_losses(w: dict, fake, real, ref, self_ref, out, d_fake, d_real, vgg, perceptual_layer: str = "r42"):
    """Every weighted generator term by name (the caller sums them)."""
    f_fake = vgg(fake, VGG_KEYS)
    with torch.no_grad():
        f_real, f_ref = vgg(real, VGG_KEYS), vgg(ref, VGG_KEYS)
    sample_w = (self_ref / (self_ref.sum() + 1e-5)).view(-1, 1, 1, 1)
    fm = sum(wt * ((a - b).abs() * sample_w).mean() for wt, a, b in zip(FM_WEIGHTS, f_fake, f_real))
    k = VGG_KEYS.index(perceptual_layer)
    return {
        "G_GAN": hinge_g(d_fake) * w["gan"],
        "G_feat": feature_matching(d_fake, d_real) * w["feat"],
        "G_vgg_fm": fm * w["vgg"] * w["fm_ratio"],
        "G_perceptual": F.mse_loss(f_fake[k], f_real[k]) * w["perceptual"],
        "G_contextual": contextual_layers(f_fake, f_ref) * w["vgg"] * w["contextual"],
        "G_domain": F.l1_loss(out["feat_seg"], out["feat_real"]) * w["domain"],
        "G_warp_cycle": F.l1_loss(out["warp_cycle"], F.avg_pool2d(ref, 4)) * w["warp_cycle"],
    }
