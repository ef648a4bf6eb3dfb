"""Metrics under the FS2K protocol, checked against their definitions computed by hand here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from facesketch.metrics import protocol, scoot, similarity
from facesketch.metrics.fid import fid_from_features

from .conftest import StandInInception

# --- SCOOT --------------------------------------------------------------------------------------


@pytest.mark.parametrize("grey, level", [(0, 0), (42, 0), (43, 1), (84, 1), (85, 2), (127, 2), (128, 3),
                                         (169, 3), (170, 4), (212, 4), (213, 5), (255, 5)])
def test_quantisation_boundaries(grey, level):
    assert scoot.quantise(np.array([[grey]]))[0, 0] == level


def test_blocks_use_floor_bounds():
    ids = scoot.block_ids(10, 7)  # rows split 0-1 | 2-4 | 5-6 | 7-9; cols 0 | 1-2 | 3-4 | 5-6
    assert list(ids[:, 0]) == [0, 0, 4, 4, 4, 8, 8, 12, 12, 12]
    assert list(ids[0]) == [0, 1, 1, 2, 2, 3, 3]


def _scoot_by_hand(gt: np.ndarray, syn: np.ndarray) -> float:
    """The definition, written out with loops (independent of the vectorised implementation)."""

    def vec(img):
        h, w = img.shape
        lv = [[min(5, int(img[r, c]) * 6 // 255) for c in range(w)] for r in range(h)]
        rb = [h * v // 4 for v in range(5)]
        cb = [w * v // 4 for v in range(5)]
        out = []
        for bi in range(4):
            for bj in range(4):
                m = np.zeros((6, 6))
                for dr, dc in ((0, 1), (-1, 1), (-1, 0), (-1, -1)):
                    for r in range(rb[bi], rb[bi + 1]):
                        for c in range(cb[bj], cb[bj + 1]):
                            r2, c2 = r + dr, c + dc
                            if rb[bi] <= r2 < rb[bi + 1] and cb[bj] <= c2 < cb[bj + 1]:
                                m[lv[r][c], lv[r2][c2]] += 1
                m = np.floor(m / 4 + 0.5)
                p = m / m.sum() if m.sum() else m
                contrast = sum((i - j) ** 2 * p[i, j] for i in range(6) for j in range(6))
                energy = sum(p[i, j] ** 2 for i in range(6) for j in range(6))
                out += [contrast, energy]
        return np.array(out)

    return 1.0 / (1.0 + np.sqrt(((vec(gt) - vec(syn)) ** 2).sum()))


def test_scoot_equals_the_definition_on_small_images():
    rng = np.random.default_rng(0)
    for shape in ((9, 11), (16, 16), (13, 8)):
        a = rng.integers(0, 256, shape).astype(np.uint8)
        b = np.clip(a.astype(int) + rng.integers(-60, 60, shape), 0, 255).astype(np.uint8)
        assert scoot.scoot(b, a) == pytest.approx(_scoot_by_hand(a, b), abs=1e-12)


def test_scoot_hand_computed_value():
    # 8x8: left half 0, right half 255 -> in each 2x2 block all four offsets stay within one level
    a = np.zeros((8, 8), np.uint8)
    a[:, 4:] = 255
    b = np.zeros((8, 8), np.uint8)  # all black
    # every block of either image: all counts on one diagonal cell -> contrast 0, energy 1
    assert scoot.features(a).tolist() == [0.0, 1.0] * 16
    assert scoot.scoot(b, a) == 1.0
    # a checkerboard block: horizontal and vertical pairs differ (level 0 vs 5), diagonals agree
    c = np.indices((8, 8)).sum(0) % 2 * 255
    f = scoot.features(c.astype(np.uint8))
    # per 2x2 block: (0,1) gives [0,5] and [5,0]; (-1,1) gives [5,5]; (-1,0) gives [5,0] and [0,5];
    # (-1,-1) gives [0,0]. Sums [0,5]=2, [5,0]=2, [5,5]=1, [0,0]=1; /4 = 0.5, 0.5, 0.25, 0.25; rounded
    # half up: 1, 1, 0, 0 -> p = 1/2 on [0,5] and [5,0]: contrast 25, energy 1/2
    assert f[0] == pytest.approx(25.0) and f[1] == pytest.approx(0.5)


def test_scoot_identity_and_size_check():
    a = np.random.default_rng(1).integers(0, 256, (40, 30)).astype(np.uint8)
    assert scoot.scoot(a, a) == 1.0
    with pytest.raises(ValueError, match="equal sizes"):
        scoot.scoot(a, a[:20])


# --- SSIM, MS-SSIM, FSIM ------------------------------------------------------------------------


def _ssim_brute_force(a: np.ndarray, b: np.ndarray) -> float:
    """Per pixel: an 11x11 Gaussian (sigma 1.5) window over replicate-padded images."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    pa, pb = np.pad(a.astype(float), 5, mode="edge"), np.pad(b.astype(float), 5, mode="edge")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for r in range(a.shape[0]):
        for c in range(a.shape[1]):
            x, y = pa[r:r + 11, c:c + 11], pb[r:r + 11, c:c + 11]
            mx, my = (w * x).sum(), (w * y).sum()
            sx, sy, sxy = (w * x * x).sum() - mx ** 2, (w * y * y).sum() - my ** 2, (w * x * y).sum() - mx * my
            vals.append((2 * mx * my + c1) * (2 * sxy + c2) / ((mx ** 2 + my ** 2 + c1) * (sx + sy + c2)))
    return float(np.mean(vals))


