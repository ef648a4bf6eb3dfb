"""The released HIDA checkpoint: a network laid out as AiArt-HDU/HIDA's SPADEUNet_YPar (names,
shapes, the unused modules, the [2, 0, 1] style channels), written out here from reading
model/generator/Unet_base_dcn_top2_meta_de.py, model/blocks/unet_block_acon_de2_dcn.py,
model/blocks/spade_normalization_acon_de2_dcn.py and model/acon.py, is mapped onto our generator,
and both compute the same sketch."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d

from facesketch.config import load_config
from facesketch.errors import WeightsError
from facesketch.models import registry
from facesketch.models import released_hida as R

from .conftest import REPO


class MetaAconC(nn.Module):  # model/acon.py: bn1/bn2 are built but the forward skips them
    def __init__(self, width, r=16):
        super().__init__()
        h = max(r, width // r)
        self.fc1, self.bn1 = nn.Conv2d(width, h, 1), nn.BatchNorm2d(h)
        self.fc2, self.bn2 = nn.Conv2d(h, width, 1), nn.BatchNorm2d(width)
        self.p1, self.p2 = nn.Parameter(torch.randn(1, width, 1, 1)), nn.Parameter(torch.randn(1, width, 1, 1))

    def forward(self, x):
        beta = torch.sigmoid(self.fc2(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        d = self.p1 * x - self.p2 * x
        return d * torch.sigmoid(beta * d) + self.p2 * x


class UNetDown(nn.Module):
    def __init__(self, cin, cout, normalize=True):
        super().__init__()
        layers = [MetaAconC(cin), nn.Conv2d(cin, cout, 4, 2, 1)]
        if normalize:
            layers.append(nn.InstanceNorm2d(cout, track_running_stats=False))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class DCN(nn.Module):  # DCNv2: weight, bias, conv_offset_mask (2 groups x 3 x 3x3)
    def __init__(self, cin, cout):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.02)
        self.bias = nn.Parameter(torch.randn(cout) * 0.02)
        self.conv_offset_mask = nn.Conv2d(cin, 2 * 3 * 9, 3, 1, 1)

    def forward(self, x):
        o1, o2, m = torch.chunk(self.conv_offset_mask(x), 3, dim=1)
        return deform_conv2d(x, torch.cat([o1, o2], 1), self.weight, self.bias, padding=1, mask=torch.sigmoid(m))


class SPADEShortcut(nn.Module):  # SPADE_Shoutcut(spade_mode res2, use_en_feature)
    def __init__(self, in_size, norm_nc, label_nc=1, use_en=False):
        super().__init__()
        first = nn.Conv2d(label_nc * 2 if use_en else label_nc, 128, 3, padding=1)
        self.mlp_shared = nn.Sequential(first, MetaAconC(128))
        self.mlp_gamma = nn.Conv2d(norm_nc, norm_nc, 3, padding=1)
        self.mlp_beta = nn.Conv2d(norm_nc, norm_nc, 3, padding=1)
        self.metaAcon = MetaAconC(in_size)

    def forward(self, x, h):
        return F.instance_norm(x) * (1 + self.mlp_gamma(h)) + self.mlp_beta(h) + x


class SPADEUp(nn.Module):
    def __init__(self, in_size, out_size, first=False):
        super().__init__()
        self.layers = nn.ConvTranspose2d(in_size, out_size, 4, 2, 1)
        self.dcn = DCN(in_size, out_size)
        self.fc1 = nn.Conv2d(1 * 2 + 3, out_size, 3, padding=1)
        self.fc2 = nn.Conv2d(1 + 3, out_size, 3, padding=1)
        self.fc3 = nn.Conv2d(out_size, out_size, 3, padding=1)
        self.p1, self.p2 = nn.Parameter(torch.randn(1, out_size, 1, 1)), nn.Parameter(torch.randn(1, out_size, 1, 1))
        self.norm = SPADEShortcut(in_size, out_size, use_en=not first)
        self.en_conv = nn.ConvTranspose2d(in_size // 2, 1, 4, 2, 1)
        self.metaAcon = MetaAconC(out_size)
        self.metaAcon_en = MetaAconC(1)

    def forward(self, de_in, depth, style, en_in=None, dcn=False):
        x = de_in if en_in is None else torch.cat([de_in, en_in], 1)
        y = self.dcn(F.interpolate(x, scale_factor=2, mode="bilinear")) if dcn else self.layers(x)
        onehot = torch.zeros(depth.shape[0], 3, *depth.shape[-2:])
        for i, s in enumerate(style.tolist()):  # onehot_style_FS2K: Style2 -> 0, Style3 -> 1, Style1 -> 2
            onehot[i, {1: 0, 2: 1, 0: 2}[s]] = 1
        parsing = F.interpolate(torch.cat([depth, onehot], 1), size=y.shape[-2:], mode="nearest")
        if en_in is not None:
            parsing = torch.cat([parsing, self.metaAcon_en(self.en_conv(en_in))], 1)
            h = self.metaAcon(self.fc1(parsing))
        else:
            h = self.metaAcon(self.fc2(parsing))
        beta = torch.sigmoid(self.fc3(h))
        d = self.p1 * y - self.p2 * y
        return self.norm(d * torch.sigmoid(beta * d) + self.p2 * y, h)


class SPADEUNetYPar(nn.Module):
    def __init__(self):
        super().__init__()
        self.down_rgb, self.down_par = nn.Conv2d(3, 64, 4, 2, 1), nn.Conv2d(1, 64, 4, 2, 1)
        chans = [(128, 128), (128, 256), (256, 512), (512, 512), (512, 512), (512, 512)]
        for i, (a, b) in enumerate(chans, start=2):
            setattr(self, f"down{i}", UNetDown(a, b))
        self.down8 = UNetDown(512, 512, normalize=False)
        ups = [(512, 512), (1024, 512), (1024, 512), (1024, 512), (1024, 256), (512, 128), (256, 64)]
        for k, (a, b) in enumerate(ups):
            setattr(self, f"up{k}", SPADEUp(a, b, first=k == 0))
        self.final_rgb = nn.Sequential(MetaAconC(128), nn.ConvTranspose2d(128, 1, 4, 2, 1), nn.Tanh())
        self.final_par = nn.Sequential(MetaAconC(128), nn.ConvTranspose2d(128, 1, 4, 2, 1))

    def forward(self, x, depth, style):
        r, p = self.down_rgb(x), self.down_par(depth)
        d = [torch.cat([r, p], 1)]
        for i in range(2, 9):
            d.append(getattr(self, f"down{i}")(d[-1]))
        u = self.up0(d[-1], depth, style, dcn=True)
        for k in range(1, 7):
            u = getattr(self, f"up{k}")(u, depth, style, d[-1 - k], dcn=k == 1)
        return self.final_rgb(torch.cat([u, r], 1)), self.final_par(torch.cat([u, p], 1))


@pytest.fixture(scope="module")
def spec():
    return load_config(REPO / "config.yaml", overrides={"follow": "code"})["resolved"]["hida_full"]


@pytest.fixture(scope="module")
def released():
    torch.manual_seed(0)
    net = SPADEUNetYPar().eval()
    with torch.no_grad():  # trained weights: nothing left at zero, offsets that really move samples
        for m in net.modules():
            if isinstance(m, DCN):
                m.conv_offset_mask.weight.normal_(0, 0.01)
                m.conv_offset_mask.bias.normal_(0, 0.5)
    return net


def test_released_layout_has_the_released_parameter_count(released):
    # REFERENCE: the released model object holds 108,668,246 parameters
    assert sum(p.numel() for p in released.parameters()) == 108_668_246


def test_import_maps_every_key_and_draws_the_same_sketch(spec, released):
    lightning = {"Generator." + k: v for k, v in released.state_dict().items()}
    lightning["Discrimanator.discriminator_0.model0.0.weight"] = torch.zeros(64, 2, 4, 4)  # ignored
    ours = registry.build_generator(spec).eval()
    sd = R.convert(lightning, ours)
    ours.load_state_dict(sd, strict=True)
    assert sum(p.numel() for p in ours.parameters()) == 80_894_566  # the released parameters in use
    # round trip: the mapped tensors are the released ones, the style channels moved to [S1, S2, S3]
    pairs, dropped, permuted = R.key_map()
    assert not set(pairs.values()) & set(dropped)
    assert set(pairs.values()) | set(dropped) == set(released.state_dict())
    w_rel = released.state_dict()["up3.fc1.weight"]
    w_ours = sd["ups.3.condition.shared.weight"]
    assert torch.equal(w_ours[:, 0], w_rel[:, 0]) and torch.equal(w_ours[:, 4], w_rel[:, 4])
    assert torch.equal(w_ours[:, 1], w_rel[:, 3]) and torch.equal(w_ours[:, 2], w_rel[:, 1])  # S1 at 2, S2 at 0
    assert torch.equal(w_ours[:, 3], w_rel[:, 2])
    torch.manual_seed(1)
    x, depth = torch.rand(2, 3, 256, 256) * 2 - 1, torch.rand(2, 1, 256, 256)
    style = torch.tensor([0, 2])
    with torch.no_grad():
        ref_sketch, ref_depth = released(x, depth, style)
        sketch, depth_hat = ours.forward_all(x, depth, F.one_hot(style, 3).float())
    assert (sketch - ref_sketch).abs().max().item() < 1e-4
    assert (depth_hat - ref_depth).abs().max().item() < 1e-4
    # without the channel conversion the styles come out wrong
    plain = copy.deepcopy(ours)
    with torch.no_grad():
        for up, k in zip(plain.ups, range(7)):
            up.condition.shared.weight.copy_(released.state_dict()[f"up{k}.{'fc2' if k == 0 else 'fc1'}.weight"])
        wrong, _ = plain.forward_all(x, depth, F.one_hot(style, 3).float())
    assert (wrong - ref_sketch).abs().max().item() > 1e-3


def test_import_is_strict(spec, released):
    ours = registry.build_generator(spec)
    lightning = {"Generator." + k: v for k, v in released.state_dict().items()}
    missing = dict(lightning)
    del missing["Generator.up4.fc3.weight"]
    with pytest.raises(WeightsError, match="missing.*up4.fc3.weight"):
        R.convert(missing, ours)
    extra = dict(lightning, **{"Generator.up9.fc1.weight": torch.zeros(1)})
    with pytest.raises(WeightsError, match="unexpected.*up9.fc1.weight"):
        R.convert(extra, ours)
    bad = dict(lightning, **{"Generator.up2.fc3.weight": torch.zeros(3, 3, 3, 3)})
    with pytest.raises(WeightsError, match="up2.fc3.weight has shape"):
        R.convert(bad, ours)
    with pytest.raises(WeightsError, match="no 'Generator"):
        R.convert({"x": torch.zeros(1)}, ours)
    paper = load_config(REPO / "config.yaml", overrides={"follow": "paper"})["resolved"]["hida_full"]
    with pytest.raises(WeightsError, match="residual"):
        R.check_spec(paper)


def test_import_command_writes_a_model_infer_loads(spec, released, tmp_path):
    import argparse

    from facesketch.train.infer import load_model

    ckpt = tmp_path / "_ckpt_epoch_749.ckpt"
    torch.save({"epoch": 749, "state_dict": {"Generator." + k: v for k, v in released.state_dict().items()},
                "hparams": argparse.Namespace(lambda_pix=4.0)}, ckpt)
    out = R.import_released(ckpt, spec, tmp_path / "model.pt")
    saved_spec, gens = load_model(out, torch.device("cpu"))
    assert saved_spec == spec
    assert torch.equal(gens["G"].ups[1].up.weight, released.up1.dcn.weight)
    from facesketch.cli import main

    assert main(["import-hida", "--config", str(REPO / "config.yaml"), "--checkpoint", str(ckpt),
                 "--out", str(tmp_path / "cli.pt")]) == 0
    _, gens = load_model(tmp_path / "cli.pt", torch.device("cpu"))
    assert torch.equal(gens["G"].sketch_head[1].weight, released.final_rgb[1].weight)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.ckpt"):
        R.load_checkpoint(tmp_path / "junk.ckpt")


def test_weights_registry_and_table1_rows(tmp_path):
    from facesketch.maps import weights
    from facesketch.metrics.evaluate import index_results
    from facesketch.models.released_hida import pretrained_missing
    from facesketch.report.tables import _row_status, table_spec

    w = weights.entry("hida_released")
    assert w.filename == "_ckpt_epoch_749.ckpt" and "1q9S7nHaweH8OMmfVZ9Zv4FcHNHjfBsDy" in w.manual
    rows = {r["name"]: r for r in weights.status_rows(tmp_path)}
    assert rows["hida_released"]["state"] == "missing" and "drive.google.com" in rows["hida_released"]["source"]
    cfg = load_config(REPO / "config.yaml", overrides={"paths": {"weights": str(tmp_path)}})
    # optional: without it the run leaves the variant out, so `weights fetch --required` does not fail on it
    assert "hida_released" not in weights.required(cfg)
    table1 = {r["label"]: r for r in cfg["tables"]["hida_table1"]["rows"]}
    row = table1["HIDA (released weights)"]
    spec = table_spec(cfg, {})
    source, why = _row_status(row, spec)
    assert source is None and "_ckpt_epoch_749.ckpt" in why and str(tmp_path / "hida") in why
    assert "hida_released_weights" not in spec["run_variants"]
    assert _row_status(table1["HIDA (released results)"], spec)[1].startswith("released results not found")
    (tmp_path / "hida").mkdir()
    (tmp_path / "hida" / "_ckpt_epoch_749.ckpt").write_bytes(b"x")
    assert pretrained_missing(cfg, tmp_path) == {}
    assert _row_status(row, table_spec(cfg, {})) == ("hida_released_weights", "")
    R.check_spec(load_config(REPO / "config.yaml", overrides={"follow": "paper"})["resolved"]["hida_released_weights"])
    # the authors' result sketches are named by test.py as <subset digit>_image<number>.jpg
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "1_image0007.jpg").write_bytes(b"")
    assert list(index_results(tmp_path / "res")) == ["photo1_image0007"]
