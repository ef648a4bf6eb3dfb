"""MetFaces (HIDA Table 4, exemplar-based translation): a stand-in release in the official layout
(metfaces-dataset/metfaces.json + images/*.png), ingestion, CoCosNet and CoCosNet + HIDA, scoring."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from facesketch.data import metfaces
from facesketch.errors import DataError, UnsafeArchiveError, WeightsError

from .conftest import StandInInception

REPO = Path(__file__).parents[1]


def _painting(seed: int, side: int) -> np.ndarray:
    """A face-like stand-in: a bright ellipse with two dark eyes on a coloured background, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    im = np.empty((side, side, 3))
    im[:] = rng.uniform(0.1, 0.5, 3)
    face = ((xx - 0.5) / 0.3) ** 2 + ((yy - 0.5) / 0.4) ** 2 < 1
    im[face] = rng.uniform(0.6, 0.9, 3)
    for ex in (0.38, 0.62):
        im[((xx - ex) / 0.06) ** 2 + ((yy - 0.42) / 0.04) ** 2 < 1] = 0.05
    im += rng.normal(0, 0.03, im.shape)
    return (np.clip(im, 0, 1) * 255).astype(np.uint8)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def release_records(n: int, side: int) -> tuple[list[dict], dict[str, bytes]]:
    """metfaces.json records (the official keys) and the image files they name."""
    records, files = [], {}
    for i in range(n):
        name = f"images/{10000 + i}-00.png"
        data = _png(_painting(i, side))
        files[name] = data
        records.append({"obj_id": str(10000 + i), "meta_url": "https://collectionapi.metmuseum.org/x",
                        "source_url": "https://images.metmuseum.org/x.jpg", "source_path": f"unprocessed/image-{i}.png",
                        "source_md5": "0" * 32, "image_path": name, "image_md5": hashlib.md5(data).hexdigest(),
                        "title": f"Portrait {i}", "artist_display_name": "Anonymous",
                        "face_spec": {"rect": [0, 0, side, side], "landmarks": [], "shrink": 1}, "face_idx": 0})
    return records, files


def make_metfaces_zip(path: Path, n: int = 6, side: int = 64, extra: dict | None = None) -> list[dict]:
    records, files = release_records(n, side)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metfaces-dataset/metfaces.json", json.dumps(records))
        for name, data in files.items():
            zf.writestr(f"metfaces-dataset/{name}", data)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return records


def make_metfaces_folder(root: Path, n: int = 6, side: int = 64) -> Path:
    records, files = release_records(n, side)
    folder = root / "metfaces-dataset"
    (folder / "images").mkdir(parents=True)
    (folder / "metfaces.json").write_text(json.dumps(records))
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


SPEC = {"size": 64, "expected": 6, "check_md5": True, "edges": {"sigma": 1.0}, "split": {"test": 0.34, "seed": 0},
        "exemplars": {"k": 2}}


def _zip_and_prepare(tmp_path: Path, spec: dict = SPEC, n: int = 6) -> pd.DataFrame:
    make_metfaces_zip(tmp_path / "metfaces.zip", n=n)
    raw = metfaces.extract(tmp_path / "metfaces.zip", tmp_path / "raw")
    return metfaces.prepare(raw, tmp_path / "data", spec)


# --- ingestion -------------------------------------------------------------------------------

def test_ingest_stand_in_release(tmp_path):
    from skimage import feature

    manifest = _zip_and_prepare(tmp_path)
    assert manifest.groupby("split").size().to_dict() == {"test": 2, "train": 4}  # round(6 * 0.34) test
    on_disk = pd.read_parquet(tmp_path / "data" / "manifest.parquet")
    assert list(on_disk.id) == list(manifest.id) and len(on_disk) == 6
    for r in on_disk.itertuples():
        painting = Image.open(tmp_path / "data" / r.photo)
        assert painting.size == (64, 64) and painting.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(painting), _painting(int(r.id[:5]) - 10000, 64))  # native size
        edge = np.asarray(Image.open(tmp_path / "data" / r.edge))
        # CoCosNet's edge input, recomputed here with skimage's Canny on the grey painting
        expected = feature.canny(np.asarray(painting.convert("L")), sigma=1.0)
        np.testing.assert_array_equal(edge > 0, expected)
        assert edge.any() and set(np.unique(edge)) <= {0, 255}
        refs = r.exemplars.split(",")
        assert len(refs) == 2 and r.id not in refs
        assert set(refs) <= set(on_disk[on_disk.split == "train"].id)  # exemplars come from the training set


def test_resized_to_the_configured_size(tmp_path):
    make_metfaces_folder(tmp_path, n=3, side=128)
    spec = dict(SPEC, size=64, expected=3)
    manifest = metfaces.prepare(tmp_path, tmp_path / "out", spec)  # a folder holding metfaces-dataset/
    for r in manifest.itertuples():
        assert Image.open(tmp_path / "out" / r.photo).size == (64, 64)
        assert Image.open(tmp_path / "out" / r.edge).size == (64, 64)


def test_retrieval_ranks_by_thumbnail_similarity():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(16, 16))
    thumbs = {"q": base, "near": base + 0.1 * rng.normal(size=(16, 16)), "far": rng.normal(size=(16, 16)),
              "neg": -base}
    split = {"q": "test", "near": "train", "far": "train", "neg": "train"}
    assert metfaces.retrieve_exemplars(thumbs, split, 3)["q"] == ["near", "far", "neg"]
    assert metfaces.retrieve_exemplars(thumbs, split, 3)["near"][:1] == ["far"]  # never itself


