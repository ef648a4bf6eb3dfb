"""Layers, generators, discriminators and the registry: every variant builds, every switch does
exactly what it names."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facesketch.config import deep_merge, load_config
from facesketch.errors import ConfigError
from facesketch.models import registry
from facesketch.models.generators import HIDAGenerator
from facesketch.models.layers import DOGUpsample, IDAUp, InfoACON, MetaACON, acon_form, dyspade, gaussian_downsample
from facesketch.models.summary import count_macs, params, summarize

from .conftest import REPO


@pytest.fixture(scope="module")
def cfg():
    return load_config(REPO / "config.yaml")


def small(spec: dict, crop: int = 64, ngf: int = 8) -> dict:
    """A variant shrunk for CPU tests: same architecture and switches, fewer channels."""
    s = copy.deepcopy(spec)
    s["input"] = {"image": crop, "pad": 0, "crop": crop}
    s["generator"]["ngf"] = ngf
    s["discriminator"] = dict(s.get("discriminator", {}), ndf=8)
    if s["generator"]["arch"] in ("resnet", "attention_resnet", "pix2pixhd_global"):
        s["generator"]["n_blocks"] = 2
    return s


# --- layers -------------------------------------------------------------------------------------


def test_metaacon_is_the_acon_form_with_its_own_beta():
    torch.manual_seed(0)
    m = MetaACON(32)
    x = torch.randn(2, 32, 5, 5)
    beta = torch.sigmoid(m.fc2(m.fc1(x.mean(dim=(2, 3), keepdim=True))))
    d = (m.p1 - m.p2) * x
    torch.testing.assert_close(m(x), d * torch.sigmoid(beta * d) + m.p2 * x)
    assert m.fc1.out_channels == 16 and MetaACON(1024).fc1.out_channels == 64


def test_infoacon_with_constant_theta_equals_metaacon_form():
    torch.manual_seed(0)
    info, meta = InfoACON(6), MetaACON(6)
    with torch.no_grad():
        meta.p1.copy_(info.p1)
        meta.p2.copy_(info.p2)
        meta.fc2.weight.zero_()
        meta.fc2.bias.fill_(0.7)  # metaACON's beta = sigmoid(0.7) for every input
    x = torch.randn(3, 6, 4, 4)
    theta = torch.full((3, 6, 4, 4), 0.7)
    torch.testing.assert_close(info(x, theta), meta(x))
    # and with a spatially varying theta it is per pixel
    theta[..., 0, 0] = -5
    out = info(x, theta)
    torch.testing.assert_close(out[..., 0, 0], acon_form(x, info.p1, info.p2, torch.sigmoid(theta))[..., 0, 0])


def test_dyspade_formula():
    f, g, b = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    expected = (f - f.mean((2, 3), keepdim=True)) / torch.sqrt(f.var((2, 3), unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(dyspade(f, g, b), expected * (1 + g) + b, atol=1e-5, rtol=1e-5)


def test_dog_with_zero_offsets_is_the_plain_conv_on_the_upsampled_input():
    torch.manual_seed(0)
    dog = DOGUpsample(6, 7)
    x = torch.randn(2, 6, 6, 6)
    up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    plain = F.conv2d(up, dog.weight, dog.bias, padding=1)
    # at initialisation: zero offsets, mask sigmoid(0) = 0.5 (DCNv2)
    torch.testing.assert_close(dog(x), 0.5 * (plain - dog.bias.view(1, -1, 1, 1)) + dog.bias.view(1, -1, 1, 1),
                               atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        dog.offset.bias[2 * 18:] = 50.0  # mask logits -> 1, offsets still 0
    torch.testing.assert_close(dog(x), plain, atol=1e-5, rtol=1e-5)


def test_dog_offsets_receive_gradients():
    torch.manual_seed(0)
    dog = DOGUpsample(4, 4)
    dog(torch.randn(1, 4, 5, 5)).square().mean().backward()
    assert dog.offset.weight.grad.abs().sum() > 0 and dog.weight.grad.abs().sum() > 0


def test_gaussian_pyramid_shapes_and_values():
    d = torch.rand(2, 1, 64, 64)
    assert gaussian_downsample(d, 8).shape == (2, 1, 8, 8)
    const = torch.full((1, 1, 32, 32), 0.4)
    torch.testing.assert_close(gaussian_downsample(const, 4), torch.full((1, 1, 4, 4), 0.4))


def test_ida_switches():
    torch.manual_seed(0)
    x, skip = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
    depth, style = torch.rand(2, 1, 32, 32), torch.eye(3)[:2]
    base = dict(skip_channels=8, norm="dyspade", act="infoacon", appearance=True, style_channels=3)
    a = IDAUp(16, 6, residual="paper", **base)
    b = IDAUp(16, 6, residual="code", **base)
    b.load_state_dict(a.state_dict())
    assert a(x, skip, depth, style).shape == (2, 6, 8, 8)
    assert not torch.allclose(a(x, skip, depth, style), b(x, skip, depth, style))
    names = {n.split(".")[0] for n, _ in a.named_parameters()}
    assert {"up", "appearance", "condition", "f_act"} <= names
    assert set(a.condition.heads) == {"theta", "gamma", "beta"}
    plain = IDAUp(16, 6, norm="instance", act="relu")
    assert plain.condition is None and plain.appearance is None
    assert isinstance(IDAUp(16, 6, dog=True).up, DOGUpsample)
    with pytest.raises(ValueError, match="need a condition"):
        IDAUp(16, 6, norm="dyspade", depth=False)


# --- generators ---------------------------------------------------------------------------------


def test_every_configured_variant_builds_and_trains_one_step(cfg):
    """Forward and backward of every network of every variant in config.yaml, at 64x64."""
    for name, spec in cfg["resolved"].items():
        s = small(spec)
        nets = registry.build(s)
        x = torch.rand(2, 3, 64, 64) * 2 - 1
        depth, style = torch.rand(2, 1, 64, 64), torch.eye(3)[:2]
        total = 0
        for key, net in nets.items():
            if key in ("G", "G_A") and isinstance(net, HIDAGenerator):
                sketch, depth_out = net.forward_all(x, depth, style)
                out = sketch.mean() + (depth_out.mean() if depth_out is not None else 0)
            elif key in ("G", "G_A"):
                out = net(x, depth, style)
            elif key == "G_B":
                out = net(torch.rand(2, registry.sketch_channels(s), 64, 64), None, None)
            elif key == "D":
                out = net(torch.rand(2, registry.discriminator_channels(s), 64, 64))
            else:
                out = net(torch.rand(2, 3 if key == "D_A" else registry.sketch_channels(s), 64, 64))
            t = out if isinstance(out, torch.Tensor) else torch.cat([o[-1].flatten() for o in (
                out if isinstance(out[0], list) else [out])])
            total = total + t.float().mean()
        total.backward()
        for key, net in nets.items():
            grads = [p.grad for p in net.parameters() if p.requires_grad]
            assert grads and all(g is not None for g in grads), f"{name}.{key}: parameters without gradient"


def _dog_layers(g: HIDAGenerator) -> list[int]:
    return [k for k, up in enumerate(g.ups) if isinstance(up.up, DOGUpsample)]


@pytest.mark.parametrize("placement, layers", [("none", []), ("top2", [0, 1]), ("mid3", [2, 3, 4]),
                                               ("btm2", [5, 6]), ("all", [0, 1, 2, 3, 4, 5, 6])])
def test_dog_placement(placement, layers):
    g = HIDAGenerator(ngf=4, num_downs=8, dog=placement)
    assert _dog_layers(g) == layers  # top = the two coarsest up layers


def test_each_hida_switch_changes_what_it_names(cfg):
    full = cfg["resolved"]["hida_full"]
    base = registry.build_generator(small(full))

    def variant(**switches):
        s = small(deep_merge(full, {"generator": switches}))
        return registry.build_generator(s)

    assert not any(isinstance(u.up, DOGUpsample) for u in variant(dog="none").ups)
    assert all(u.condition is not None and "theta" not in u.condition.heads
               for u in variant(decoder_activation="metaacon").ups)
    assert all(u.condition is None for u in variant(decoder_norm="instance", decoder_activation="relu").ups)
    assert variant(depth_head=False).depth_head is None and base.depth_head is not None
    assert all(u.appearance is None for u in variant(appearance=False).ups)
    assert variant(depth_input=False, decoder_norm="instance", decoder_activation="relu",
                   depth_head=False).first_depth is None
    enc_acts = {type(d[0]).__name__ for d in variant(encoder_activation="leakyrelu").downs}
    assert enc_acts == {"LeakyReLU"} and {type(d[0]).__name__ for d in base.downs} == {"MetaACON"}
    # the residual form changes the output, not the parameters
    assert params(variant(residual="code")) == params(base)


def _hida_param_count_from_reference(ngf: int = 64) -> int:
    """HIDA's generator (docs/architectures.md), counted layer by layer: released-code switches
    (depth input, DySPADE + InfoACON, metaACON encoder, DOG top2, appearance, depth head)."""

    def conv(cin, cout, k, bias=True):
        return cin * cout * k * k + (cout if bias else 0)

    def meta(c):
        h = max(16, c // 16)
        return 2 * c + conv(c, h, 1) + conv(h, c, 1)

    total = conv(3, ngf, 4) + conv(1, ngf, 4)                       # the two first convs
    enc = [2 * ngf, 2 * ngf, 4 * ngf, 8 * ngf, 8 * ngf, 8 * ngf, 8 * ngf, 8 * ngf]  # widths, first = cat
    for cin, cout in zip(enc[:-1], enc[1:]):                          # act -> conv (IN has no parameters)
        total += meta(cin) + conv(cin, cout, 4)
    ups = [(8 * ngf, 8 * ngf, 0), (16 * ngf, 8 * ngf, 8 * ngf), (16 * ngf, 8 * ngf, 8 * ngf),
           (16 * ngf, 8 * ngf, 8 * ngf), (16 * ngf, 4 * ngf, 8 * ngf), (8 * ngf, 2 * ngf, 4 * ngf),
           (4 * ngf, ngf, 2 * ngf)]                                   # (in, out, skip channels)
    for k, (cin, cout, skip) in enumerate(ups):
        if k < 2:                                                      # DOG: deformable 3x3 + offset/mask conv
            total += conv(cin, cout, 3) + conv(cin, 3 * 2 * 9, 3)
        else:
            total += conv(cin, cout, 4)
        cond = 1 + 3 + (1 if skip else 0)                              # depth, style, appearance
        if skip:
            total += conv(skip, 1, 4) + meta(1)                        # appearance TrConv + metaACON
        total += conv(cond, cout, 3) + meta(cout) + 3 * conv(cout, cout, 3)  # shared + theta, gamma, beta
        total += 2 * cout                                              # InfoACON p1, p2
    total += meta(2 * ngf) + conv(2 * ngf, 1, 4)                       # sketch head
    total += meta(2 * ngf) + conv(2 * ngf, 1, 4)                       # depth head
    return total


def test_hida_full_parameter_count_matches_reference(cfg):
    code = load_config(REPO / "config.yaml", overrides={"follow": "code"})["resolved"]["hida_full"]
    g = registry.build_generator(code)
    n = params(g)
    assert n == _hida_param_count_from_reference()
    assert 80.5e6 < n < 81.5e6  # "about 81M parameters in use"
    x, d, s = torch.zeros(1, 3, 256, 256), torch.zeros(1, 1, 256, 256), torch.eye(3)[:1]
    sketch, depth = g.forward_all(x, d, s)
    (sketch.mean() + depth.mean()).backward()
    assert all(p.grad is not None for p in g.parameters())  # every parameter is in use


def test_baseline_sizes_match_the_reference_implementations(cfg):
    assert params(registry.build_generator(cfg["resolved"]["pix2pix"])) == 54_409_857  # pix2pix unet_256
    assert params(registry.build_generator(cfg["resolved"]["cyclegan"])) == 11_378_179  # CycleGAN resnet_9blocks
    d = registry.build_discriminator(cfg["resolved"]["pix2pix"])
    assert d(torch.zeros(1, 4, 256, 256))[-1].shape[-1] == 30  # 70x70 PatchGAN -> 30x30
    hd = registry.build_discriminator(cfg["resolved"]["hida_full"])
    assert hd(torch.zeros(1, 2, 256, 256))[-1].shape[-1] == 35  # HIDA's D -> 35x35
    ms = registry.build_discriminator(cfg["resolved"]["pix2pixhd"])
    assert len(ms(torch.zeros(1, 4, 64, 64))) == 2


def test_attention_generator_takes_the_background_from_the_input():
    from facesketch.models.generators import AttentionResnetGenerator

    g = AttentionResnetGenerator(3, 3, ngf=4, n_blocks=1, n_content=9)
    with torch.no_grad():
        g.attention[-1].weight.zero_()
        g.attention[-1].bias.fill_(-30.0)
        g.attention[-1].bias[-1] = 30.0  # all attention on the background mask
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    out, att = g.forward_all(x)
    assert att.shape == (1, 10, 32, 32)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_inapplicable_switch_and_bad_sizes_are_config_errors(cfg):
    bad = deep_merge(cfg["resolved"]["pix2pix"], {"generator": {"dog": "top2"}})
    with pytest.raises(ConfigError, match="dog not a switch of generator 'unet'"):
        registry.build_generator(bad)
    with pytest.raises(ConfigError, match="input.crop 100 is not a power of two"):
        registry.build_generator(deep_merge(cfg["resolved"]["pix2pix"], {"input": {"crop": 100}}))


def test_summary_counts_macs(cfg):
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, torch.zeros(1, 3, 10, 10)) == 10 * 10 * 8 * 3 * 9
    s = summarize(cfg["resolved"]["cyclegan"], 256)
    assert s["G_A"]["params"] == 11_378_179
    assert 49e9 < s["G_A"]["macs"] < 50e9  # ResNet-9 at 256x256: 49.6 GMAC of convolutions


def test_every_generator_overfits_one_pair(cfg, request):
    """Each architecture can fit one FS2K pair (the real data when FS2K_ARCHIVE is set): L1 falls
    well below its start."""
    import numpy as np
    import pandas as pd

    from facesketch.fileio import read_array

    from .conftest import real_archive

    data = request.getfixturevalue("real_subset" if real_archive() else "tiny_prepared")
    row = pd.read_parquet(data / "manifest.parquet").iloc[0]
    photo = torch.from_numpy(read_array(data / row.photo, "RGB").copy()).permute(2, 0, 1)[None].float()
    sketch = torch.from_numpy(read_array(data / row.sketch, "L").copy())[None, None].float()
    photo = F.interpolate(photo, size=(64, 64), mode="bilinear", antialias=True) / 127.5 - 1
    sketch = F.interpolate(sketch, size=(64, 64), mode="bilinear", antialias=True) / 127.5 - 1
    depth = torch.from_numpy(np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(1, 1, 64, 64))
    style = torch.eye(3)[:1]
    for name in ("pix2pix", "hida_full", "pix2pixhd", "cyclegan", "cyclegan_attn"):
        torch.manual_seed(0)
        g = registry.build_generator(small(cfg["resolved"][name], ngf=16))
        target = sketch.expand(-1, 3, -1, -1) if name.startswith("cyclegan") else sketch
        opt = torch.optim.Adam(g.parameters(), lr=2e-3)
        losses = []
        for _ in range(60):
            loss = F.l1_loss(g(photo, depth, style), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert min(losses[-5:]) < 0.35 * losses[0], f"{name}: L1 {losses[0]:.3f} -> {losses[-1]:.3f}"


def test_registry_builds_by_keyword_what_an_explicit_construction_builds(cfg):
    """The name -> class table and ``cls(**switches)`` give the very network (weights included)
    that calling the constructor by hand with the variant's switches gives."""
    from facesketch.models.discriminators import HIDADiscriminator
    from facesketch.models.generators import GlobalGenerator, UNet

    code = load_config(REPO / "config.yaml", overrides={"follow": "code"})["resolved"]["hida_full"]
    s = small(code)
    torch.manual_seed(0)
    built = registry.build_generator(s)
    torch.manual_seed(0)
    by_hand = HIDAGenerator(3, 1, 64, ngf=8, depth_input=True, decoder_norm="dyspade", encoder_activation="metaacon",
                            decoder_activation="infoacon", dog="top2", depth_head=True, residual="code",
                            depth_pyramid="nearest", appearance=True, style_input="condition")
    a, b = built.state_dict(), by_hand.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x, d, st = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64), torch.eye(3)[:1]
    torch.testing.assert_close(built.eval()(x, d, st), by_hand.eval()(x, d, st), rtol=0, atol=0)  # no dropout
    torch.manual_seed(1)
    built_d = registry.build_discriminator(s)
    torch.manual_seed(1)
    hand_d = HIDADiscriminator(2, ndf=8, n_layers=3, norm="instance")
    assert all(torch.equal(p, q) for p, q in zip(built_d.state_dict().values(), hand_d.state_dict().values()))
    for name, cls, hand in (("pix2pix", UNet, dict(ngf=8, norm="batch", dropout=True, style_input="none")),
                            ("pix2pixhd", GlobalGenerator, dict(ngf=8, n_blocks=2, norm="instance"))):
        torch.manual_seed(2)
        g = registry.build_generator(small(cfg["resolved"][name]))
        torch.manual_seed(2)
        h = cls(3, 1, 64, **hand)
        assert type(g) is cls and all(torch.equal(p, q) for p, q in zip(g.state_dict().values(),
                                                                          h.state_dict().values()))
    # the switches are the constructor's keyword arguments, defaults included
    assert registry.switches(GlobalGenerator)["n_downsampling"] == 4
    assert registry.switches(registry.GENERATORS["resnet"])["n_downsampling"] == 2


