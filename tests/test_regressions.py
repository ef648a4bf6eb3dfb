"""Regressions in the numbers the tables print (issue 11), each caught with an independently
derived expectation: by hand, by a slow reference written here, or by an invariant.

* the style index, from the training batch and the generator's input through inference and
  scoring into the table cell of that style;
* FID and LPIPS end to end on small deterministic stand-in networks placed in a weights folder,
  against the Frechet distance and LPIPS computed here from the definitions;
* DySPADE's residual forms, the DOG mask's gradient, the Gaussian pyramid's kernel, the textural
  loss's reference, the discriminator's depth input, FSIM's constants, atomic writes under a kill,
  and the order of MATLAB's resize passes.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from facesketch import STYLES
from facesketch.config import load_config

from .conftest import REPO, write_depth_blobs

# --- shared set-up -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cfg():
    return load_config(REPO / "config.yaml")


@pytest.fixture(scope="module")
def depth_maps(tiny_prepared) -> Path:
    """Smooth depth blobs for every pair of the tiny data set, each a little different."""
    return write_depth_blobs(tiny_prepared, "maps_regressions", (30, 28), (7, 3), 800.0)


def small(spec: dict, image: int = 60, pad: int = 2, crop: int = 64) -> dict:
    s = copy.deepcopy(spec)
    s.update(input={"image": image, "pad": pad, "crop": crop}, batch_size=2, precision="fp32", compile=False,
             schedule={"epochs": 1, "decay_epochs": 0}, max_steps_per_epoch=1)
    s["generator"] = dict(s["generator"], ngf=8)
    s["discriminator"] = dict(s.get("discriminator", {}), ndf=8)
    for key in ("vgg", "edge", "normal"):
        if s["losses"].get(key):
            s["losses"][key] = 0.0
    return s


# --- stand-in networks for FID and LPIPS, through the weights folder -----------------------------

FID_DIM = 2  # full-rank covariances from three images per style


class TinyInception(nn.Module):
    """Stands in for pytorch-fid's InceptionV3: it takes its weights the way InceptionV3 does
    (pytorch_fid.inception.load_state_dict_from_url, which facesketch points at the verified
    file) and maps images in [0, 1] to tanh(W . (2x2 block means of the 3 channels) + b)."""

    BLOCK_INDEX_BY_DIM = {2048: 3}

    def __init__(self, output_blocks=None, **kwargs):
        super().__init__()
        import pytorch_fid.inception as inception

        self.proj = nn.Linear(12, FID_DIM)
        self.load_state_dict(inception.load_state_dict_from_url("stand-in", progress=False))

    def forward(self, x):
        v = F.adaptive_avg_pool2d(x, 2).flatten(1)
        return [torch.tanh(self.proj(v))[:, :, None, None]]


def fid_stand_in_state() -> dict:
    g = torch.Generator().manual_seed(11)
    w = torch.randn(FID_DIM, 12, generator=g) * 4
    return {"proj.weight": w, "proj.bias": -0.7 * w.sum(1)}  # centred near the images' mean brightness


def alexnet_stand_in_state() -> dict:
    """torchvision AlexNet's feature keys and shapes, deterministic He-scaled values."""
    g = torch.Generator().manual_seed(5)
    shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3),
              10: (256, 256, 3, 3)}
    state = {}
    for i, shp in shapes.items():
        fan_in = shp[1] * shp[2] * shp[3]
        state[f"features.{i}.weight"] = torch.randn(*shp, generator=g) * math.sqrt(2.0 / fan_in)
        state[f"features.{i}.bias"] = torch.randn(shp[0], generator=g) * 0.05
    return state


@pytest.fixture
def stand_in_weights(tmp_path, monkeypatch) -> Path:
    """A weights folder holding the two stand-ins under the registry's file names, registered
    with their own SHA-256 (the real files' hashes cannot match)."""
    import pytorch_fid.inception as inception

    from facesketch.maps import weights

    wdir = tmp_path / "weights"
    for name, state in (("fid_inception", fid_stand_in_state()), ("lpips_alexnet", alexnet_stand_in_state())):
        w = weights.REGISTRY[name]
        path = wdir / w.folder / w.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        monkeypatch.setitem(weights.REGISTRY, name, dataclasses.replace(w, sha256=digest, sha256_prefix=None,
                                                                        size=None))
    monkeypatch.setattr(inception, "InceptionV3", TinyInception)
    return wdir