def test_split_from_the_users_list(tmp_path):
    ids = [f"{10000 + i}-00" for i in range(5)]
    listing = tmp_path / "test.txt"
    listing.write_text("10001-00.png\n10003-00\n")
    split = metfaces.split_ids(ids, {"test_list": str(listing)})
    assert sorted(i for i, s in split.items() if s == "test") == ["10001-00", "10003-00"]
    listing.write_text("99999-00\n")
    with pytest.raises(DataError, match="not MetFaces images"):
        metfaces.split_ids(ids, {"test_list": str(listing)})


def test_counts_and_md5_checked(tmp_path):
    make_metfaces_folder(tmp_path, n=3)
    with pytest.raises(DataError, match="lists 3 images, expected 1336"):
        metfaces.prepare(tmp_path, tmp_path / "out", dict(SPEC, expected=1336))
    image = tmp_path / "metfaces-dataset" / "images" / "10001-00.png"
    Image.fromarray(_painting(99, 64)).save(image)
    with pytest.raises(DataError, match="10001-00.png: MD5 .* does not match"):
        metfaces.prepare(tmp_path, tmp_path / "out", dict(SPEC, expected=3))
    image.unlink()
    with pytest.raises(DataError, match="10001-00.png is missing"):
        metfaces.prepare(tmp_path, tmp_path / "out", dict(SPEC, expected=3))
    assert not (tmp_path / "out" / "manifest.parquet").exists()


def test_unsafe_and_foreign_archives_refused(tmp_path):
    bad = tmp_path / "bad.zip"
    make_metfaces_zip(bad, n=2, extra={"metfaces-dataset/../evil.txt": "x"})
    with pytest.raises(UnsafeArchiveError, match=r"\.\."):
        metfaces.extract(bad, tmp_path / "raw")
    foreign = tmp_path / "APDrawingDB.zip"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("APDrawingDB/data/test/a.png", "x")
    with pytest.raises(UnsafeArchiveError, match="outside metfaces-dataset/"):
        metfaces.extract(foreign, tmp_path / "raw2")
    with pytest.raises(DataError, match="MetFaces archive not found: .*METFACES_ARCHIVE"):
        metfaces.extract(tmp_path / "nowhere.zip", tmp_path / "raw3")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no metfaces.json"):
        metfaces.prepare(tmp_path / "empty", tmp_path / "out", SPEC)


def test_cli_extract_and_prepare(tmp_path):
    from facesketch.cli import main

    make_metfaces_zip(tmp_path / "metfaces.zip", n=4)
    assert main(["metfaces-extract", str(tmp_path / "metfaces.zip"), "--out", str(tmp_path / "raw")]) == 0
    assert main(["metfaces-prepare", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out"),
                 "--spec", json.dumps(dict(SPEC, expected=4))]) == 0
    assert len(pd.read_parquet(tmp_path / "out" / "manifest.parquet")) == 4


# --- CoCosNet and CoCosNet + HIDA: parameter counts from the reference's layer list ------------

def _conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def _spade(c: int, label_nc: int) -> int:  # normalization.py SPADE: 128-wide 3x3 mlp_shared, gamma, beta
    return _conv(label_nc, 128, 3) + 2 * _conv(128, c, 3)


