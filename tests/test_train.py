"""The training engine: exact resume after a kill, schedule, determinism, every family trains,
inference framing, and one GPU per concurrent job."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from facesketch.config import load_config
from facesketch.train import checkpoint as ckpt
from facesketch.train.engine import Engine, ImagePool, loss_networks
from facesketch.train.infer import fit_to, infer, network_inputs, network_outputs
from facesketch.train.run import train
from facesketch.train.schedule import lr_factor

from .conftest import REPO, write_depth_blobs


@pytest.fixture(scope="module")
def cfg():
    return load_config(REPO / "config.yaml")


@pytest.fixture(scope="module")
def tiny_maps(tiny_prepared) -> Path:
    """Depth maps for the tiny data set (smooth blobs: what the depth predictors store)."""
    return write_depth_blobs(tiny_prepared, "maps", (32, 30), (5, 1), 900.0)


def tiny(spec: dict, epochs: int = 3, decay: int = 1, batch: int = 2) -> dict:
    s = copy.deepcopy(spec)
    s.update(input={"image": 60, "pad": 2, "crop": 64}, batch_size=batch, precision="fp32", compile=False,
             schedule={"epochs": epochs, "decay_epochs": decay}, checkpoint_every=1, sample_every=1,
             max_steps_per_epoch=None)
    s["generator"] = dict(s["generator"], ngf=8)
    if s["generator"]["arch"] in ("resnet", "attention_resnet", "pix2pixhd_global"):
        s["generator"]["n_blocks"] = 1
    s["discriminator"] = dict(s.get("discriminator", {}), ndf=8)
    for key in ("vgg", "edge", "normal"):  # losses with pretrained networks: their own tests
        if s["losses"].get(key):
            s["losses"][key] = 0.0
    return s


def _run(spec, data: Path, maps: Path, out: Path, kill_after: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, FACESKETCH_KILL_AFTER_STEPS=str(kill_after) if kill_after else "")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return subprocess.run([sys.executable, "-m", "facesketch", "train", "--spec", json.dumps(spec),
                           "--manifest", str(data / "manifest.parquet"), "--maps", str(maps), "--out", str(out),
                           "--seed", "3", "--device", "cpu"], env=env, capture_output=True, text=True)


def _generators(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, weights_only=True)["generators"]
    return {f"{g}.{k}": v for g, sd in state.items() for k, v in sd.items()}


@pytest.mark.parametrize("variant", ["pix2pix", "cyclegan_attn"])
def test_killed_and_resumed_run_ends_bitwise_equal(cfg, tiny_prepared, tiny_maps, tmp_path, variant):
    spec = tiny(cfg["resolved"][variant])
    if variant == "cyclegan_attn":
        spec["image_pool"] = 4  # the pool fills and swaps within the run: its state must resume too
    whole = _run(spec, tiny_prepared, tiny_maps, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    steps_per_epoch = 12 // spec["batch_size"]
    killed = _run(spec, tiny_prepared, tiny_maps, tmp_path / "broken", kill_after=steps_per_epoch + 2)
    assert killed.returncode == 137, killed.stderr[-2000:]
    assert not (tmp_path / "broken" / "model.pt").exists()
    assert ckpt.load(tmp_path / "broken" / "last.pt")["epoch"] == 1
    resumed = _run(spec, tiny_prepared, tiny_maps, tmp_path / "broken")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch 1 of 3" in resumed.stderr
    a, b = _generators(tmp_path / "whole" / "model.pt"), _generators(tmp_path / "broken" / "model.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = pd.read_csv(tmp_path / "whole" / "losses.csv")
    lb = pd.read_csv(tmp_path / "broken" / "losses.csv")
    assert list(la.epoch) == list(lb.epoch) == [1, 2, 3]
    np.testing.assert_array_equal(la.filter(like="G_").to_numpy(), lb.filter(like="G_").to_numpy())


def test_schedule_matches_its_definition(cfg, tiny_prepared, tiny_maps, tmp_path):
    # pix2pix's rule: constant for epochs - decay, then 1 - (e + 1 - (E - D)) / (D + 1)
    assert [lr_factor(e, 10, 4) for e in range(10)] == pytest.approx([1, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2])
    assert all(lr_factor(e, 5, 0) == 1 for e in range(5))
    spec = tiny(cfg["resolved"]["pix2pix"], epochs=4, decay=2)
    train(spec, tiny_prepared / "manifest.parquet", tiny_maps, tmp_path / "run", device="cpu")
    losses = pd.read_csv(tmp_path / "run" / "losses.csv")
    base = spec["optimizer"]["lr_g"]
    np.testing.assert_allclose(losses.lr_g, [base * lr_factor(e, 4, 2) for e in range(4)])
    assert (losses.images_per_s > 0).all() and list(losses.step) == [6, 12, 18, 24]
    assert sorted(p.name for p in (tmp_path / "run" / "samples").glob("*.png")) == [
        f"epoch_{e:04d}.png" for e in range(1, 5)]


def test_two_step_run_is_deterministic_and_a_step_changes_weights(cfg, tiny_prepared, tiny_maps, tmp_path):
    spec = tiny(cfg["resolved"]["hida_full"], epochs=1, decay=0)
    spec["max_steps_per_epoch"] = 2
    for name in ("a", "b"):
        train(spec, tiny_prepared / "manifest.parquet", tiny_maps, tmp_path / name, seed=7, device="cpu")
    a, b = _generators(tmp_path / "a" / "model.pt"), _generators(tmp_path / "b" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(7)
    engine = Engine(spec, torch.device("cpu"), loss_networks(spec, tmp_path, torch.device("cpu")))
    before = {k: v.clone() for k, v in engine.nets["G"].state_dict().items()}
    from facesketch.train.data import DeviceDataset, load_split

    _, tensors = load_split(tiny_prepared / "manifest.parquet", tiny_maps, "train", 60, True)
    ds = DeviceDataset(tensors, torch.device("cpu"), 2, 64, True, 0)
    losses = engine.step(ds.batch(torch.arange(2)))
    assert {"G_gan", "G_l1", "G_textural", "G_geometric", "D"} <= set(losses)
    after = engine.nets["G"].state_dict()
    changed = [k for k in before if before[k].dtype.is_floating_point and not torch.equal(before[k], after[k])]
    assert len(changed) > 0.5 * len(before)


def test_every_family_of_the_demo_trains_a_few_steps(tiny_prepared, tiny_maps, tmp_path):
    demo = load_config([REPO / "config.yaml", REPO / "src/facesketch/configs/demo.yaml"])
    for name in demo["run"]["variants"] + ["pix2pixhd", "cyclegan"]:
        spec = tiny(demo["resolved"][name], epochs=1, decay=0)
        spec["max_steps_per_epoch"] = 2
        model = train(spec, tiny_prepared / "manifest.parquet", tiny_maps, tmp_path / name, device="cpu")
        state = torch.load(model, weights_only=True)
        assert set(state["generators"]) == ({"G"} if spec["family"] == "paired" else {"G_A", "G_B"})
        losses = pd.read_csv(tmp_path / name / "losses.csv")
        assert np.isfinite(losses.filter(regex="^(G_|D)").to_numpy()).all()


def test_checkpoint_of_another_spec_is_not_resumed(cfg, tiny_prepared, tiny_maps, tmp_path):
    spec = tiny(cfg["resolved"]["pix2pix"], epochs=1, decay=0)
    spec["max_steps_per_epoch"] = 1
    train(spec, tiny_prepared / "manifest.parquet", tiny_maps, tmp_path, device="cpu")
    other = copy.deepcopy(spec)
    other["optimizer"]["lr_g"] = 1.0e-3
    train(other, tiny_prepared / "manifest.parquet", tiny_maps, tmp_path, device="cpu")
    assert (tmp_path / "last.stale.pt").exists()
    assert ckpt.load(tmp_path / "last.pt")["spec_hash"] == ckpt.spec_hash(other)
    assert ckpt.spec_hash({**spec, "sample_every": 99}) == ckpt.spec_hash(spec)  # logging is not the spec


def test_image_pool_is_seeded():
    def run(seed):
        g = torch.Generator().manual_seed(seed)
        pool = ImagePool(3, g)
        outs = [pool.query(torch.full((2, 1, 2, 2), float(i))) for i in range(6)]
        return torch.stack([o[:, 0, 0, 0] for o in outs])

    assert torch.equal(run(1), run(1))
    first = run(1)
    assert torch.equal(first[0], torch.tensor([0.0, 0.0]))  # filling: images pass through
    # every image handed out is one queried so far, and once full the pool swaps some in
    values = run(1)
    assert all(set(values[i].tolist()) <= set(range(i + 1)) for i in range(6))
    assert any(v < i for i in range(3, 6) for v in values[i].tolist())
    x = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(ImagePool(0, torch.Generator()).query(x), x)  # no pool: images pass through


def test_test_framing_round_trips():
    spec = {"input": {"image": 60, "crop": 64}}
    photo = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    x, d = network_inputs(photo, torch.rand(2, 1, 64, 64), spec)
    assert x.shape == (2, 3, 64, 64) and d.shape == (2, 1, 64, 64)
    assert torch.all(x[..., :2, :] == -1)  # zero padding around the 60x60 image
    y = network_outputs(torch.rand(2, 3, 64, 64) * 2 - 1, spec, 250)
    assert y.shape == (2, 1, 250, 250)
    assert fit_to(torch.zeros(1, 1, 10, 10), 6).shape == (1, 1, 6, 6)


def test_infer_draws_each_style_and_refuses_a_foreign_checkpoint(cfg, tiny_prepared, tiny_maps, tmp_path):
    spec = tiny(cfg["resolved"]["hida_full"], epochs=1, decay=0)
    spec["max_steps_per_epoch"] = 1
    model = train(spec, tiny_prepared / "manifest.parquet", tiny_maps, tmp_path / "run", device="cpu")
    manifest = pd.read_parquet(tiny_prepared / "manifest.parquet")
    test = manifest[manifest.split == "test"]
    n = infer(spec, model, tiny_prepared / "manifest.parquet", tiny_maps, tmp_path / "Style2", "Style2", device="cpu")
    assert n == (test["style"] == 1).sum()
    assert {p.stem for p in (tmp_path / "Style2").glob("*.png")} == set(test[test["style"] == 1].id)
    from PIL import Image

    assert Image.open(next((tmp_path / "Style2").glob("*.png"))).size == (64, 64)
    n = infer(spec, model, tiny_prepared / "manifest.parquet", tiny_maps, tmp_path / "cross", "cross",
              cross_style=2, device="cpu")
    assert n == 6 and len(list((tmp_path / "cross" / "Style3").glob("*.png"))) == 2
    other = copy.deepcopy(spec)
    other["losses"]["l1"] = 9.0
    from facesketch.errors import DataError

    with pytest.raises(DataError, match="different spec"):
        infer(other, model, tiny_prepared / "manifest.parquet", tiny_maps, tmp_path / "x", "Style1", device="cpu")


LOCKER = """
import sys, time, torch
torch.cuda.device_count = lambda: 2
from facesketch.device import acquire_gpu
try:
    i = acquire_gpu(wait_s=float(sys.argv[1]))