def test_ssim_is_matlabs_definition():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (20, 17)).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 30, a.shape), 0, 255).astype(np.uint8)
    assert similarity.ssim_matlab(b, a)[0] == pytest.approx(_ssim_brute_force(b, a), abs=1e-12)


@pytest.mark.parametrize("metric", [similarity.ssim_matlab, similarity.fsim, similarity.ms_ssim])
def test_similarity_is_one_for_identity_and_falls_with_noise(metric, tiny_prepared):
    sketch = protocol.load_grey(next((tiny_prepared / "aligned" / "test" / "sketch").glob("*.png")))
    sketch = protocol.imresize(sketch, 200, 200)  # MS-SSIM needs room for five scales
    rng = np.random.default_rng(0)
    values = [metric(sketch, sketch)[0]]
    for sigma in (10, 30, 60):
        noisy = np.clip(sketch + rng.normal(0, sigma, sketch.shape), 0, 255).astype(np.uint8)
        values.append(metric(noisy, sketch)[0])
    assert values[0] == pytest.approx(1.0, abs=1e-6)
    assert values == sorted(values, reverse=True) and values[-1] < 0.9


def test_fsim_equals_piq():
    import piq

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (4, 1, 64, 80)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 25, a.shape), 0, 255).astype(np.float32)
    ours = similarity.fsim(a[:, 0], b[:, 0])
    theirs = piq.fsim(torch.from_numpy(a), torch.from_numpy(b), data_range=255.0, reduction="none",
                      chromatic=False).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_ms_ssim_equals_piq_and_refuses_small_images():
    import piq

    rng = np.random.default_rng(4)
    # 250: FS2K's size; odd sizes (one side odd, the other even, at some scale) exercise the replicated
    # row/column before each 2x2 mean. Structured images whose brightness differs, so that every scale's
    # contrast-structure term and the coarsest scale's luminance term (C1) move the value.
    for shape in [(3, 250, 250), (2, 161, 161), (1, 170, 333)]:
        n, h, w = shape
        yy, xx = np.mgrid[0:h, 0:w]
        a = np.stack([96 + 80 * np.sin(xx / (9 + 4 * i)) * np.cos(yy / 23) + 60 * ((xx // 40 + yy // 30) % 2)
                      for i in range(n)])
        a = np.clip(a + rng.normal(0, 8, shape), 0, 255).astype(np.float32)
        b = np.clip(0.55 * a + 70 + rng.normal(0, 20, shape), 0, 255).astype(np.float32)
        theirs = piq.multi_scale_ssim(torch.from_numpy(a[:, None]), torch.from_numpy(b[:, None]), data_range=255.0,
                                      reduction="none", scale_weights=torch.tensor(similarity.MS_SSIM_WEIGHTS))
        np.testing.assert_allclose(similarity.ms_ssim(a, b), theirs.numpy(), atol=1e-5)
        # dark versions (means near 0): C1 is then as large as the means' squares
        dark_a, dark_b = a / 40, b / 80
        theirs = piq.multi_scale_ssim(torch.from_numpy(dark_a[:, None]), torch.from_numpy(dark_b[:, None]),
                                      data_range=255.0, reduction="none",
                                      scale_weights=torch.tensor(similarity.MS_SSIM_WEIGHTS))
        np.testing.assert_allclose(similarity.ms_ssim(dark_a, dark_b), theirs.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="161x161"):  # evaluate.py files it as "MS-SSIM failed: ..."
        similarity.ms_ssim(np.zeros((160, 300)), np.zeros((160, 300)))


def test_fsim_median_is_torchs_lower_median():
    from facesketch.metrics import fsim

    maps = torch.from_numpy(np.random.default_rng(5).random((3, 10, 25)).astype(np.float32))  # 250 values each
    np.testing.assert_array_equal(fsim._lower_median(maps).numpy(), maps.reshape(3, -1).median(dim=1).values.numpy())


# --- resize and grey ----------------------------------------------------------------------------


def test_bicubic_upscale_derived_by_hand():
    # in 2 -> out 4, scale 2: centres u = 0.75, 1.25, ...; weights from Keys' cubic (a = -0.5) and
    # mirrored borders give out[0] = 1.09375 x1 - 0.09375 x2, out[1] = 0.796875 x1 + 0.203125 x2
    out = protocol.imresize(np.array([[0.0, 100.0]]), 1, 4)[0]
    np.testing.assert_allclose(out, [-9.375, 20.3125, 79.6875, 109.375])


def test_bicubic_antialiased_downscale_derived_by_hand():
    # in 4 -> out 2, scale 1/2: kernel 0.5 c(x/2), width 8; out[0] = 0.546875 x1 + 0.3984375 x2
    #   + 0.1015625 x3 - 0.046875 x4
    # out[1] mirrors out[0]: 0.546875 * 128
    np.testing.assert_allclose(protocol.imresize(np.array([[0.0, 0.0, 0.0, 128.0]]), 1, 2)[0], [-6.0, 70.0])
    np.testing.assert_allclose(protocol.imresize(np.array([[64.0, 0.0, 0.0, 0.0]]), 1, 2)[0], [35.0, -3.0])
    u8 = protocol.imresize(np.array([[0, 0, 0, 128]], np.uint8), 1, 2)
    assert u8.dtype == np.uint8 and u8.tolist() == [[0, 70]]  # rounded and clipped like MATLAB's uint8


def test_resize_keeps_constants_and_shape():
    flat = np.full((31, 47), 77, np.uint8)
    out = protocol.imresize(flat, 250, 250)
    assert out.shape == (250, 250) and (out == 77).all()


def test_rgb2gray_matches_matlab():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)
    assert protocol.rgb2gray(rgb).tolist() == [[76, 150, 29, 18]]


# --- FID ----------------------------------------------------------------------------------------


def test_fid_of_identical_sets_is_zero_and_matches_scipy():
    from scipy import linalg

    rng = np.random.default_rng(4)
    mu1, mu2 = np.zeros(8), np.full(8, 0.5)
    c1 = np.diag(np.linspace(0.5, 2.0, 8))
    a = rng.normal(size=(8, 8))
    c2 = a @ a.T / 8 + 0.1 * np.eye(8)
    x = rng.multivariate_normal(mu1, c1, 4000)
    y = rng.multivariate_normal(mu2, c2, 4000)
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-6)
    m1, s1, m2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    reference = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert fid_from_features(x, y) == pytest.approx(reference, rel=1e-6)
    analytic = ((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
    assert fid_from_features(x, y) == pytest.approx(analytic, rel=0.05)
    assert np.isnan(fid_from_features(x[:1], y[:1]))


# --- the networks, on stand-ins -----------------------------------------------------------------


@pytest.fixture(scope="module")
def inception_state():
    """A state dict with pytest-fid's Inception key names and shapes (random values)."""
    import pytorch_fid.inception as inc

    net = inc._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = inc.FIDInceptionA(192, 32), inc.FIDInceptionA(256, 64), \
        inc.FIDInceptionA(288, 64)
    net.Mixed_6b, net.Mixed_6c = inc.FIDInceptionC(768, 128), inc.FIDInceptionC(768, 160)
    net.Mixed_6d, net.Mixed_6e = inc.FIDInceptionC(768, 160), inc.FIDInceptionC(768, 192)
    net.Mixed_7b, net.Mixed_7c = inc.FIDInceptionE_1(1280), inc.FIDInceptionE_2(2048)
    torch.manual_seed(0)
    state = {}
    for k, v in net.state_dict().items():
        state[k] = torch.ones_like(v) if k.endswith("running_var") else (
            torch.randn_like(v) * 0.05 if v.dtype.is_floating_point else v)
    return state


def test_fid_end_to_end_on_a_stand_in_network(inception_state):
    from facesketch.errors import WeightsError
    from facesketch.metrics.fid import inception_features
    from facesketch.metrics.networks import inception_from_state

    net = inception_from_state(inception_state)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 64)).astype(np.uint8) for _ in range(6)]
    f = inception_features(net, images, "cpu", batch_size=4)
    assert f.shape == (6, 2048) and np.isfinite(f).all()
    assert fid_from_features(f, f) == pytest.approx(0.0, abs=1e-4)
    broken = dict(inception_state)
    broken.pop("Mixed_7c.branch_pool.conv.weight")
    with pytest.raises(WeightsError, match="not pytorch-fid's Inception weights"):
        inception_from_state(broken)