def _meta_acon(c: int) -> int:  # p1, p2, fc1 C -> max(16, C/16), fc2 back (HIDA's metaACON)
    h = max(16, c // 16)
    return 2 * c + _conv(c, h, 1) + _conv(h, c, 1)


def _hida_norm(c: int, label_nc: int, theta: bool = True, hidden: int | None = 128) -> int:
    """DySPADE (+ InfoACON) in SPADE's place: shared 3x3 conv to SPADE's 128 (or C) + metaACON, 3x3 heads
    gamma, beta (theta) back to C, InfoACON p1, p2."""
    hidden = hidden or c
    return (_conv(label_nc, hidden, 3) + _meta_acon(hidden) + (3 if theta else 2) * _conv(hidden, c, 3)
            + (2 * c if theta else 0))


def _block(fin: int, fout: int, label_nc: int, hida: bool = False, hidden: int | None = 128) -> int:
    """architecture.py SPADEResnetBlock: conv_0 fin->fmid, conv_1 fmid->fout (3x3), norm_0, norm_1, and
    a bias-free 1x1 conv_s with its norm_s when fin != fout."""
    fmid = min(fin, fout)
    norm = (lambda c: _hida_norm(c, label_nc, hidden=hidden)) if hida else (lambda c: _spade(c, label_nc))
    n = _conv(fin, fmid, 3) + _conv(fmid, fout, 3) + norm(fin) + norm(fmid)
    if fin != fout:
        n += _conv(fin, fout, 1, bias=False)
        n += _hida_norm(fin, label_nc, theta=False, hidden=hidden) if hida else _spade(fin, label_nc)
    return n


def _attention(c: int) -> int:  # theta, phi C -> C/8, g C -> C/2, o C/2 -> C, all bias-free, gamma
    return 2 * c * (c // 8) + 2 * c * (c // 2) + 1


def _adaptor(ic: int, ngf: int = 64, k: int = 3) -> int:
    """generator.py AdaptiveFeatureGenerator: five spectral-instance convs (bias removed), three SPADE blocks."""
    convs = (_conv(ic, ngf, 3, False) + _conv(ngf, 2 * ngf, k, False) + _conv(2 * ngf, 4 * ngf, 3, False)
             + _conv(4 * ngf, 8 * ngf, k, False) + _conv(8 * ngf, 8 * ngf, 3, False))
    return convs + 2 * _block(8 * ngf, 8 * ngf, ic) + _block(8 * ngf, 4 * ngf, ic)


def _correspondence(nc: int) -> int:
    """correspondence.py NoVGGCorrespondence with maskmix: adaptors for the semantics and the image,
    four ResidualBlocks of 256 + nc channels (two 3x3 convs and one PReLU each), theta and phi 1x1 to 256."""
    c = 256 + nc
    return _adaptor(nc) + _adaptor(3) + 4 * (2 * _conv(c, c, 3) + 1) + 2 * _conv(c, 256, 1)


def _generator(nc: int, hida: bool, ngf: int = 64, hidden: int | None = 128) -> int:
    """generator.py SPADEGenerator (CBN_intype warp_mask: condition = 3 + nc channels), use_attention."""
    ic = 3 + nc
    blocks = [(16, 16)] * 3 + [(16, 8), (8, 4), (4, 2), (2, 1)]
    return (_conv(ic, 16 * ngf, 3) + sum(_block(a * ngf, b * ngf, ic, hida, hidden) for a, b in blocks)
            + _attention(4 * ngf) + _conv(ngf, 3, 3))


def _discriminator(nc: int, ndf: int = 64) -> int:
    """discriminator.py MultiscaleDiscriminator, 2 scales of NLayerDiscriminator(n_layers_D 4, use_attention):
    conv in->64, spectral-instance convs 64->128->256->512 (bias removed), attention(256), conv 512->1.
    (The reference also builds a `dec` decoder in each scale that its forward never calls; not counted.)"""
    one = (_conv(nc + 3, ndf, 4) + _conv(ndf, 2 * ndf, 4, False) + _conv(2 * ndf, 4 * ndf, 4, False)
           + _attention(4 * ndf) + _conv(4 * ndf, 8 * ndf, 4, False) + _conv(8 * ndf, 1, 4))
    return 2 * one


@pytest.mark.parametrize("name,nc,hida", [("metfaces_cocosnet", 1, False), ("metfaces_cocosnet_hida", 2, True)])
def test_parameter_counts_match_the_reference_layer_list(cfg, name, nc, hida):
    from facesketch.exemplar import cocosnet

    spec = metfaces.variant_spec(cfg, name)
    with torch.device("meta"):
        net, disc = cocosnet.build(spec)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(net.corr) == _correspondence(nc)
    assert count(net.G) == _generator(nc, hida)
    assert count(disc) == _discriminator(nc)
    if hida:  # the condition branch as wide as each layer, as in HIDA's U-Net
        with torch.device("meta"):
            wide, _ = cocosnet.build(dict(spec, condition_width=None))
        assert count(wide.G) == _generator(nc, hida, hidden=None)


@pytest.fixture(scope="module")
def cfg():
    from facesketch.config import load_config

    return load_config(REPO / "config.yaml")


def test_variants_in_config(cfg):
    plain, hida = (metfaces.variant_spec(cfg, n) for n in ("metfaces_cocosnet", "metfaces_cocosnet_hida"))
    assert plain["norm"] == "spade" and not plain["depth_input"]
    assert hida["norm"] == "dyspade_infoacon" and hida["depth_input"]
    # CoCosNet's edge-to-face recipe (README training command; options' defaults)
    assert plain["losses"] == {"gan": 10.0, "feat": 10.0, "vgg": 10.0, "fm_ratio": 1.0, "perceptual": 0.001,
                               "contextual": 1.0, "domain": 10.0, "warp_cycle": 1.0}
    assert plain["schedule"] == {"epochs": 30, "decay_epochs": 30} and plain["batch_size"] == 32
    assert plain["reference"] == {"real": 0.7, "hard": 0.2} and plain["size"] == 256 and plain["load"] == 286
    for key in ("losses", "schedule", "optimizer", "reference", "ngf", "load"):
        assert plain[key] == hida[key]


# --- one training step of each variant, inference ------------------------------------------------

@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    """The stand-in release ingested at 64x64, with depth maps where the predictors would put them."""
    from facesketch.maps import encoding

    root = tmp_path_factory.mktemp("metfaces")
    manifest = _zip_and_prepare(root)
    yy, xx = np.mgrid[0:64, 0:64]
    for i, r in enumerate(manifest.itertuples()):
        d = np.clip(1 - ((xx - 32 - i) ** 2 + (yy - 30) ** 2) / 900.0, 0, 1)
        encoding.save_map(root / "data" / "maps", "depth", r.split, r.id, encoding.encode_depth(d))
    return root / "data"


def _cocosnet_vgg_stand_in(weights: Path) -> Path:
    """CoCosNet's vgg19_conv.pth with its official key names and shapes (random values)."""
    from facesketch.exemplar import vgg

    g = torch.Generator().manual_seed(0)
    shapes = vgg.VGG19Features("caffe").state_dict()
    state = {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in shapes.items()}
    path = weights / "cocosnet" / "vgg19_conv.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def _small(spec: dict) -> dict:
    s = copy.deepcopy(spec)
    s.update(size=64, load=72, ngf=8, ndf=8, batch_size=2, max_steps_per_epoch=1,
             schedule={"epochs": 1, "decay_epochs": 0})
    return s


@pytest.mark.parametrize("name", ["metfaces_cocosnet", "metfaces_cocosnet_hida"])
def test_one_training_step_and_inference(cfg, stand_in, tmp_path, name):
    from facesketch.cli import main

    weights = tmp_path / "weights"
    _cocosnet_vgg_stand_in(weights)
    spec = _small(metfaces.variant_spec(cfg, name))
    run = tmp_path / "run"
    assert main(["exemplar-train", "--spec", json.dumps(spec), "--manifest", str(stand_in / "manifest.parquet"),
                 "--maps", str(stand_in / "maps"), "--weights", str(weights), "--out", str(run),
                 "--device", "cpu"]) == 0
    losses = pd.read_csv(run / "losses.csv")
    assert len(losses) == 1 and np.isfinite(losses.filter(regex="^(G_|D_)").to_numpy()).all()
    assert {"G_contextual", "G_domain", "G_warp_cycle", "G_vgg_fm", "D_fake", "D_real"} <= set(losses.columns)
    out = tmp_path / "samples" / "0"
    assert main(["exemplar-infer", "--checkpoint", str(run / "model.pt"), "--manifest",
                 str(stand_in / "manifest.parquet"), "--maps", str(stand_in / "maps"), "--out", str(out),
                 "--device", "cpu"]) == 0
    test_ids = set(pd.read_parquet(stand_in / "manifest.parquet").query("split == 'test'").id)
    assert {p.stem for p in out.glob("*.png")} == test_ids
    assert all(Image.open(p).size == (64, 64) and Image.open(p).mode == "RGB" for p in out.glob("*.png"))


def test_killed_training_resumes_to_the_weights_of_an_unbroken_run(cfg, stand_in, tmp_path):
    import os
    import subprocess
    import sys

    weights = tmp_path / "weights"
    _cocosnet_vgg_stand_in(weights)
    spec = _small(metfaces.variant_spec(cfg, "metfaces_cocosnet"))
    spec["schedule"] = {"epochs": 1, "decay_epochs": 1}  # two epochs, the second at a decayed rate
    manifest = stand_in / "manifest.parquet"

    def cmd(run: Path) -> list[str]:
        return [sys.executable, "-m", "facesketch.cli", "exemplar-train", "--spec", json.dumps(spec), "--manifest",
                str(manifest), "--weights", str(weights), "--out", str(run), "--device", "cpu"]

    env = dict(os.environ, OMP_NUM_THREADS="1")  # every run with the same reduction order
    assert subprocess.run(cmd(tmp_path / "unbroken"), env=env, capture_output=True).returncode == 0
    unbroken = torch.load(tmp_path / "unbroken" / "model.pt", weights_only=True)["net"]
    run = tmp_path / "killed"
    killed = subprocess.run(cmd(run), env=dict(env, FACESKETCH_KILL_AFTER_EPOCHS="1"), capture_output=True, text=True)
    assert killed.returncode == 137 and (run / "last.pt").is_file() and not (run / "model.pt").exists()
    resumed = subprocess.run(cmd(run), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch 1 of 2" in resumed.stderr
    final = torch.load(run / "model.pt", weights_only=True)["net"]
    assert final.keys() == unbroken.keys() and all(torch.equal(final[k], unbroken[k]) for k in final)
    assert len(pd.read_csv(run / "losses.csv")) == 2


def test_training_without_cocosnets_vgg_names_the_file(cfg, stand_in, tmp_path):
    from facesketch.exemplar.train import train

    with pytest.raises(WeightsError, match=r"vgg19_conv.pth at .*cocosnet.*CoCosNet README"):
        train(_small(metfaces.variant_spec(cfg, "metfaces_cocosnet")), stand_in / "manifest.parquet", None,
              tmp_path / "run", weights_dir=tmp_path / "weights", device="cpu")


def test_depth_variant_without_depth_maps_names_the_file(cfg, stand_in, tmp_path):
    from facesketch.exemplar import vgg
    from facesketch.exemplar.train import train

    with pytest.raises(DataError, match=r"depth/(train|test)/.*\.png: depth map missing"):
        train(_small(metfaces.variant_spec(cfg, "metfaces_cocosnet_hida")), stand_in / "manifest.parquet",
              tmp_path / "no_maps", tmp_path / "run", device="cpu", vgg=vgg.VGG19Features("caffe"))


def test_lr_schedule_is_the_references_linear_decay():
    from facesketch.exemplar.train import lr_factor

    sched = {"epochs": 30, "decay_epochs": 30}
    # SPADE-style trainers lower lr by lr/niter_decay at the end of every epoch past niter
    assert [lr_factor(e, sched) for e in (0, 29, 30, 31, 45, 59)] == [1, 1, 1, 1 - 1 / 30, 1 - 15 / 30, 1 - 29 / 30]


# --- VGG19 files: official key names, missing files, the semantic score -----------------------

def test_vgg_loaders_take_the_official_key_names(tmp_path):
    import torchvision

    from facesketch.exemplar import vgg

    tv = torchvision.models.vgg19(weights=None).state_dict()
    net = vgg.from_torchvision_state(tv)
    assert torch.equal(net.conv5_2.weight, tv["features.30.weight"])
    assert torch.equal(net.conv3_2.bias, tv["features.12.bias"])
    path = _cocosnet_vgg_stand_in(tmp_path)
    loaded = vgg.load("cocosnet_vgg19", tmp_path)
    assert torch.equal(loaded.conv4_4.weight, torch.load(path, weights_only=True)["conv4_4.weight"])
    bad = {k: v for k, v in torch.load(path, weights_only=True).items() if k != "conv5_4.bias"}
    with pytest.raises(WeightsError, match="missing conv5_4.bias"):
        vgg.from_cocosnet_state(bad, "x.pth")
    with pytest.raises(WeightsError, match=r"vgg19-dcbb9e9d.pth at .*vgg.*download.pytorch.org"):
        vgg.load("vgg19", tmp_path / "empty")


def test_vgg_features_match_torchvisions_layers():
    """relu3_2/4_2/5_2 of our VGG equal torchvision's vgg19.features[:13/22/31] on ImageNet-normalised input."""
    import torchvision

    from facesketch.exemplar import vgg

    torch.manual_seed(0)
    tv = torchvision.models.vgg19(weights=None).eval()
    net = vgg.from_torchvision_state(tv.state_dict())
    x = torch.rand(2, 3, 48, 48) * 2 - 1
    mean, std = IMAGENET
    ours = net(x, ["r32", "r42", "r52"])
    with torch.no_grad():
        for got, end in zip(ours, (14, 23, 32)):
            torch.testing.assert_close(got, tv.features[:end](((x + 1) / 2 - mean) / std))


def test_semantic_score_flattened_is_the_mean_cosine_of_high_level_features():
    import torchvision

    from facesketch.exemplar import vgg
    from facesketch.metrics.semantic import semantic_similarity

    torch.manual_seed(0)
    tv = torchvision.models.vgg19(weights=None).eval()
    net = vgg.from_torchvision_state(tv.state_dict())
    a, b = torch.rand(2, 3, 256, 256) * 2 - 1, torch.rand(2, 3, 256, 256) * 2 - 1
    assert torch.allclose(semantic_similarity(net, a, a, mode="global"), torch.ones(2), atol=1e-5)
    mean, std = IMAGENET
    with torch.no_grad():
        expected = []
        for i in range(2):
            sims = []
            for end in (14, 23, 32):  # relu3_2, relu4_2, relu5_2 in torchvision's layer numbering
                u = tv.features[:end](((a[i:i + 1] + 1) / 2 - mean) / std).flatten()
                v = tv.features[:end](((b[i:i + 1] + 1) / 2 - mean) / std).flatten()
                sims.append(float(u @ v / (u.norm() * v.norm())))
            expected.append(sum(sims) / 3)
    torch.testing.assert_close(semantic_similarity(net, a, b, mode="global").double(),
                               torch.tensor(expected, dtype=torch.float64), atol=1e-4, rtol=1e-4)


def _sem_by_region_naive(fa: np.ndarray, fb: np.ndarray, label: np.ndarray) -> float:
    """MATEBIT's cal_feat_dist with use_cos='cos', one layer: area-weighted cosine of region means."""
    total = 0.0
    for v in np.unique(label):
        m = label == v
        ma, mb = fa[:, m].mean(axis=1), fb[:, m].mean(axis=1)
        total += (ma / np.linalg.norm(ma)) @ (mb / np.linalg.norm(mb)) * m.sum() / m.size
    return float(total)


def test_semantic_score_by_region_as_the_authors_script():
    import torchvision

    from facesketch.exemplar import vgg
    from facesketch.metrics.semantic import semantic_similarity

    torch.manual_seed(0)
    net = vgg.from_torchvision_state(torchvision.models.vgg19(weights=None).state_dict())  # PyTorch's init
    # resized to 256 first; the label (an edge map: edge and non-edge) marks the left eighth, where b
    # differs from a: the two regions' cosines differ, so their areas' weights matter
    a = torch.rand(1, 3, 128, 128) * 2 - 1
    b = a.clone()
    b[..., :16] = torch.rand(1, 3, 128, 16) * 2 - 1
    label = torch.zeros(1, 128, 128, dtype=torch.uint8)
    label[..., :16] = 255
    assert float(semantic_similarity(net, a, a, label)) == pytest.approx(1.0, abs=1e-5)
    up = lambda t: torch.nn.functional.interpolate(t, size=(256, 256), mode="bilinear", align_corners=False)  # noqa: E731
    lab = torch.nn.functional.interpolate(label[:, None].float(), size=(256, 256), mode="nearest")[0, 0].numpy()
    with torch.no_grad():
        layers = []
        for fa, fb in zip(net(up(a), ["r32", "r42", "r52"]), net(up(b), ["r32", "r42", "r52"])):
            fa = torch.nn.functional.interpolate(fa, size=(256, 256), mode="nearest")[0].double().numpy()
            fb = torch.nn.functional.interpolate(fb, size=(256, 256), mode="nearest")[0].double().numpy()
            layers.append(_sem_by_region_naive(fa, fb, lab))
    # region means of deep features are alike (scores near 1): a tight tolerance tells the weights apart
    assert float(semantic_similarity(net, a, b, label)) == pytest.approx(sum(layers) / 3, abs=1e-5)
    assert float(semantic_similarity(net, a, b, label)) != pytest.approx(
        float(semantic_similarity(net, a, b, mode="global")), abs=1e-3)


# --- Table 4's MetFaces block: scored through the CLI the rules call, rows without data ---------

IMAGENET = (torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))



def _configured(cfg, source: Path) -> dict:
    c = copy.deepcopy(cfg)
    c["metfaces"]["archive"] = str(source)
    return c


def test_table4_metfaces_block_filled_from_scored_samples(cfg, tmp_path, monkeypatch):
    import torchvision

    from facesketch.cli import main
    from facesketch.exemplar import vgg
    from facesketch.metrics import networks
    from facesketch.report.tables import build_long, load_metrics, table_spec

    torch.manual_seed(0)
    alexnet, vgg19 = torchvision.models.alexnet(weights=None).state_dict(), torchvision.models.vgg19(weights=None)
    monkeypatch.setattr(networks, "load_fid_inception", lambda d: StandInInception())
    monkeypatch.setattr(networks, "load_lpips", lambda d: networks.lpips_from_alexnet_state(alexnet))
    monkeypatch.setattr(vgg, "load", lambda name, d: vgg.from_torchvision_state(vgg19.state_dict()))
    manifest = _zip_and_prepare(tmp_path, dict(SPEC, split={"test": 0.5, "seed": 0}, expected=8), n=8)
    test = manifest[manifest.split == "test"]
    rng = np.random.default_rng(1)
    files = {}
    for variant, noise in (("metfaces_cocosnet", 60), ("metfaces_cocosnet_hida", 0)):
        out = tmp_path / "samples" / variant / "0"
        out.mkdir(parents=True)
        for r in test.itertuples():
            gt = np.asarray(Image.open(tmp_path / "data" / r.photo))
            Image.fromarray(np.clip(gt.astype(int) + rng.integers(-noise, noise + 1, gt.shape), 0, 255)
                            .astype(np.uint8)).save(out / f"{r.id}.png")
        files[variant] = tmp_path / "metrics" / f"{variant}.parquet"
        assert main(["exemplar-score", "--variant", variant, "--manifest", str(tmp_path / "data" / "manifest.parquet"),
                     "--samples", str(out), "--weights", str(tmp_path / "w"), "--out", str(files[variant]),
                     "--device", "cpu"]) == 0
    c = _configured(cfg, tmp_path / "metfaces.zip")
    spec = metfaces.table_spec(table_spec(c, {}), c)
    long = build_long(spec, load_metrics(list(files.values())))
    t4 = long[(long.table == "hida_table4_metfaces") & (long["style"] == "all")].set_index(["label", "metric"])
    assert t4.loc[("CoCosNet", "FID"), "paper"] == 34.14 and t4.loc[("HIDA", "Sem."), "paper"] == 0.981
    for metric in ("FID", "LPIPS", "Sem."):
        assert np.isfinite(t4.loc[("CoCosNet", metric), "ours"])
    assert t4.loc[("CoCosNet", "LPIPS"), "n_images"] == len(test)
    assert t4.loc[("CoCosNet", "LPIPS"), "ours"] > 0 and t4.loc[("CoCosNet", "Sem."), "ours"] < 1
    # the ground truth itself: LPIPS 0, Sem. 1, FID 0 up to the matrix square root
    assert t4.loc[("HIDA", "LPIPS"), "ours"] == pytest.approx(0.0, abs=1e-6)
    assert t4.loc[("HIDA", "Sem."), "ours"] == pytest.approx(1.0, abs=1e-5)
    assert t4.loc[("HIDA", "FID"), "ours"] == pytest.approx(0.0, abs=1e-3)
    assert "not in this pipeline" in t4.loc[("DyNaST", "FID"), "reason"]
    from facesketch.report.tables import build_tables

    build_tables(spec, list(files.values()), tmp_path / "tables")
    md = (tmp_path / "tables" / "hida_table4_metfaces.md").read_text()
    assert "Sem." in md and "0.981" in md and "No paper publishes its MetFaces split" in md
    from facesketch.report.plots import metric_bars

    bars = metric_bars(long[long.table == "hida_table4_metfaces"], c["tables"]["hida_table4_metfaces"],
                       ["FID", "LPIPS", "Sem."], tmp_path / "bars.png", "Table 4, MetFaces")
    assert Path(bars).is_file()

    grid = tmp_path / "grid.png"
    assert main(["metfaces-grid", "--manifest", str(tmp_path / "data" / "manifest.parquet"), "--samples",
                 json.dumps({"CoCosNet": str(tmp_path / "samples" / "metfaces_cocosnet" / "0")}), "--out",
                 str(grid)]) == 0
    assert Image.open(grid).size[0] > 4 * 100  # edges, exemplar, one method, ground truth


def test_table4_metfaces_rows_say_which_file_is_missing(cfg, tmp_path, monkeypatch):
    from facesketch.report.tables import build_long, load_metrics, table_spec

    monkeypatch.delenv("METFACES_ARCHIVE", raising=False)
    for c, words in ((cfg, "MetFaces is not configured"),
                     (_configured(cfg, tmp_path / "gone"), f"MetFaces not found at {tmp_path / 'gone'}")):
        spec = metfaces.table_spec(table_spec(c, {}), c)
        t4 = build_long(spec, load_metrics([]))
        t4 = t4[(t4.table == "hida_table4_metfaces") & (t4["style"] == "all")]
        assert len(t4.label.unique()) == 6 and t4.ours.isna().all()
        for label in ("CoCosNet", "HIDA"):
            reason = t4[t4.label == label].reason.iloc[0]
            assert words in reason and "metfaces.archive" in reason and metfaces.URL in reason, (label, reason)


@pytest.mark.slow  # three Snakemake plans: about a minute on two busy cores
def test_dry_run_plans_table4_metfaces_jobs(tmp_path):
    import re

    from .test_workflow import _env, _snakemake

    make_metfaces_zip(tmp_path / "metfaces.zip", n=3)
    env = _env(FS2K_ARCHIVE="/nonexistent/FS2K.zip", METFACES_ARCHIVE=str(tmp_path / "metfaces.zip"))
    r = _snakemake("-n", "--configfile", "config.yaml", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", r.stdout + r.stderr, re.M))
    expected = {"metfaces_extract": "1", "metfaces_prepare": "1", "metfaces_maps": "1",  # depth, for the HIDA one
                "metfaces_train": "2", "metfaces_infer": "2", "metfaces_score": "2", "metfaces_grid": "1",
                "tables": "1"}
    assert {k: counts.get(k) for k in expected} == expected
    assert "data/metfaces/manifest.parquet" in r.stdout

    folder = make_metfaces_folder(tmp_path / "unzipped", n=3)  # the release folder itself: no extraction
    r = _snakemake("-n", "--configfile", "config.yaml", env=dict(env, METFACES_ARCHIVE=str(folder)))
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", r.stdout + r.stderr, re.M))
    assert r.returncode == 0 and counts.get("metfaces_prepare") == "1" and "metfaces_extract" not in counts

    env.pop("METFACES_ARCHIVE")
    r = _snakemake("-n", "--configfile", "config.yaml", "--", "tables", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", r.stdout + r.stderr, re.M))
    assert counts.get("tables") == "1" and not [k for k in counts if k.startswith("metfaces")]


# --- CoCosNet's losses ---------------------------------------------------------------------------

def _contextual_naive(x: np.ndarray, y: np.ndarray, h: float = 0.1) -> float:
    """ContextualLoss_forward (PONO) for one sample, position by position: (C, P) feature matrices."""
    mu = y.mean(axis=0, keepdims=True)  # the target's channel mean at each position
    xc, yc = x - mu, y - mu
    xc, yc = xc / np.linalg.norm(xc, axis=0), yc / np.linalg.norm(yc, axis=0)
    cx = []
    for i in range(x.shape[1]):
        d = np.array([1 - xc[:, i] @ yc[:, j] for j in range(y.shape[1])])
        w = np.exp((1 - d / (d.min() + 1e-3)) / h)
        cx.append((w / w.sum()).max())
    return float(-np.log(np.mean(cx)))


def test_contextual_loss():
    from facesketch.exemplar.losses import contextual

    torch.manual_seed(0)
    x, y = torch.rand(2, 8, 4, 4), torch.rand(2, 8, 4, 4)
    got = contextual(x, y)
    for b in range(2):
        assert float(got[b]) == pytest.approx(_contextual_naive(x[b].flatten(1).double().numpy(),
                                                                y[b].flatten(1).double().numpy()), rel=1e-4)
    # contextual, not positional: the same features in another arrangement cost (almost) nothing
    shuffled = x.flatten(2)[:, :, torch.randperm(16)].view_as(x)
    assert float(contextual(shuffled, x).max()) < 1e-3 < float(got.min())


def test_vgg_feature_matching_counts_only_self_referenced_samples():
    from facesketch.exemplar import cocosnet, vgg
    from facesketch.exemplar.losses import generator_losses

    torch.manual_seed(0)
    net, disc = cocosnet.build({"size": 64, "ngf": 8, "ndf": 8})
    feats = vgg.VGG19Features("caffe")
    seg, ref, real = torch.rand(2, 1, 64, 64), torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    w = {"gan": 10.0, "feat": 10.0, "vgg": 10.0, "fm_ratio": 1.0, "perceptual": 0.001, "contextual": 1.0,
         "domain": 10.0, "warp_cycle": 1.0}
    with torch.no_grad():
        fake, co = net(seg, ref, seg, real)
        d_fake, d_real = disc(torch.cat((seg, fake), 1)), disc(torch.cat((seg, real), 1))
        none = generator_losses(w, fake, real, ref, torch.zeros(2), co, d_fake, d_real, feats)
        both = generator_losses(w, fake, real, ref, torch.ones(2), co, d_fake, d_real, feats)
    assert float(none["G_vgg_fm"]) == 0.0 and float(both["G_vgg_fm"]) > 0
    assert all(torch.isfinite(v) for v in both.values())
    # the warp cycle compares with the exemplar pooled 4x, the domain term the two adaptors' features
    assert float(both["G_warp_cycle"]) == pytest.approx(
        float(torch.nn.functional.l1_loss(co["warp_cycle"], torch.nn.functional.avg_pool2d(ref, 4))))


def test_warped_exemplar_is_a_convex_combination_of_its_pooled_pixels():
    """The correspondence softmax-averages the 4x-pooled exemplar: every warped pixel (before the bilinear
    upsampling: warp_cycle's input) lies within the pooled exemplar's range, channel by channel."""
    from facesketch.exemplar.cocosnet import Correspondence

    torch.manual_seed(0)
    corr = Correspondence(1, ngf=8)
    ref = torch.rand(1, 3, 64, 64) * 2 - 1
    out = corr(ref, torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64))
    pooled = torch.nn.functional.avg_pool2d(ref, 4).flatten(2)
    for warped in (torch.nn.functional.avg_pool2d(out["warp_out"], 4), out["warp_cycle"]):
        w = warped.flatten(2)
        assert (w >= pooled.min(-1, keepdim=True)[0] - 1e-5).all()
        assert (w <= pooled.max(-1, keepdim=True)[0] + 1e-5).all()
    assert out["warp_out"].shape == ref.shape and out["warp_cycle"].shape == (1, 3, 16, 16)


def test_load_smaller_than_the_size_is_a_config_error(cfg, stand_in, tmp_path):
    from facesketch.errors import ConfigError
    from facesketch.exemplar.train import train

    with pytest.raises(ConfigError, match="load: 32 is smaller than the training size 64"):
        train(dict(_small(metfaces.variant_spec(cfg, "metfaces_cocosnet")), load=32), stand_in / "manifest.parquet",
              None, tmp_path / "run", device="cpu")


@pytest.mark.slow  # a real Snakemake run of the MetFaces rules (about a minute on two busy cores)
def test_workflow_runs_ingestion_training_and_inference_on_the_stand_in(tmp_path):
    """The rules' shell commands as Snakemake runs them: extract, prepare, train one step, paint the test
    edge maps (scoring needs the FID/LPIPS/VGG19 weights, which cannot be downloaded here; the table
    test above scores through the same CLI with stand-in networks)."""
    from .test_workflow import _env, _snakemake

    make_metfaces_zip(tmp_path / "metfaces.zip", n=6)
    _cocosnet_vgg_stand_in(tmp_path / "weights")
    small = {"load": 72, "ngf": 8, "ndf": 8, "batch_size": 2, "max_steps_per_epoch": 1,
             "schedule": {"epochs": 1, "decay_epochs": 0}}
    overlay = tmp_path / "small.yaml"
    overlay.write_text(json.dumps({
        "paths": {"data": str(tmp_path / "data"), "results": str(tmp_path / "results"),
                  "weights": str(tmp_path / "weights")},
        "device": "cpu",
        "metfaces": {"size": 64, "expected": 6, "split": {"test": 0.34}, "exemplars": {"k": 2},
                     "variants": {"metfaces_cocosnet": small, "metfaces_cocosnet_hida": small}}}))
    env = _env(FS2K_ARCHIVE="/nonexistent/FS2K.zip", METFACES_ARCHIVE=str(tmp_path / "metfaces.zip"))
    target = str(tmp_path / "results" / "metfaces" / "samples" / "metfaces_cocosnet" / "0")
    r = _snakemake("--cores", "1", "--configfile", "config.yaml", str(overlay), "--", target, env=env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    manifest = pd.read_parquet(tmp_path / "data" / "metfaces" / "manifest.parquet")
    assert {p.stem for p in Path(target).glob("*.png")} == set(manifest[manifest.split == "test"].id)
    losses = pd.read_csv(tmp_path / "results" / "metfaces" / "checkpoints" / "metfaces_cocosnet" / "0" / "losses.csv")
    assert len(losses) == 1 and np.isfinite(losses.filter(regex="^(G_|D_)").to_numpy()).all()


def test_scores_without_weights_say_which_file_is_missing(cfg, tmp_path):
    from facesketch.exemplar.score import score_samples
    from facesketch.report.tables import build_long, table_spec

    manifest = _zip_and_prepare(tmp_path)
    samples = tmp_path / "samples" / "0"
    samples.mkdir(parents=True)
    for r in manifest[manifest.split == "test"].itertuples():
        Image.open(tmp_path / "data" / r.photo).save(samples / f"{r.id}.png")
    with pytest.raises(WeightsError, match="pt_inception-2015-12-05"):
        score_samples("metfaces_cocosnet", tmp_path / "data" / "manifest.parquet", [samples], tmp_path / "m.parquet",
                      tmp_path / "no_weights", device="cpu")
    df = score_samples("metfaces_cocosnet", tmp_path / "data" / "manifest.parquet", [samples], tmp_path / "m.parquet",
                       tmp_path / "no_weights", device="cpu", allow_missing=True)
    assert df.value.isna().all()
    c = _configured(cfg, tmp_path / "metfaces.zip")
    t4 = build_long(metfaces.table_spec(table_spec(c, {}), c), df)
    t4 = t4[(t4.table == "hida_table4_metfaces") & (t4["style"] == "all") & (t4.label == "CoCosNet")]
    t4 = t4.set_index("metric")
    assert "pt_inception-2015-12-05" in t4.loc["FID", "reason"] and "alexnet-owt" in t4.loc["LPIPS", "reason"]
    assert "vgg19_conv.pth" in t4.loc["Sem.", "reason"]


def test_weights_a_metfaces_run_needs(cfg, tmp_path, monkeypatch):
    from facesketch.maps import weights

    monkeypatch.delenv("METFACES_ARCHIVE", raising=False)
    assert not {"cocosnet_vgg19"} & set(weights.required(cfg))  # no MetFaces, no CoCosNet VGG to fetch
    make_metfaces_zip(tmp_path / "metfaces.zip", n=2)
    assert "cocosnet_vgg19" in weights.required(_configured(cfg, tmp_path / "metfaces.zip"))