except RuntimeError as e:
    print("busy", e, flush=True)
    sys.exit(3)
print("gpu", i, flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_concurrent_gpu_jobs_each_take_their_own_gpu(tmp_path):
    env = dict(os.environ, FACESKETCH_LOCK_DIR=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", LOCKER, "30", "60"], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        outs = [p.stdout.readline().strip() for p in procs]  # each holds its GPU from here on
        assert sorted(outs) == ["gpu 0", "gpu 1"]
        third = subprocess.run([sys.executable, "-c", LOCKER, "0.5", "0"], env=env, capture_output=True, text=True)
        assert third.returncode == 3 and "all 2 GPUs stayed locked" in third.stdout
    finally:
        for p in procs:
            p.kill()
            p.wait()
    again = subprocess.run([sys.executable, "-c", LOCKER, "1", "0"], env=env, capture_output=True, text=True)
    assert again.stdout.strip() == "gpu 0"  # locks die with their process


def test_engine_takes_its_loss_networks_from_the_factory(cfg, tmp_path):
    """Loss networks come in through the constructor: a missing one is a config error naming it,
    and the factory that the CLI uses names the weights file it could not find."""
    from facesketch.errors import ConfigError, FacesketchError

    spec = tiny(cfg["resolved"]["pix2pixhd"])
    spec["losses"]["vgg"] = 10.0
    with pytest.raises(ConfigError, match=r"variants.pix2pixhd.losses: no network given for vgg"):
        Engine(spec, torch.device("cpu"), {})
    with pytest.raises(FacesketchError, match="vgg19"):
        loss_networks(spec, tmp_path / "no-weights", torch.device("cpu"))
    stand_in = torch.nn.Identity()
    engine = Engine(spec, torch.device("cpu"), {"vgg": stand_in})
    assert engine.loss_nets["vgg"] is stand_in and engine.weights["vgg"] == 10.0 and engine.weights["l1"] == 0.0