def test_lpips_end_to_end_on_a_stand_in_alexnet():
    import torchvision

    from facesketch.errors import WeightsError
    from facesketch.metrics.networks import lpips_from_alexnet_state

    net = lpips_from_alexnet_state(torchvision.models.alexnet(weights=None).state_dict())
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert net(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert net(x, torch.rand(1, 3, 64, 64) * 2 - 1).item() > 0
    with pytest.raises(WeightsError, match="missing features.0.weight"):
        lpips_from_alexnet_state({})


# --- scoring ------------------------------------------------------------------------------------


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_score_variant_with_a_corrupt_and_a_missing_image(tiny_prepared, tmp_path):
    from facesketch.metrics.evaluate import score_variant

    manifest = pd.read_parquet(tiny_prepared / "manifest.parquet")
    test = manifest[manifest.split == "test"]
    dirs = []
    for style in ("Style1", "Style2", "Style3"):
        d = tmp_path / "samples" / "v" / "0" / style
        dirs.append(d)
        for r in test[test["style"] == int(style[-1]) - 1].itertuples():
            _write(d / f"{r.id}.png", np.asarray(Image.open(tiny_prepared / r.sketch)))
    victims = list((tmp_path / "samples" / "v" / "0" / "Style1").glob("*.png"))[:2]
    victims[0].write_bytes(b"\x89PNG broken")
    victims[1].unlink()
    spec = {"variant": "v", "metrics": {"names": ["SCOOT", "SSIM", "FSIM", "LPIPS", "FID"], "allow_missing": True,
                                         "framing": "aligned", "batch_size": 4}}
    df = score_variant(spec, tiny_prepared / "manifest.parquet", dirs, tmp_path / "v.parquet", tmp_path / "none",
                       device="cpu")
    img = df[df.scope == "image"]
    scoot_rows = img[img.metric == "SCOOT"]
    assert len(scoot_rows) == len(test)
    bad = scoot_rows[scoot_rows.value.isna()]
    assert set(bad.image_id) == {v.stem for v in victims}
    assert bad.reason.str.contains("cannot read image|no result image").all()
    good = scoot_rows.dropna(subset=["value"])
    assert (good.value == 1.0).all()  # results identical to the ground truth
    assert img[img.metric == "LPIPS"].value.isna().all()
    assert img[img.metric == "LPIPS"].reason.str.contains("lpips_alexnet").all()
    fid = df[df.metric == "FID"]
    assert set(fid.style_gt) == {"Style1", "Style2", "Style3", "all"} and fid.value.isna().all()
    assert list(df.columns) == ["variant", "seed", "style_asked", "style_gt", "image_id", "metric", "value",
                                "scope", "n_images", "reason", "replicate", "n_expected"]



def test_fid_kid_and_their_replicates_per_set(tiny_prepared, tmp_path, monkeypatch):
    """FID and KID from one set of features per seed and style, with bootstrap replicates that
    resample the generated set."""
    from facesketch.metrics import networks
    from facesketch.metrics.evaluate import score_variant
    from facesketch.metrics.fid import fid_from_features, inception_features
    from facesketch.metrics.kid import kid

    monkeypatch.setattr(networks, "load_fid_inception", lambda d: StandInInception())
    manifest = pd.read_parquet(tiny_prepared / "manifest.parquet")
    test = manifest[manifest.split == "test"].sort_values("id")
    rng = np.random.default_rng(0)
    dirs, fakes = [], {}
    for style in ("Style1", "Style2", "Style3"):
        d = tmp_path / "samples" / "v" / "0" / style
        dirs.append(d)
        for r in test[test["style"] == int(style[-1]) - 1].itertuples():
            gt = np.asarray(Image.open(tiny_prepared / r.sketch).convert("L"))
            fakes[r.id] = np.clip(gt.astype(int) + rng.integers(-90, 90, gt.shape), 0, 255).astype(np.uint8)
            _write(d / f"{r.id}.png", fakes[r.id])
    spec = {"variant": "v", "metrics": {"names": ["FID", "KID"], "allow_missing": False, "framing": "aligned",
                                         "batch_size": 8, "bootstrap": 7}}
    df = score_variant(spec, tiny_prepared / "manifest.parquet", dirs, tmp_path / "v.parquet", tmp_path / "none",
                       device="cpu")
    sets = df[df.scope == "set"]
    assert set(sets.metric) == {"FID", "KID"} and set(sets.style_gt) == {"Style1", "Style2", "Style3", "all"}
    boot = df[df.scope == "set_boot"]
    assert len(boot) == 7 * len(sets) and set(boot.replicate) == set(range(7))
    assert (sets.replicate == -1).all()
    full = sets.set_index(["metric", "style_gt"]).value
    # the same features give both numbers, each as its definition says
    net = StandInInception()
    real = inception_features(net, [protocol.load_grey(tiny_prepared / s) for s in test.sketch], "cpu")
    fake = inception_features(net, [fakes[i] for i in test.id], "cpu")
    assert full["FID", "all"] == pytest.approx(fid_from_features(real, fake), rel=1e-6)
    assert full["KID", "all"] == pytest.approx(kid(real, fake), rel=1e-6)
    fid_all = boot[(boot.metric == "FID") & (boot.style_gt == "all")].value
    assert fid_all.std() > 0 and np.isfinite(fid_all).all()


def test_missing_weights_stop_the_run_unless_allowed(tiny_prepared, tmp_path):
    from facesketch.errors import WeightsError
    from facesketch.metrics.evaluate import evaluate_folder

    manifest = pd.read_parquet(tiny_prepared / "manifest.parquet")
    for r in manifest[manifest.split == "test"].itertuples():
        _write(tmp_path / "res" / f"{r.id}.png", np.asarray(Image.open(tiny_prepared / r.sketch)))
    with pytest.raises(WeightsError, match="pt_inception-2015-12-05-6726825d.pth"):
        evaluate_folder(tmp_path / "res", tiny_prepared / "manifest.parquet", tmp_path / "o.parquet",
                        {"names": ["FID"], "allow_missing": False}, tmp_path / "none", framing="aligned", device="cpu")


def test_evaluate_folder_layouts_and_original_framing(tiny_prepared, tmp_path):
    from facesketch.metrics.evaluate import evaluate_folder, index_results

    manifest = pd.read_parquet(tiny_prepared / "manifest.parquet")
    test = manifest[manifest.split == "test"]
    for i, r in enumerate(test.itertuples()):
        # a released result covers the whole original photo: the ground-truth sketch at full size
        full = np.asarray(Image.open(r.sketch_source).convert("L"))
        sub, num = r.image_name.split("/")
        k = sub.removeprefix("photo")
        path = [tmp_path / "res" / f"{r.id}.png", tmp_path / "res" / sub / f"{num}.jpg",
                tmp_path / "res" / f"sketch{k}" / f"sketch{num.removeprefix('image')}.png"][i % 3]
        _write(path, full)
    found = index_results(tmp_path / "res")
    assert set(found) == set(test.id)
    df = evaluate_folder(tmp_path / "res", tiny_prepared / "manifest.parquet", tmp_path / "o.parquet",
                         {"names": ["SCOOT", "SSIM"], "framing": "aligned"}, tmp_path, framing="original",
                         label="released:x", device="cpu")
    ssim = df[df.metric == "SSIM"]
    assert ssim.value.notna().all() and ssim.value.min() > 0.9  # cropped with our box, then resized
    assert set(df.variant) == {"released:x"}
    native = evaluate_folder(tmp_path / "res", tiny_prepared / "manifest.parquet", tmp_path / "n.parquet",
                             {"names": ["SSIM"], "framing": "native"}, tmp_path, framing="original", device="cpu")
    assert native.value.min() > 0.97  # the same crop at the archive's resolution: nearly identical


@pytest.mark.fs2k
def test_metrics_on_real_sketches(real_subset):
    manifest = pd.read_parquet(real_subset / "manifest.parquet")
    test = manifest[manifest.split == "test"].head(4)
    gts = [protocol.load_grey(real_subset / r.sketch) for r in test.itertuples()]
    import piq

    for a, b in zip(gts, gts[1:]):
        # real sketches against the definitions: SCOOT and SSIM by hand on the face centre
        ca, cb = a[77:173, 77:173], b[77:173, 77:173]
        assert scoot.scoot(cb, ca) == pytest.approx(_scoot_by_hand(ca, cb), abs=1e-12)
        assert similarity.ssim_matlab(cb, ca)[0] == pytest.approx(_ssim_brute_force(cb, ca), abs=1e-12)
        theirs = piq.fsim(torch.from_numpy(b[None, None]).float(), torch.from_numpy(a[None, None]).float(),
                          data_range=255.0, reduction="none", chromatic=False).numpy()
        np.testing.assert_allclose(similarity.fsim(b[None].astype(np.float32), a[None].astype(np.float32)), theirs,
                                   atol=1e-5)
        assert max(scoot.scoot(b, a), similarity.ssim_matlab(b, a)[0], similarity.fsim(b, a)[0]) < 0.99
