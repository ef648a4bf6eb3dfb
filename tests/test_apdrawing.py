"""APDrawing (HIDA Table 4): ingestion of a stand-in archive in the official APDrawingDB.zip layout."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from facesketch.data import apdrawing
from facesketch.errors import DataError, UnsafeArchiveError

from .conftest import StandInInception


def _pair(seed: int, side: int) -> np.ndarray:
    """A side-by-side photo|drawing image: random colour photo on the left, a grey drawing on the right."""
    rng = np.random.default_rng(seed)
    ab = np.zeros((side, 2 * side, 3), np.uint8)
    ab[:, :side] = rng.integers(0, 256, (side, side, 3))
    grey = rng.integers(0, 256, (side, side))
    ab[:, side:] = grey[..., None]
    return ab


def make_apdrawing_zip(path: Path, n_train: int = 3, n_test: int = 2, side: int = 32, extra: dict | None = None):
    """APDrawingDB/{data/{train,test},landmark/ALL,mask/ALL} as the official archive lays them out."""
    pairs = {}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("APDrawingDB/", "")
        for split, n in (("train", n_train), ("test", n_test)):
            for i in range(n):
                name = f"{split}_{i:03d}"
                ab = _pair(hash((split, i)) % 2**32, side)
                pairs[(split, name)] = ab
                buf = _png(ab)
                zf.writestr(f"APDrawingDB/data/{split}/{name}.png", buf)
                zf.writestr(f"APDrawingDB/landmark/ALL/{name}.txt", "10 10\n20 10\n15 15\n11 20\n19 20\n")
                zf.writestr(f"APDrawingDB/mask/ALL/{name}.png", _png(np.full((side, side), 255, np.uint8)))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return pairs


def _png(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_ingest_stand_in_archive(tmp_path):
    archive = tmp_path / "APDrawingDB.zip"
    pairs = make_apdrawing_zip(archive)
    raw = apdrawing.extract(archive, tmp_path / "raw")
    manifest = apdrawing.prepare(raw, tmp_path / "out", {"size": 32, "expected": {"train": 3, "test": 2}})
    assert manifest.groupby("split").size().to_dict() == {"train": 3, "test": 2}
    assert set(manifest["style"]) == {0}
    on_disk = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert len(on_disk) == 5
    for row in on_disk.itertuples():
        ab = pairs[(row.split, row.id)]
        photo = np.asarray(Image.open(tmp_path / "out" / row.photo))
        sketch = np.asarray(Image.open(tmp_path / "out" / row.sketch))
        np.testing.assert_array_equal(photo, ab[:, :32])  # left half, untouched at the native size
        assert sketch.ndim == 2
        np.testing.assert_array_equal(sketch, ab[:, 32:, 0])  # right half; grey, so L = any channel


def test_resized_to_configured_size(tmp_path):
    archive = tmp_path / "APDrawingDB.zip"
    make_apdrawing_zip(archive, n_train=1, n_test=1, side=32)
    raw = apdrawing.extract(archive, tmp_path / "raw")
    manifest = apdrawing.prepare(raw, tmp_path / "out", {"size": 16, "expected": None})
    for row in manifest.itertuples():
        assert Image.open(tmp_path / "out" / row.photo).size == (16, 16)
        assert Image.open(tmp_path / "out" / row.sketch).size == (16, 16)


def test_counts_checked_against_the_official_split(tmp_path):
    archive = tmp_path / "APDrawingDB.zip"
    make_apdrawing_zip(archive, n_train=3, n_test=2)
    raw = apdrawing.extract(archive, tmp_path / "raw")
    with pytest.raises(DataError, match="test: 2 pairs, expected 70"):
        apdrawing.prepare(raw, tmp_path / "out", {"size": 32, "expected": {"train": 3, "test": 70}})
    assert not (tmp_path / "out" / "manifest.parquet").exists()


def test_official_defaults_in_config():
    from facesketch.config import load_config

    cfg = load_config(Path(__file__).parents[1] / "config.yaml")
    assert cfg["apdrawing"]["expected"] == {"train": 420, "test": 70}
    assert cfg["apdrawing"]["size"] == 512
    assert cfg["apdrawing"]["url"] == apdrawing.URL


def test_unsafe_and_foreign_archives_refused(tmp_path):
    bad = tmp_path / "bad.zip"
    make_apdrawing_zip(bad, 1, 1, extra={"APDrawingDB/../evil.txt": "x"})
    with pytest.raises(UnsafeArchiveError, match=r"\.\."):
        apdrawing.extract(bad, tmp_path / "raw")
    fs2k_like = tmp_path / "FS2K.zip"
    with zipfile.ZipFile(fs2k_like, "w") as zf:
        zf.writestr("FS2K/anno_train.json", "[]")
    with pytest.raises(UnsafeArchiveError, match="outside APDrawingDB/"):
        apdrawing.extract(fs2k_like, tmp_path / "raw2")
    assert not (tmp_path / "raw").exists() and not (tmp_path / "raw2").exists()
    with pytest.raises(DataError, match="APDrawing archive not found: .*APDRAWING_ARCHIVE"):
        apdrawing.extract(tmp_path / "nowhere.zip", tmp_path / "raw3")


def test_pair_that_is_not_side_by_side(tmp_path):
    folder = tmp_path / "APDrawingDB" / "data"
    for split in ("train", "test"):
        (folder / split).mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / split / "square.png")
    with pytest.raises(DataError, match="square.png: 32x32 is not a photo.drawing pair"):
        apdrawing.prepare(tmp_path, tmp_path / "out", {"size": 32, "expected": None})


def test_missing_split_folder_named(tmp_path):
    (tmp_path / "APDrawingDB" / "data" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=r"data/train.*holds no images|data/test is missing"):
        apdrawing.prepare(tmp_path, tmp_path / "out", {"size": 32, "expected": None})


def test_cli_extract_and_prepare(tmp_path):
    from facesketch.cli import main

    archive = tmp_path / "APDrawingDB.zip"
    make_apdrawing_zip(archive, 2, 1)
    assert main(["apdrawing-extract", str(archive), "--out", str(tmp_path / "raw")]) == 0
    spec = '{"size": 32, "expected": {"train": 2, "test": 1}}'
    assert main(["apdrawing-prepare", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out"),
                 "--spec", spec]) == 0
    assert len(pd.read_parquet(tmp_path / "out" / "manifest.parquet")) == 3


# --- the variants: trained by the same engine on the stand-in -----------------------------------

REPO = Path(__file__).parents[1]
APD_VARIANTS = {"apdrawing_pix2pix": "unet", "apdrawing_pix2pixhd": "pix2pixhd_global", "apdrawing_hida_full": "hida"}


@pytest.fixture(scope="module")
def cfg():
    from facesketch.config import load_config

    return load_config(REPO / "config.yaml")


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    """The stand-in archive ingested at 64x64, with depth maps where the predictors would put them."""
    from facesketch.maps import encoding

    root = tmp_path_factory.mktemp("apdrawing")
    make_apdrawing_zip(root / "APDrawingDB.zip", n_train=3, n_test=2, side=64)
    apdrawing.extract(root / "APDrawingDB.zip", root / "raw")
    manifest = apdrawing.prepare(root / "raw", root / "data", {"size": 64, "expected": {"train": 3, "test": 2}})
    yy, xx = np.mgrid[0:64, 0:64]
    for i, r in enumerate(manifest.itertuples()):  # smooth blobs, as the depth predictors store them
        d = np.clip(1 - ((xx - 32 - i) ** 2 + (yy - 30) ** 2) / 900.0, 0, 1)
        encoding.save_map(root / "data" / "maps", "depth", r.split, r.id, encoding.encode_depth(d))
    return root / "data"


def test_variants_at_apdrawing_resolution_without_style(cfg):
    assert cfg["apdrawing"]["variants"] == list(APD_VARIANTS)
    for name, arch in APD_VARIANTS.items():
        s = cfg["resolved"][name]
        assert s["generator"]["arch"] == arch
        assert s["input"] == {"image": 512, "pad": 0, "crop": 512}  # APDrawingGAN: loadSize = fineSize = 512
        assert s["generator"].get("style_input", "none") == "none"
    hida, fs2k_hida = cfg["resolved"]["apdrawing_hida_full"], cfg["resolved"]["hida_full"]
    # HIDA full otherwise: DOG, DySPADE, InfoACON, the depth input
    for key in ("dog", "decoder_norm", "decoder_activation", "depth_input"):
        assert hida["generator"][key] == fs2k_hida["generator"][key]
    assert fs2k_hida["generator"]["style_input"] == "condition"


def test_unknown_apdrawing_variant_is_a_config_error(tmp_path):
    from facesketch.config import load_config
    from facesketch.errors import ConfigError

    extra = tmp_path / "x.yaml"
    extra.write_text("apdrawing: {variants: [nope]}\n")
    with pytest.raises(ConfigError, match="apdrawing.variants: 'nope' is not a variant"):
        load_config([REPO / "config.yaml", extra])


@pytest.mark.parametrize("name", list(APD_VARIANTS))
def test_one_training_step_and_inference_on_the_stand_in(cfg, stand_in, tmp_path, name):
    import copy

    from facesketch.train.infer import infer
    from facesketch.train.run import train

    s = copy.deepcopy(cfg["resolved"][name])
    s.update(input={"image": 64, "pad": 0, "crop": 64}, precision="fp32", compile=False, channels_last=False,
             schedule={"epochs": 1, "decay_epochs": 0}, max_steps_per_epoch=1, checkpoint_every=1, sample_every=1,
             batch_size=min(s["batch_size"], 2))
    s["generator"] = dict(s["generator"], ngf=8)
    if s["generator"]["arch"] == "pix2pixhd_global":
        s["generator"]["n_blocks"] = 1
    s["discriminator"] = dict(s["discriminator"], ndf=8)
    if s["losses"].get("vgg"):  # VGG's weights cannot be downloaded here; the loss has its own tests
        s["losses"]["vgg"] = 0.0
    manifest = stand_in / "manifest.parquet"
    model = train(s, manifest, stand_in / "maps", tmp_path / "run", device="cpu")
    state = torch.load(model, weights_only=True)
    assert set(state["generators"]) == {"G"}
    losses = pd.read_csv(tmp_path / "run" / "losses.csv")
    assert len(losses) >= 1 and np.isfinite(losses.filter(regex="^(G_|D)").to_numpy()).all()
    n = infer(s, model, manifest, stand_in / "maps", tmp_path / "Style1", "Style1", device="cpu")
    test_ids = set(pd.read_parquet(manifest).query("split == 'test'").id)
    assert n == 2 and {p.stem for p in (tmp_path / "Style1").glob("*.png")} == test_ids


# --- the workflow: planned when the archive is configured, silent (and explained) when not --------

def test_dry_run_plans_table4_apdrawing_jobs(tmp_path):
    import re

    from .test_workflow import _env, _snakemake

    archive = tmp_path / "APDrawingDB.zip"
    make_apdrawing_zip(archive, 1, 1)
    (tmp_path / "DSMAP").mkdir()  # one released-results folder present, TUNIT's and U2-Net's absent
    extra = tmp_path / "released.yaml"
    extra.write_text(f"apdrawing:\n  released:\n    dsmap: {{path: {tmp_path / 'DSMAP'}}}\n"
                     f"    tunit: {{path: {tmp_path / 'TUNIT'}}}\n    u2net: {{path: {tmp_path / 'U2'}}}\n")
    env = _env(FS2K_ARCHIVE="/nonexistent/FS2K.zip", APDRAWING_ARCHIVE=str(archive))
    r = _snakemake("-n", "--configfile", "config.yaml", str(extra), env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", r.stdout + r.stderr, re.M))
    expected = {"apdrawing_extract": "1", "apdrawing_prepare": "1", "apdrawing_maps": "1",  # depth only
                "apdrawing_train": "3", "apdrawing_infer": "3", "apdrawing_score": "3",
                "apdrawing_score_released": "1", "tables": "1"}
    assert {k: counts.get(k) for k in expected} == expected
    assert "data/apdrawing/manifest.parquet" in r.stdout

    env.pop("APDRAWING_ARCHIVE")
    r = _snakemake("-n", "--configfile", "config.yaml", str(extra), "--", "tables", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", r.stdout + r.stderr, re.M))
    assert counts.get("tables") == "1"
    assert not [k for k in counts if k.startswith("apdrawing")]  # nothing of APDrawing runs without the archive


# --- Table 4: the APDrawing block --------------------------------------------------------------


def _configured(cfg, archive: Path, released: Path) -> dict:
    import copy

    c = copy.deepcopy(cfg)
    c["apdrawing"]["archive"] = str(archive)
    for name in c["apdrawing"]["released"]:
        c["apdrawing"]["released"][name]["path"] = str(released / name)
    return c


def test_table4_apdrawing_block_filled_from_scored_runs(cfg, tmp_path, monkeypatch):
    import torchvision

    from facesketch.metrics import networks
    from facesketch.metrics.evaluate import evaluate_folder, score_variant
    from facesketch.report.tables import build_long, load_metrics, table_spec

    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet(weights=None).state_dict()
    monkeypatch.setattr(networks, "load_fid_inception", lambda d: StandInInception())
    monkeypatch.setattr(networks, "load_lpips", lambda d: networks.lpips_from_alexnet_state(alexnet))
    archive = tmp_path / "APDrawingDB.zip"
    make_apdrawing_zip(archive, n_train=1, n_test=6, side=32)
    apdrawing.extract(archive, tmp_path / "raw")
    manifest = apdrawing.prepare(tmp_path / "raw", tmp_path / "data", {"size": 32, "expected": None})
    test = manifest[manifest.split == "test"]
    rng = np.random.default_rng(1)
    samples = tmp_path / "samples" / "apdrawing_pix2pix" / "0" / "Style1"
    dsmap = tmp_path / "released" / "dsmap"
    samples.mkdir(parents=True)
    dsmap.mkdir(parents=True)
    for r in test.itertuples():
        gt = np.asarray(Image.open(tmp_path / "data" / r.sketch))
        noisy = np.clip(gt.astype(int) + rng.integers(-80, 80, gt.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(samples / f"{r.id}.png")
        Image.fromarray(gt).save(dsmap / f"{r.id}_fake_B.png")  # a released result that is the ground truth
    metrics = {**cfg["metrics"], "names": ["FID", "LPIPS"], "framing": "aligned", "bootstrap": 2,
               "allow_missing": False}
    files = [tmp_path / "m" / "apdrawing_pix2pix.parquet", tmp_path / "m" / "released_dsmap.parquet"]
    score_variant({"variant": "apdrawing_pix2pix", "metrics": metrics}, tmp_path / "data" / "manifest.parquet",
                  [samples], files[0], tmp_path / "w", device="cpu")
    evaluate_folder(dsmap, tmp_path / "data" / "manifest.parquet", files[1], metrics, tmp_path / "w",
                    framing="aligned", label="released:apdrawing_dsmap", device="cpu", index=apdrawing.index_by_stem)

    c = _configured(cfg, archive, tmp_path / "released")
    spec = apdrawing.table_spec(table_spec(c, {}), c)
    long = build_long(spec, load_metrics(files))
    t4 = long[(long.table == "hida_table4_apdrawing") & (long["style"] == "all")].set_index(["label", "metric"])
    assert t4.loc[("Pix2Pix", "FID"), "paper"] == 80.11 and t4.loc[("HIDA", "LPIPS"), "paper"] == 0.194
    for metric in ("FID", "LPIPS"):
        assert np.isfinite(t4.loc[("Pix2Pix", metric), "ours"]) and t4.loc[("Pix2Pix", metric), "ours"] > 0
        assert t4.loc[("Pix2Pix", metric), "n_images"] == 6
    # the ground truth scored against itself: LPIPS exactly 0, FID 0 up to the matrix square root
    assert t4.loc[("DSMAP", "LPIPS"), "ours"] == pytest.approx(0.0, abs=1e-6)
    assert t4.loc[("DSMAP", "FID"), "ours"] == pytest.approx(0.0, abs=1e-3)
    assert "released results not found at" in t4.loc[("TUNIT", "FID"), "reason"]
    assert str(tmp_path / "released" / "tunit") in t4.loc[("TUNIT", "FID"), "reason"]
    assert np.isnan(t4.loc[("HIDA", "FID"), "ours"]) and t4.loc[("HIDA", "FID"), "reason"] == "no results"


def test_table4_apdrawing_rows_say_which_file_is_missing(cfg, tmp_path, monkeypatch):
    from facesketch.report.tables import build_long, load_metrics, table_spec

    monkeypatch.delenv("APDRAWING_ARCHIVE", raising=False)
    for c, words in ((cfg, "APDrawingDB.zip is not configured"),
                     (_configured(cfg, tmp_path / "gone.zip", tmp_path), f"APDrawingDB.zip not found at {tmp_path}")):
        spec = apdrawing.table_spec(table_spec(c, {}), c)
        long = build_long(spec, load_metrics([]))
        t4 = long[(long.table == "hida_table4_apdrawing") & (long["style"] == "all")]
        assert len(t4.label.unique()) == 6 and t4.ours.isna().all()
        for label in ("Pix2Pix", "Pix2PixHD", "HIDA", "DSMAP", "TUNIT", "U2-Net"):
            reason = t4[t4.label == label].reason.iloc[0]
            assert words in reason and "apdrawing.archive" in reason and apdrawing.URL in reason, (label, reason)


def test_hida_without_style_drops_exactly_the_style_condition_weights(cfg):
    """APDrawing's HIDA differs from FS2K's only in the condition of DySPADE/InfoACON: no 3 style maps.

    Derived from HIDA's layer list (REFERENCE, ngf 64): at 512x512 there are 9 down layers and 8 up
    layers whose outputs are 512, 512, 512, 512, 512, 256, 128, 64; each up layer's condition branch
    starts with a 3x3 convolution over the condition maps, which loses 3 input channels."""
    from facesketch.models.registry import build_generator

    def count(spec):
        return sum(p.numel() for p in build_generator(spec).parameters())

    widths = [512] * 5 + [256, 128, 64]
    fs2k_at_512 = dict(cfg["resolved"]["hida_full"], input=cfg["resolved"]["apdrawing_hida_full"]["input"])
    assert count(fs2k_at_512) - count(cfg["resolved"]["apdrawing_hida_full"]) == sum(3 * 3 * 3 * w for w in widths)