def fid_features_here(grey_u8: np.ndarray) -> np.ndarray:
    """The stand-in's features by hand: pytorch-fid's input is the image in [0, 1], grey repeated."""
    s = fid_stand_in_state()
    h, w = grey_u8.shape
    blocks = (grey_u8.astype(np.float64) / 255.0).reshape(2, h // 2, 2, w // 2).mean(axis=(1, 3)).ravel()
    v = np.tile(blocks, 3)
    return np.tanh(s["proj.weight"].double().numpy() @ v + s["proj.bias"].double().numpy())


def frechet_here(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b) - 2 sum sqrt(eig(S_a S_b)), sample covariances."""
    def stats(x):
        mu = x.mean(0)
        c = x - mu
        return mu, c.T @ c / (len(x) - 1)

    m1, s1 = stats(a)
    m2, s2 = stats(b)
    ev = np.linalg.eigvals(s1 @ s2)
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(ev.real, 0, None)).sum())


def lpips_here(res_u8: np.ndarray, gt_u8: np.ndarray) -> float:
    """LPIPS v0.1 (AlexNet, linear heads shipped by lpips) written out from its definition:
    images to [-1, 1], the scaling layer, five conv+ReLU stages (max-pools before 2 and 3),
    unit-normalised channels, squared differences weighted by the heads, spatial means, summed."""
    import lpips

    trunk = alexnet_stand_in_state()
    heads = torch.load(Path(lpips.__file__).parent / "weights/v0.1/alex.pth", map_location="cpu", weights_only=True)
    shift = torch.tensor([-0.030, -0.088, -0.188]).double().view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).double().view(1, 3, 1, 1)

    def feats(a):
        x = torch.from_numpy(a.astype(np.float64) / 127.5 - 1)[None, None].expand(1, 3, -1, -1)
        x = (x - shift) / scale
        out = []
        for i, (idx, stride, pad) in enumerate([(0, 4, 2), (3, 1, 2), (6, 1, 1), (8, 1, 1), (10, 1, 1)]):
            if i in (1, 2):
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(F.conv2d(x, trunk[f"features.{idx}.weight"].double(), trunk[f"features.{idx}.bias"].double(),
                                stride=stride, padding=pad))
            out.append(x)
        return out

    total = 0.0
    for k, (f0, f1) in enumerate(zip(feats(res_u8), feats(gt_u8))):
        n0 = f0 / (f0.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        n1 = f1 / (f1.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        w = heads[f"lin{k}.model.1.weight"].double().view(1, -1, 1, 1)
        total += float(((n0 - n1) ** 2 * w).sum(1).mean())
    return total


# --- the style index, end to end -----------------------------------------------------------------

LEVELS = (-0.4, 0.0, 0.3)  # the stand-in generator's brightness per style index


class StyleEcho(nn.Module):
    """A generator whose drawing encodes the style it was given and where each pixel sat in the
    network's frame: y = 0.3 photo_R + level[style] + 0.004 row + 0.006 col - 0.3."""

    def __init__(self):
        super().__init__()
        self.levels = nn.Parameter(torch.zeros(3))

    def forward(self, x, depth=None, style=None):
        n, _, h, w = x.shape
        rows = torch.arange(h, dtype=x.dtype).view(1, 1, h, 1)
        cols = torch.arange(w, dtype=x.dtype).view(1, 1, 1, w)
        level = (style.to(x.dtype) @ self.levels).view(n, 1, 1, 1)
        return 0.3 * x[:, :1] + level + 0.004 * rows + 0.006 * cols - 0.3


def expected_drawing(photo_rgb: np.ndarray, style: int, offset: int) -> np.ndarray:
    """What StyleEcho's sketch must be after the test framing: the photo sits at ``offset`` in the
    padded frame, the output is cropped back; uint8 as infer writes it."""
    h, w = photo_rgb.shape[:2]
    r = photo_rgb[..., 0].astype(np.float64) / 127.5 - 1
    rows = np.arange(h)[:, None] + offset
    cols = np.arange(w)[None, :] + offset
    y = np.clip(0.3 * r + LEVELS[style] + 0.004 * rows + 0.006 * cols - 0.3, -1, 1)
    return np.clip(np.round((y + 1) * 127.5), 0, 255)


def test_training_batches_carry_the_style_of_their_pair(tiny_prepared, cfg, depth_maps, tmp_path):
    from facesketch.train.data import DeviceDataset, load_split
    from facesketch.train.engine import Engine

    manifest, tensors = load_split(tiny_prepared / "manifest.parquet", depth_maps, "train", 60, True)
    styles = manifest["style"].to_numpy()
    assert set(styles) == {0, 1, 2}
    ds = DeviceDataset(tensors, torch.device("cpu"), 2, 64, True, 0)
    batch = ds.batch(torch.arange(len(ds)))
    want = np.eye(3)[styles]  # one-hot: column k is style index k
    np.testing.assert_array_equal(batch.style.numpy(), want)
    # and the generator of a training step receives that one-hot
    spec = small(cfg["resolved"]["pix2pix"])
    spec["generator"]["style_input"] = "channels"
    engine = Engine(spec, torch.device("cpu"), {})
    seen = []
    engine.nets["G"].register_forward_pre_hook(lambda m, args: seen.append(args[2].clone()))
    idx = torch.tensor([0, 1, 2, 3])
    engine.step(ds.batch(idx))
    assert seen and all(torch.equal(s, torch.from_numpy(want[idx.numpy()]).float()) for s in seen)


def test_style_index_reaches_the_table_cell_of_its_style(tiny_prepared, cfg, stand_in_weights, tmp_path,
                                                        monkeypatch):
    from facesketch.metrics.evaluate import score_variant
    from facesketch.models import registry
    from facesketch.report.tables import build_tables
    from facesketch.train import checkpoint as ckpt
    from facesketch.train.infer import infer

    spec = small(cfg["resolved"]["pix2pix"], image=64, pad=4, crop=72)  # frame: 4 px of zeros each side
    spec["generator"]["num_downs"] = 3  # 72 is no power of two; 2**3 divides it (registry.needs_depth builds G)
    spec["variant"] = "echo"
    spec["metrics"] = {"names": ["FID", "LPIPS"], "framing": "aligned", "allow_missing": False, "batch_size": 5}
    gen = StyleEcho()
    with torch.no_grad():
        gen.levels.copy_(torch.tensor(LEVELS))
    model = tmp_path / "model.pt"
    ckpt.save(model, {"spec": json.dumps(spec), "generators": {"G": gen.state_dict()}})
    monkeypatch.setattr(registry, "build", lambda s: {"G": StyleEcho(), "D": nn.Identity()})

    manifest_path = tiny_prepared / "manifest.parquet"
    manifest = pd.read_parquet(manifest_path)
    test = manifest[manifest.split == "test"].set_index("id")
    samples = tmp_path / "samples" / "echo" / "0"
    for name in STYLES:
        infer(spec, model, manifest_path, tmp_path / "maps", samples / name, name, device="cpu")
    # inference: each drawing encodes the style of its ground truth and lines up with it
    drawn = {}
    for s, name in enumerate(STYLES):
        ids = sorted(test[test["style"] == s].index)
        assert sorted(p.stem for p in (samples / name).glob("*.png")) == ids
        for i in ids:
            got = np.asarray(Image.open(samples / name / f"{i}.png").convert("L"))
            photo = np.asarray(Image.open(tiny_prepared / test.loc[i, "photo"]).convert("RGB"))
            np.testing.assert_allclose(got, expected_drawing(photo, s, offset=4), atol=1)
            drawn[i] = got

    metrics_file = tmp_path / "metrics" / "echo.parquet"
    score_variant(spec, manifest_path, [samples / n for n in STYLES], metrics_file, stand_in_weights, device="cpu")
    table_spec = {"name": "unit", "metrics": spec["metrics"], "run_variants": ["echo"], "released": {},
                  "tables": {"t": {"title": "T", "source": "here", "metrics": ["FID", "LPIPS"],
                                   "rows": [{"label": "Echo", "variant": "echo"}]}}}
    long = build_tables(table_spec, [metrics_file], tmp_path / "tables").set_index(["metric", "style"])

    gt = {i: np.asarray(Image.open(tiny_prepared / test.loc[i, "sketch"]).convert("L")) for i in test.index}
    lp = {i: lpips_here(drawn[i], gt[i]) for i in test.index}
    for scope in ("all",) + STYLES:
        ids = sorted(test.index) if scope == "all" else sorted(test[test["style"] == STYLES.index(scope)].index)
        fid = frechet_here(np.stack([fid_features_here(gt[i]) for i in ids]),
                           np.stack([fid_features_here(drawn[i]) for i in ids]))
        assert fid > 1e-3  # the drawings are not their ground truths
        assert long.loc[("FID", scope), "ours"] == pytest.approx(fid, rel=1e-4), scope
        assert long.loc[("FID", scope), "n_images"] == len(ids)
        assert long.loc[("LPIPS", scope), "ours"] == pytest.approx(np.mean([lp[i] for i in ids]), rel=1e-4), scope
    md = (tmp_path / "tables" / "t.md").read_text()
    assert f"{long.loc[('FID', 'all'), 'ours']:.2f}" in md.split("Style1")[0]  # the all-styles section


# --- the networks' layers ------------------------------------------------------------------------


def _instance_norm_here(x: torch.Tensor) -> torch.Tensor:
    mu = x.mean(dim=(2, 3), keepdim=True)
    var = ((x - mu) ** 2).mean(dim=(2, 3), keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5)


@pytest.mark.parametrize("residual", ["paper", "code"])
def test_dyspade_residual_forms_match_their_equations(residual):
    """Paper (Eq. 4): out = H + IN(F)(1 + gamma) + beta; released code: out = IN(F)(1 + gamma) + beta + F,
    with F = ReLU(H). The condition heads are set to constants gamma = 0.5, beta = -0.25."""
    from facesketch.models.layers import IDAUp

    torch.manual_seed(0)
    layer = IDAUp(4, 3, norm="dyspade", act="relu", depth=True, residual=residual).double().eval()
    with torch.no_grad():
        for name, conv in layer.condition.heads.items():
            conv.weight.zero_()
            conv.bias.fill_({"gamma": 0.5, "beta": -0.25}[name])
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    depth = torch.rand(2, 1, 10, 10, dtype=torch.float64)
    h = layer.up(x)  # H: the up-sampled feature the equations start from
    f = torch.relu(h)
    k = _instance_norm_here(f) * 1.5 - 0.25
    want = h + k if residual == "paper" else k + f
    torch.testing.assert_close(layer(x, depth=depth), want, rtol=1e-9, atol=1e-9)


def test_dog_mask_logits_receive_their_true_gradient():
    """The modulation mask must learn: autograd's gradient for a mask logit's bias equals the
    finite difference of the output (a detached mask gives zero).

    The deformable convolution runs in fp32 whatever the layer's dtype (as torchvision's CUDA
    autocast runs it), so the step is sized for fp32 outputs: with zero offset weights the output
    is A sigmoid(b) + C, whose central difference is off by eps^2 / 12 (relative) = 8e-6 at
    eps = 1e-2, and the fp32 rounding of the outputs moves it by about 2e-5; a step of 1e-6 would
    measure rounding only."""
    from facesketch.models.layers import DOGUpsample

    torch.manual_seed(1)
    dog = DOGUpsample(4, 3).double()
    x = torch.randn(1, 4, 4, 4, dtype=torch.float64)
    n = dog.groups * dog.k * dog.k
    j = 2 * n + 4  # the centre tap's mask logit of group 0
    weight_out = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    (dog(x) * weight_out).sum().backward()
    grad = dog.offset.bias.grad[j].item()
    eps = 1e-2
    with torch.no_grad():
        dog.offset.bias[j] += eps
        up = (dog(x) * weight_out).sum().item()
        dog.offset.bias[j] -= 2 * eps
        down = (dog(x) * weight_out).sum().item()
    numeric = (up - down) / (2 * eps)
    assert abs(numeric) > 1e-3
    assert grad == pytest.approx(numeric, rel=2e-4)


def test_gaussian_depth_pyramid_uses_the_binomial_kernel():
    """One pyramid level by hand: replicate padding, 5-tap binomial [1 4 6 4 1]/16 in each
    direction, every second pixel from the first."""
    from facesketch.models.layers import gaussian_downsample

    rng = np.random.default_rng(0)
    x = rng.random((8, 8))
    k = np.array([1, 4, 6, 4, 1]) / 16
    padded = np.pad(x, 2, mode="edge")
    blurred = np.array([[sum(k[a] * k[b] * padded[r + a, c + b] for a in range(5) for b in range(5))
                         for c in range(8)] for r in range(8)])
    got = gaussian_downsample(torch.from_numpy(x)[None, None], 4)[0, 0].numpy()
    np.testing.assert_allclose(got, blurred[::2, ::2], rtol=1e-12)
    two = gaussian_downsample(torch.from_numpy(x)[None, None], 2)[0, 0].numpy()
    p2 = np.pad(blurred[::2, ::2], 2, mode="edge")
    want2 = np.array([[sum(k[a] * k[b] * p2[r + a, c + b] for a in range(5) for b in range(5)) for c in range(4)]
                      for r in range(4)])[::2, ::2]
    np.testing.assert_allclose(two, want2, rtol=1e-12)


# --- losses and what the discriminator sees ------------------------------------------------------


def _sobel_cosine_here(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean over pixels of 1 - cos between the Sobel gradient vectors (replicate borders)."""
    def grads(a):
        p = np.pad(a, 1, mode="edge")
        gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
        gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
        return gx, gy

    px, py = grads(pred)
    rx, ry = grads(ref)
    cos = (px * rx + py * ry) / (np.hypot(px, py) * np.hypot(rx, ry) + 1e-6)
    return float((1 - cos).mean())


def test_textural_loss_compares_with_the_ground_truth_sketch(tiny_prepared, cfg, depth_maps, tmp_path):
    """Paper mode (sobel_target): the generator's sketch against the ground-truth sketch."""
    from facesketch.train.data import DeviceDataset, load_split
    from facesketch.train.engine import Engine

    spec = small(cfg["resolved"]["pix2pix"])
    spec["losses"]["textural"] = {"weight": 2.0, "mode": "sobel_target"}
    torch.manual_seed(0)
    engine = Engine(spec, torch.device("cpu"), {})
    fakes = []
    engine.nets["G"].register_forward_hook(lambda m, args, out: fakes.append(out.detach().clone()))
    _, tensors = load_split(tiny_prepared / "manifest.parquet", None, "train", 60, False)
    batch = DeviceDataset(tensors, torch.device("cpu"), 2, 64, True, 0).batch(torch.tensor([0, 5]))
    losses = engine.step(batch)
    want = np.mean([_sobel_cosine_here(fakes[0][i, 0].double().numpy(), batch.sketch[i, 0].double().numpy())
                    for i in range(2)])
    assert losses["G_textural"].item() == pytest.approx(2.0 * want, rel=1e-4)


def test_discriminator_sees_the_ground_truth_depth(tiny_prepared, cfg, depth_maps, tmp_path):
    from facesketch.train.data import DeviceDataset, load_split
    from facesketch.train.engine import Engine

    spec = small(cfg["resolved"]["hida_full"])
    assert spec["discriminator"]["inputs"][0] == "depth"
    torch.manual_seed(0)
    engine = Engine(spec, torch.device("cpu"), {})
    seen = []
    engine.nets["D"].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    _, tensors = load_split(tiny_prepared / "manifest.parquet", depth_maps, "train", 60, True)
    batch = DeviceDataset(tensors, torch.device("cpu"), 2, 64, True, 0).batch(torch.tensor([1, 2]))
    engine.step(batch)
    assert len(seen) >= 3  # real, detached fake, fake
    for d_in in seen:
        assert torch.equal(d_in[:, :1], batch.depth)


# --- inference framing ---------------------------------------------------------------------------


def test_inference_framing_puts_each_pixel_back_where_it_was():
    """Photo 60x60 padded to the 64 crop (2 px each side); an identity network's output cropped
    back is the photo itself, pixel for pixel."""
    from facesketch.train.infer import network_inputs, network_outputs

    spec = {"input": {"image": 60, "crop": 64}}
    photo = torch.randint(0, 256, (1, 3, 60, 60), dtype=torch.uint8)
    photo[:, 1:] = photo[:, :1]  # grey, so the grey conversion is the identity
    x, _ = network_inputs(photo, None, spec)
    assert torch.all(x[..., :2, :] == -1) and torch.all(x[..., :, -2:] == -1)
    torch.testing.assert_close(x[..., 2:62, 2:62], photo.float() / 127.5 - 1)
    y = network_outputs(x[:, :1], spec, 60)
    torch.testing.assert_close(y, photo[:, :1].float() / 127.5 - 1)


# --- FSIM's constants ----------------------------------------------------------------------------


def test_fsim_constants_on_low_contrast_images():
    """On smooth, low-contrast images the similarity terms are dominated by T1 (phase congruency)
    and T2 (gradient magnitude), so a changed constant moves the value; piq is the reference."""
    import piq

    from facesketch.metrics import similarity

    yy, xx = np.mgrid[0:48, 0:64]
    a = 120 + 6 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    b = 120 + 6 * np.sin(xx / 5.0 + 0.6) * np.cos(yy / 6.0)
    ours = similarity.fsim(a[None].astype(np.float32), b[None].astype(np.float32))
    theirs = piq.fsim(torch.from_numpy(a[None, None]).float(), torch.from_numpy(b[None, None]).float(),
                      data_range=255.0, reduction="none", chromatic=False).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=2e-6, atol=0)


# --- atomic writes under a kill ------------------------------------------------------------------

KILL_AT_RENAME = """
import os, signal, sys
import numpy as np
from facesketch import fileio
os.replace = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # dies between write and rename
kind, path = sys.argv[1], sys.argv[2]
if kind == "text":
    fileio.write_text(path, "complete")
elif kind == "json":
    fileio.write_json(path, {"a": 1})
elif kind == "parquet":
    import pandas as pd
    fileio.write_parquet(path, pd.DataFrame({"a": [1]}))
elif kind == "image":
    fileio.save_image(path, np.zeros((4, 4), np.uint8))
else:
    import torch
    from facesketch.train import checkpoint
    checkpoint.save(path, {"w": torch.zeros(2)})
print("returned", flush=True)
"""


@pytest.mark.parametrize("kind,name", [("text", "t.md"), ("json", "m.json"), ("parquet", "v.parquet"),
                                       ("image", "s.png"), ("checkpoint", "last.pt")])
def test_a_kill_between_write_and_rename_leaves_no_final_file(tmp_path, kind, name):
    target = tmp_path / "out" / name
    target.parent.mkdir()  # so a direct write to the final name would succeed
    import facesketch

    # the child imports the facesketch this test imports (a mutation tester's copy included)
    env = dict(os.environ, PYTHONPATH=str(Path(facesketch.__file__).parents[1]))
    r = subprocess.run([sys.executable, "-c", KILL_AT_RENAME, kind, str(target)], capture_output=True, text=True,
                       env=env)
    assert not target.exists()
    assert r.returncode == -9, r.stderr[-2000:]
    assert "returned" not in r.stdout


# --- MATLAB resize: pass order -------------------------------------------------------------------


def _keys_cubic(x):
    ax = np.abs(x)
    return np.where(ax <= 1, 1.5 * ax ** 3 - 2.5 * ax ** 2 + 1,
                    np.where(ax <= 2, -0.5 * ax ** 3 + 2.5 * ax ** 2 - 4 * ax + 2, 0.0))


def _resize_1d_here(v: np.ndarray, out_len: int) -> np.ndarray:
    """MATLAB imresize along one axis, one output at a time: bicubic (a = -0.5), antialiased
    when shrinking (kernel stretched by 1/scale), symmetric borders, weights normalised."""
    n = len(v)
    scale = out_len / n
    width = 4.0 / scale if scale < 1 else 4.0
    out = np.empty(out_len)
    for i in range(out_len):
        u = (i + 1) / scale + 0.5 * (1 - 1 / scale)  # 1-based centre in the input
        left = math.floor(u - width / 2)
        taps = range(left, left + math.ceil(width) + 2 + 1)
        ws, vals = [], []
        for t in taps:
            d = u - t
            w = scale * _keys_cubic(scale * d) if scale < 1 else _keys_cubic(d)
            j = t - 1
            while j < 0 or j >= n:  # symmetric padding
                j = -j - 1 if j < 0 else 2 * n - j - 1
            ws.append(w)
            vals.append(v[j])
        ws = np.array(ws)
        out[i] = (ws / ws.sum()) @ np.array(vals, dtype=np.float64)
    return out


@pytest.mark.parametrize("shape, out_h, out_w", [
    ((9, 7), 4, 13),  # rows shrink (scale 4/9), columns grow (13/7): rows first
    ((4, 9), 3, 5),   # both shrink, columns more (5/9 < 3/4): columns first
])
def test_resize_passes_run_in_matlabs_order(shape, out_h, out_w):
    """imresize resizes the dimension with the smaller scale first and rounds a uint8 image
    between the passes, so the order shows in the result."""
    from facesketch.metrics import protocol

    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, shape).astype(np.uint8)

    def rows_then_cols(a):
        a = np.stack([_resize_1d_here(a[:, c].astype(np.float64), out_h) for c in range(a.shape[1])], 1)
        a = np.clip(np.round(a), 0, 255)
        a = np.stack([_resize_1d_here(a[r], out_w) for r in range(a.shape[0])], 0)
        return np.clip(np.round(a), 0, 255)

    def cols_then_rows(a):
        a = np.stack([_resize_1d_here(a[r].astype(np.float64), out_w) for r in range(a.shape[0])], 0)
        a = np.clip(np.round(a), 0, 255)
        a = np.stack([_resize_1d_here(a[:, c], out_h) for c in range(a.shape[1])], 1)
        return np.clip(np.round(a), 0, 255)

    first_rows = out_h / shape[0] <= out_w / shape[1]
    want = rows_then_cols(img) if first_rows else cols_then_rows(img)
    other = cols_then_rows(img) if first_rows else rows_then_cols(img)
    assert not np.array_equal(want, other)  # the order matters for this image
    np.testing.assert_array_equal(protocol.imresize(img, out_h, out_w), want)
    np.testing.assert_array_equal(protocol.imresize(img.T.copy(), out_w, out_h), want.T)