def test_parameter_names_of_the_first_release_load(cfg):
    """Checkpoints of the first release name the IDA layer's parts up, appearance, condition
    (shared, act, heads) and f_act: they must still be the keys."""
    g = HIDAGenerator(ngf=4, num_downs=8, dog="top2")
    keys = set(g.state_dict())
    for key in ("ups.0.up.weight", "ups.0.up.offset.weight", "ups.1.appearance.0.weight", "ups.1.appearance.1.p1",
                "ups.1.condition.shared.weight", "ups.1.condition.act.fc1.weight",
                "ups.1.condition.heads.theta.weight", "ups.1.condition.heads.gamma.bias",
                "ups.1.condition.heads.beta.weight", "ups.1.f_act.p2", "first_depth.weight", "depth_head.1.bias"):
        assert key in keys, key


def test_one_answer_to_needs_depth(cfg):
    r = cfg["resolved"]
    assert registry.needs_depth(r["hida_B"]) and registry.needs_depth(r["hida_full"])
    assert not registry.needs_depth(r["pix2pix"]) and not registry.needs_depth(r["cyclegan_attn"])
    sees_depth = deep_merge(r["pix2pix"], {"discriminator": {"inputs": ["depth", "sketch"]}})
    assert registry.needs_depth(sees_depth)
    only_loss = deep_merge(r["hida_B"], {"generator": {"depth_input": False}, "discriminator": {"inputs": ["sketch"]}})
    assert registry.needs_depth(only_loss)  # the geometric loss compares against the depth map
    assert registry.needs_depth(deep_merge(only_loss, {"losses": {"geometric": {"weight": 0.0}}})) is False
    assert registry.style_aware(r["hida_full"]) and not registry.style_aware(r["hida_B"])
