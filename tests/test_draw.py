"""`facesketch draw`: reading odd photos, framing faces as FS2K does, every family's checkpoint,
scenes, and the CLI's per-file failures. Tests with real faces use $FACESKETCH_WILD (a folder of
portrait photos, e.g. the 39 in the shared data) and skip without it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from facesketch.config import demo_config_path, load_config, resolve_variant
from facesketch.draw import faces, scene
from facesketch.draw.photos import list_photos, read_photo
from facesketch.draw.run import Drawer, DrawOptions, Prepared, draw, unique_names
from facesketch.errors import DataError
from facesketch.maps.run import CANONICAL_BOXES
from facesketch.models import registry
from facesketch.train import checkpoint as ckpt

WILD = os.environ.get("FACESKETCH_WILD")
needs_wild = pytest.mark.skipif(not (WILD and Path(WILD).is_dir()), reason="set FACESKETCH_WILD to portrait photos")


# --- tiny checkpoints of every family ---------------------------------------------------------

FAMILIES = {  # variant -> (style-aware, uses depth)
    "pix2pix": (False, False),
    "pix2pixhd": (False, False),
    "cyclegan": (False, False),
    "cyclegan_attn": (False, False),
    "hida_full": (True, True),
}


def tiny_spec(variant: str) -> dict:
    cfg = load_config(["config.yaml", demo_config_path()])
    spec = resolve_variant(cfg, variant)
    spec["input"] = {"image": 60, "pad": 2, "crop": 64}
    spec["generator"]["ngf"] = 8
    if "n_blocks" in spec["generator"]:
        spec["generator"]["n_blocks"] = 2
    return spec


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    out = {}
    torch.manual_seed(0)
    for v in FAMILIES:
        spec = tiny_spec(v)
        nets = registry.build(spec)
        path = root / f"{v}.pt"
        ckpt.save(path, {"spec": json.dumps(spec, sort_keys=True),
                         "generators": {k: n.state_dict() for k, n in nets.items() if k.startswith("G")}})
        out[v] = path
    return out


@pytest.mark.parametrize("variant", list(FAMILIES))
def test_every_family_draws_an_aligned_face(checkpoints, variant):
    """Style-less models draw once, HIDA once per style (and the styles differ); 250x250 out."""
    styled, depth = FAMILIES[variant]
    drawer = Drawer(checkpoints[variant], DrawOptions(device="cpu"))
    assert (drawer.styled, drawer.with_depth) == (styled, depth)
    rng = np.random.default_rng(0)
    items = [Prepared(None, f"p{i}", rng.integers(0, 256, (250, 250, 3), dtype=np.uint8),
                      depth=rng.random((250, 250)).astype(np.float32) if depth else None) for i in range(2)]
    out = drawer.draw_faces(items)
    assert list(out) == (["Style1", "Style2", "Style3"] if styled else ["sketch"])
    for sketches in out.values():
        assert sketches.shape == (2, 250, 250) and sketches.dtype == np.uint8
    if styled:
        assert not np.array_equal(out["Style1"], out["Style3"])


# --- framing ------------------------------------------------------------------------------------

def test_framing_puts_the_face_box_where_fs2k_faces_sit():
    """A marker rectangle at the 'face box' of a big off-centre canvas lands on photo1's
    canonical box (48, 57, 202, 210) of the 250x250 aligned frame."""
    canvas = np.full((900, 1400, 3), 200, np.uint8)
    box = (900.0, 60.0, 1208.0, 366.0)  # 308 x 306 px, near the top-right corner
    canvas[60:366, 900:1208] = 0
    sq = faces.framing_square(box)
    aligned = faces.crop_square(canvas, sq)
    dark = np.argwhere(aligned[..., 0] < 100)
    (t, l), (b, r) = dark.min(0), dark.max(0) + 1
    # scale 250 / side = (154 + 153) / (308 + 306) = 0.5, so the box comes out 154 x 153
    np.testing.assert_allclose([l, t, r, b], CANONICAL_BOXES["photo1"], atol=1.5)
    # the square reaches past the canvas' top: those rows repeat the border, not black
    assert sq.y0 < 0 and aligned[0, 125, 0] == 200


def test_paste_back_inverts_the_framing():
    photo = np.full((400, 600, 3), 255, np.uint8)
    sq = faces.Square(100.0, 50.0, 300.0)
    sketch = np.zeros((250, 250), np.uint8)
    out = faces.paste_back(photo, sketch, sq)
    assert out.shape == (400, 600)
    assert out[200, 250] == 0            # centre of the square: the sketch
    assert out[10, 10] == 255 and out[200, 550] == 255   # outside: the photo (grey)


@needs_wild
def test_off_centre_face_is_detected_and_framed_like_fs2k(checkpoints):
    """A real portrait shrunk and pasted off-centre into a larger canvas comes out framed as
    FS2K's aligned photos: the detector finds its face box where photo1's boxes sit."""
    src = sorted(Path(WILD).glob("*.png"))[0]
    face = Image.open(src).convert("RGB").resize((300, 300))
    canvas = Image.new("RGB", (1200, 800), (90, 120, 90))
    canvas.paste(face, (820, 60))
    drawer = Drawer(checkpoints["pix2pix"], DrawOptions(device="cpu"))
    from facesketch.draw.photos import Photo

    item = drawer.prepare(Photo(Path("x.png"), np.asarray(canvas), canvas.size), "x")
    assert item.image.shape == (250, 250, 3)
    l, t, r, b = drawer.finder.boxes(item.image)[0]
    cl, ct, cr, cb = CANONICAL_BOXES["photo1"]
    assert abs((l + r) / 2 - (cl + cr) / 2) < 8 and abs((t + b) / 2 - (ct + cb) / 2) < 8
    assert abs((r - l) - (cr - cl)) < 15
    # and the square lies where the face was pasted
    assert 820 < item.square.x0 + item.square.side / 2 < 1120


# --- odd inputs ---------------------------------------------------------------------------------

def _pattern(w=120, h=80) -> np.ndarray:
    """Left half dark, right half light: orientation is visible."""
    a = np.full((h, w, 3), 230, np.uint8)
    a[:, : w // 2] = 20
    return a


def test_exif_rotation_is_applied(tmp_path):
    im = Image.fromarray(_pattern())
    exif = im.getexif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    im.save(tmp_path / "r.jpg", exif=exif.tobytes())
    p = read_photo(tmp_path / "r.jpg")
    assert p.image.shape == (120, 80, 3) and p.original_size == (80, 120)
    # clockwise: the dark left half becomes the top half
    assert p.image[10, 40].mean() < 60 and p.image[110, 40].mean() > 200


def test_greyscale_cmyk_and_palette_become_rgb(tmp_path):
    Image.fromarray(_pattern()[..., 0]).save(tmp_path / "g.png")
    Image.fromarray(_pattern()).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    Image.fromarray(_pattern()).convert("P").save(tmp_path / "p.png")
    for name in ("g.png", "c.jpg", "p.png"):
        p = read_photo(tmp_path / name)
        assert p.image.shape == (80, 120, 3) and p.image.dtype == np.uint8
        assert p.image[40, 10].mean() < 40 and p.image[40, 110].mean() > 210, name


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    grey = np.zeros((16, 16), np.uint16)
    grey[:, 8:] = 65535
    grey[:, 4:8] = 32896  # 32896 / 257 = 128
    Image.fromarray(grey).save(tmp_path / "g16.png")
    p = read_photo(tmp_path / "g16.png")
    assert p.image[0, 0, 0] == 0 and p.image[0, 5, 0] == 128 and p.image[0, 12, 0] == 255
    cv2 = pytest.importorskip("cv2")
    rgb = np.zeros((16, 16, 3), np.uint16)
    rgb[..., 2] = 65535  # cv2 writes BGR: red
    rgb[..., 1] = 32896
    cv2.imwrite(str(tmp_path / "c16.png"), rgb)
    p = read_photo(tmp_path / "c16.png")
    assert tuple(p.image[3, 3]) == (255, 128, 0)


def test_transparency_is_white(tmp_path):
    a = np.zeros((20, 20, 4), np.uint8)
    a[..., 3] = 0
    a[:10, :, :3] = 0
    a[:10, :, 3] = 255
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    p = read_photo(tmp_path / "a.png")
    assert tuple(p.image[5, 5]) == (0, 0, 0) and tuple(p.image[15, 5]) == (255, 255, 255)


def test_huge_images_are_shrunk_and_tiny_ones_kept(tmp_path):
    Image.fromarray(np.full((4000, 6000, 3), 128, np.uint8)).save(tmp_path / "huge.jpg", quality=70)
    p = read_photo(tmp_path / "huge.jpg", max_side=2048)
    assert max(p.image.shape[:2]) == 2048 and p.original_size == (6000, 4000)
    assert p.scale == pytest.approx(2048 / 6000, abs=1e-3)
    assert any("6000x4000" in n for n in p.notes)
    Image.fromarray(np.full((64, 64, 3), 9, np.uint8)).save(tmp_path / "tiny.png")
    assert read_photo(tmp_path / "tiny.png").image.shape == (64, 64, 3)


def test_unreadable_files_name_themselves(tmp_path):
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(DataError, match="bad.png"):
        read_photo(tmp_path / "bad.png")
    photos, problems = list_photos([tmp_path, tmp_path / "missing.jpg"])
    assert photos == [tmp_path / "bad.png"] and problems[0][0] == tmp_path / "missing.jpg"


def test_unique_names():
    assert unique_names([Path("a/x.png"), Path("b/x.jpg"), Path("c/y.png")]) == ["a_x", "b_x", "y"]


# --- scenes -------------------------------------------------------------------------------------

def test_scene_sizes_keep_the_aspect_ratio():
    assert scene.scene_size(300, 450, 256) == (171, 256)
    assert scene.padded_size(171, 256, 128) == (256, 256)
    assert scene.padded_size(300, 129, 64) == (320, 320)


def test_scene_draws_the_whole_image_undistorted(checkpoints, tmp_path):
    img = np.zeros((150, 300, 3), np.uint8)
    img[:, 150:] = 255
    Image.fromarray(img).save(tmp_path / "s.png")
    n, failed = draw([tmp_path / "s.png"], checkpoints["pix2pix"], tmp_path / "out",
                     DrawOptions(scene=True, scene_size=200, device="cpu"))
    assert (n, failed) == (1, 0)
    sketch = np.asarray(Image.open(tmp_path / "out" / "sketch" / "s.png"))
    assert sketch.shape == (100, 200)                     # 2:1 kept, not squeezed into a square
    assert np.asarray(Image.open(tmp_path / "out" / "photo" / "s.png")).shape == (100, 200, 3)
    assert (tmp_path / "out" / "sheet" / "s.png").is_file()


def test_scene_with_a_depth_model_needs_midas_and_says_where(checkpoints, tmp_path):
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(tmp_path / "s.png")
    with pytest.raises(Exception, match="midas_v21_384.pt.*github.com/isl-org/MiDaS"):
        draw([tmp_path / "s.png"], checkpoints["hida_full"], tmp_path / "out",
             DrawOptions(scene=True, device="cpu", weights_dir=tmp_path / "w"))


# --- the command on real faces and odd files together --------------------------------------------

@needs_wild
def test_draw_cli_odd_inputs_one_line_each_and_exit_code(checkpoints, tmp_path, capsys):
    from facesketch.cli import main

    src = sorted(Path(WILD).glob("*.png"))
    face = Image.open(src[0]).convert("RGB")
    d = tmp_path / "in"
    d.mkdir()
    face.save(d / "plain.png")
    exif = Image.Exif()
    exif[0x0112] = 8
    face.rotate(-90, expand=True).save(d / "rotated.jpg", exif=exif.tobytes())  # upright after EXIF
    face.convert("L").save(d / "grey.png")
    face.convert("CMYK").save(d / "cmyk.jpg")
    Image.fromarray(np.asarray(face.convert("L")).astype(np.uint16) * 257).save(d / "sixteen.png")
    alpha = np.full(face.size[::-1], 255, np.uint8)
    alpha[:60, :60] = 0
    rgba = face.convert("RGBA")
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(d / "alpha.png")
    face.resize((6000, 6000)).save(d / "huge.jpg", quality=60)
    face.resize((64, 64)).save(d / "tiny.png")
    two = Image.new("RGB", (1100, 600), (200, 200, 200))
    two.paste(face.resize((500, 500)), (20, 50))
    two.paste(Image.open(src[1]).convert("RGB").resize((300, 300)), (700, 150))
    two.save(d / "two.png")
    Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(d / "noface.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    rc = main(["draw", str(d), "--checkpoint", str(checkpoints["hida_full"]), "--out", str(tmp_path / "out"),
               "--device", "cpu", "--batch-size", "4", "--paste-back"])
    assert rc == 1
    failures = pd.read_csv(tmp_path / "out" / "failures.csv")
    assert sorted(Path(f).name for f in failures.file) == ["broken.jpg", "noface.png"]
    assert "no face" in failures.set_index(failures.file.map(lambda f: Path(f).name)).loc["noface.png", "reason"]
    drawn = pd.read_csv(tmp_path / "out" / "drawn.csv").set_index("name")
    assert set(drawn.index) == {"plain", "rotated", "grey", "cmyk", "sixteen", "alpha", "huge", "tiny", "two"}
    assert "2 faces found" in drawn.loc["two", "notes"]
    # the largest face was drawn: its box is the 500 px face on the left
    assert json.loads(drawn.loc["two", "box"])[0] < 550
    # EXIF applied: the rotated copy's face box matches the plain one's
    np.testing.assert_allclose(json.loads(drawn.loc["rotated", "box"]), json.loads(drawn.loc["plain", "box"]),
                               atol=25)
    for style in ("Style1", "Style2", "Style3"):
        assert len(list((tmp_path / "out" / style).glob("*.png"))) == 9
    assert (tmp_path / "out" / "sheet" / "huge.png").is_file()
    # pasted back into the whole (upright) photo: the photo's size, not the aligned 250
    assert Image.open(tmp_path / "out" / "pasted" / "Style2" / "two.png").size == (1100, 600)
    assert Image.open(tmp_path / "out" / "pasted" / "Style2" / "rotated.png").size == face.size


# --- MiDaS --------------------------------------------------------------------------------------

# Key names and shapes of the official midas_v21_384.pt, derived by hand from the release's
# MidasNet (ResNeXt-101 32x8d: bottleneck width = planes * 8 / 64 * 32, grouped 3x3 convs with
# 32 groups; scratch: 3x3 convs to 256 features; output head 256 -> 128 -> 32 -> 1).
OFFICIAL_MIDAS_KEYS = {
    "pretrained.layer1.0.weight": (64, 3, 7, 7),
    "pretrained.layer1.1.running_var": (64,),
    "pretrained.layer1.4.0.conv1.weight": (256, 64, 1, 1),
    "pretrained.layer1.4.0.downsample.0.weight": (256, 64, 1, 1),
    "pretrained.layer3.22.conv2.weight": (1024, 32, 3, 3),
    "pretrained.layer4.2.conv3.weight": (2048, 2048, 1, 1),
    "scratch.layer1_rn.weight": (256, 256, 3, 3),
    "scratch.layer4_rn.weight": (256, 2048, 3, 3),
    "scratch.refinenet4.resConfUnit1.conv1.weight": (256, 256, 3, 3),
    "scratch.refinenet1.resConfUnit2.conv2.bias": (256,),
    "scratch.output_conv.0.weight": (128, 256, 3, 3),
    "scratch.output_conv.2.weight": (32, 128, 3, 3),
    "scratch.output_conv.4.weight": (1, 32, 1, 1),
}


@pytest.fixture(scope="module")
def midas_file(tmp_path_factory):
    """A stand-in midas_v21_384.pt: the official keys and shapes, random values."""
    from facesketch.maps.midas import MidasNet

    torch.manual_seed(0)
    state = MidasNet().state_dict()
    path = tmp_path_factory.mktemp("weights") / "midas" / "midas_v21_384.pt"
    path.parent.mkdir()
    torch.save(state, path)
    return path


def test_midas_has_the_official_key_names_and_shapes(midas_file):
    state = torch.load(midas_file, weights_only=True)
    for key, shape in OFFICIAL_MIDAS_KEYS.items():
        assert tuple(state[key].shape) == shape, key


def test_midas_loads_strictly_and_rejects_other_files(midas_file, tmp_path):
    from facesketch.errors import WeightsError
    from facesketch.maps import midas

    torch.save({"model": torch.load(midas_file, weights_only=True), "optimizer": {}}, tmp_path / "wrapped.pt")
    midas.load_net(tmp_path / "wrapped.pt")  # the release's other layout (the plain one: the scene test)
    torch.save({"scratch.layer1_rn.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="other.pt is not MiDaS v2.1"):
        midas.load_net(tmp_path / "other.pt")
    (tmp_path / "cut.pt").write_bytes(midas_file.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="cut.pt: not a readable MiDaS checkpoint"):
        midas.load_net(tmp_path / "cut.pt")


def test_midas_input_size_follows_the_release():
    from facesketch.maps.midas import input_size

    # fit 384x384 keeping the aspect, nearest multiple of 32 (floored when it would exceed 384)
    assert input_size(480, 640) == (288, 384)
    assert input_size(1000, 1000) == (384, 384)
    assert input_size(100, 400) == (96, 384)


@pytest.mark.slow  # builds, saves and runs the full-size MiDaS (ResNeXt-101) on the CPU
def test_scene_with_hida_and_midas_depth(checkpoints, midas_file, tmp_path, monkeypatch):
    from facesketch.maps import midas, weights

    monkeypatch.setattr(weights, "verify", lambda name, path: None)  # a stand-in, not the official bytes
    img = np.random.default_rng(0).integers(0, 256, (90, 150, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "s.png")
    n, failed = draw([tmp_path / "s.png"], checkpoints["hida_full"], tmp_path / "out",
                     DrawOptions(scene=True, scene_size=100, device="cpu", weights_dir=midas_file.parent.parent))
    assert (n, failed) == (1, 0)
    for style in ("Style1", "Style2", "Style3"):
        assert np.asarray(Image.open(tmp_path / "out" / style / "s.png")).shape == (60, 100)
    d = midas.MidasDepth(midas.load_net(midas_file), "cpu")([img])[0]
    assert d.shape == (90, 150) and d.min() == 0 and d.max() == pytest.approx(1)


# --- workflow and demo configuration ----------------------------------------------------------------

def _dry_run(*extra, env_extra=None):
    import re
    import subprocess
    import sys

    from .conftest import REPO

    env = {k: v for k, v in os.environ.items() if k not in ("FACESKETCH_WILD", "FACESKETCH_SCENES")}
    env.update(FS2K_ARCHIVE="/x/FS2K.zip", **(env_extra or {}))
    r = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-n", "-p", "--configfile", "config.yaml",
                        "src/facesketch/configs/demo.yaml", *extra], cwd=REPO, env=env, capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    return dict(re.findall(r"^(\w+)\s+(\d+)$", out, re.M)), out


def test_demo_draws_wild_faces_only_when_a_folder_is_given(tmp_path):
    counts, _ = _dry_run()
    assert "draw_photos" not in counts and "draw_figure" not in counts
    scenes = tmp_path / "scenes.yaml"
    scenes.write_text(f"draw: {{scenes: {tmp_path}}}\n")
    counts, out = _dry_run(str(scenes), env_extra={"FACESKETCH_WILD": str(tmp_path / "wild photos")})
    # three demo variants x (faces, scenes), and one figure per kind
    assert counts["draw_photos"] == "6" and counts["draw_figure"] == "2"
    assert "figure10_wild_faces.png" in out and "figure11_natural_images.png" in out
    assert f"facesketch draw '{tmp_path / 'wild photos'}' --depth mediapipe --limit 6" in out
    assert f"facesketch draw {tmp_path} --depth mediapipe --scene --limit 6" in out


def test_demo_hida_settings_are_the_released_codes():
    """The demo's tuned HIDA is what `follow: code` resolves to, whatever `follow` says."""
    paper = load_config(["config.yaml", demo_config_path()], {"follow": "paper"})["resolved"]["hida_full"]
    code = load_config(["config.yaml", demo_config_path()], {"follow": "code"})["resolved"]["hida_full"]
    assert ckpt.spec_hash(paper) == ckpt.spec_hash(code)
    assert code["losses"]["gan"]["type"] == "hinge" and code["optimizer"]["type"] == "adamw"
    assert code["precision"] == "fp32"


@needs_wild
def test_draw_speed_benchmark_runs(checkpoints, tmp_path):
    import importlib.util

    from .conftest import REPO

    spec = importlib.util.spec_from_file_location("draw_speed", REPO / "bench" / "draw_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = bench.main(["--checkpoint", str(checkpoints["hida_full"]), "--photos", WILD, "--n", "3",
                      "--device", "cpu", "--workdir", str(tmp_path)])
    assert row["photos"] == 3 and row["failed"] == 0 and row["styles"] == 3
    assert row["photos_per_s"] == pytest.approx(3 / row["seconds"])