# --- found by mutation testing ---------------------------------------------------------------------


def test_feature_matching_by_hand():
    """Pix2PixHD: for each of S scales, the L1 between real and fake features of every layer but
    the logits, each weighted 4 / (layers - 1), the sum divided by S. Two scales, three layers
    plus logits, values chosen so every term differs."""
    from facesketch.train import losses as L

    real = [[torch.full((1, 2, 4, 4), 1.0), torch.full((1, 3, 2, 2), 2.0), torch.full((1, 1, 2, 2), 4.0),
             torch.zeros(1, 1)],
            [torch.full((1, 2, 2, 2), 0.5), torch.full((1, 3, 1, 1), -1.0), torch.full((1, 1, 1, 1), 3.0),
             torch.zeros(1, 1)]]
    fake = [[torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 2, 2), torch.full((1, 1), 9.0)],
            [torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 1, 1), torch.zeros(1, 1, 1, 1), torch.full((1, 1), 9.0)]]
    want = (4 / 3 * (1.0 + 2.0 + 4.0) + 4 / 3 * (0.5 + 1.0 + 3.0)) / 2
    assert L.feature_matching(real, fake).item() == pytest.approx(want, rel=1e-6)


def test_attribute_breakdown_has_one_schema_empty_or_not(tiny_prepared):
    from facesketch.report.tables import attribute_breakdown

    manifest = pd.read_parquet(tiny_prepared / "manifest.parquet")
    test = manifest[manifest.split == "test"]
    rows = [dict(variant="v", seed=0, style_asked="Style1", style_gt="Style1", image_id=r.id, metric="SSIM",
                 value=0.5, scope="image", n_images=1, reason="") for r in test.itertuples()]
    full = attribute_breakdown(pd.DataFrame(rows), manifest)
    empty = attribute_breakdown(pd.DataFrame(rows).assign(value=np.nan), manifest)
    assert len(full) and empty.empty
    assert list(empty.columns) == list(full.columns)


def test_attributes_markdown_is_the_breakdown_as_a_table():
    """Parse the markdown back: header codes, separator, one row per method, each cell the mean
    and count of that code, a dash where the method has no image with the code. Header cells
    name the attribute and what its code means (FS2K's README: gender 0 male, 1 female; smile
    1 without smile)."""
    from facesketch.report.tables import ATTRIBUTE_CODES, ATTRIBUTES, attributes_markdown

    df = pd.DataFrame([
        dict(variant="a", attribute="gender", code=0, metric="SSIM", mean=0.25, n_images=3),
        dict(variant="a", attribute="gender", code=1, metric="SSIM", mean=0.5, n_images=2),
        dict(variant="b", attribute="gender", code=1, metric="SSIM", mean=0.75, n_images=4),
        dict(variant="b", attribute="smile", code=1, metric="SSIM", mean=0.125, n_images=1),
    ])
    md = attributes_markdown(df)
    rows = [line for line in md.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in rows]
    codes = [(a, c) for a in ATTRIBUTES for c in sorted(df[df.attribute == a].code.unique())]
    assert codes == [("gender", 0), ("gender", 1), ("smile", 1)]
    assert [ATTRIBUTE_CODES[a][c] for a, c in codes] == ["male", "female", "not smiling"]  # FS2K's meanings
    cols = [f"{a}: {ATTRIBUTE_CODES[a][c]}" for a, c in codes]
    assert cells[0] == ["method"] + cols
    assert rows[1] == "|---|" + "---|" * len(cols)
    assert cells[2] == ["a", "0.250 (n=3)", "0.500 (n=2)", "—"]
    assert cells[3] == ["b", "—", "0.750 (n=4)", "0.125 (n=1)"]
    assert len(rows) == 4 and "#### SSIM" in md
    assert "No per-image metrics in this run." in attributes_markdown(df.iloc[:0])


def test_index_results_takes_only_images_named_by_fs2k_id(tmp_path):
    from facesketch.metrics.evaluate import index_results

    want = {"photo1_image0001": "photo1_image0001.png", "photo1_image0002": "photo1/image0002.jpeg",
            "photo2_image0003": "sketch2/sketch0003.bmp", "photo3_image0004": "photo3_image0004.JPG"}
    decoys = ["notes.png", "readme_image.png", "photo_cover.png", "photo2/notes.png", "sketch1/cover.png",
              "other/sketch0009.png", "photo1_image0005.txt"]
    for rel in list(want.values()) + decoys:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "photo1_image0006.png").mkdir()  # a folder, not an image
    found = index_results(tmp_path)
    assert {k: v.relative_to(tmp_path).as_posix() for k, v in found.items()} == want


def test_evaluate_folder_defaults_missing_results_and_bad_folders(tiny_prepared, tmp_path, caplog):
    """Released results cover the original photo (the default framing); a photo without a result
    is scored as missing and counted in the warning; a wrong folder is a one-line error."""
    import logging

    from facesketch.errors import DataError
    from facesketch.metrics.evaluate import evaluate_folder

    manifest = pd.read_parquet(tiny_prepared / "manifest.parquet")
    test = manifest[manifest.split == "test"]
    for r in test.iloc[1:].itertuples():
        full = np.asarray(Image.open(r.sketch_source).convert("L"))
        (tmp_path / "res").mkdir(exist_ok=True)
        Image.fromarray(full).save(tmp_path / "res" / f"{r.id}.png")
    metrics = {"names": ["SSIM"], "framing": "aligned"}
    with caplog.at_level(logging.WARNING, logger="facesketch.metrics.evaluate"):
        df = evaluate_folder(tmp_path / "res", tiny_prepared / "manifest.parquet", tmp_path / "o.parquet", metrics,
                             tmp_path, device="cpu")
    assert f"res: 1 of {len(test)} test images have no result" in caplog.text
    missing = df[df.image_id == test.iloc[0].id]
    assert missing.value.isna().all() and missing.reason.str.contains("no result image").all()
    assert df[df.image_id != test.iloc[0].id].value.min() > 0.9  # whole-photo results, cropped with our box
    for framing, same in (("original", True), ("aligned", False)):
        other = evaluate_folder(tmp_path / "res", tiny_prepared / "manifest.parquet", tmp_path / "f.parquet",
                                metrics, tmp_path, framing=framing, device="cpu")
        assert np.array_equal(other.value.to_numpy(), df.value.to_numpy(), equal_nan=True) == same, framing
    with pytest.raises(DataError, match="results folder not found: .*nowhere"):
        evaluate_folder(tmp_path / "nowhere", tiny_prepared / "manifest.parquet", tmp_path / "o.parquet", metrics,
                        tmp_path, device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no images named by FS2K id"):
        evaluate_folder(tmp_path / "empty", tiny_prepared / "manifest.parquet", tmp_path / "o.parquet", metrics,
                        tmp_path, device="cpu")
