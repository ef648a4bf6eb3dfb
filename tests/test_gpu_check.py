"""``facesketch gpu-check`` on the CPU at a small size, and its arithmetic by hand."""

from __future__ import annotations

import json
import math

import pytest

from facesketch.cli import main
from facesketch.gpu_check import FS2K_TRAIN_PAIRS, schedule_steps, spread


def test_spread_is_longest_jobs_first_on_each_free_gpu():
    jobs = [3.0, 3.0, 2.0, 2.0, 2.0]
    assert spread(jobs, 1) == 12.0
    # by hand: 3 | 3, then 2 -> 5 | 3, 2 -> 5 | 5, 2 -> 7 | 5
    assert spread(jobs, 2) == 7.0
    assert spread(jobs, 8) == 3.0  # more GPUs than jobs: the longest job


def test_schedule_steps_by_hand():
    spec = {"batch_size": 4, "schedule": {"epochs": 10}, "seeds": [0, 1, 2]}
    assert schedule_steps(spec, 1058) == 10 * (1058 // 4) * 3
    assert schedule_steps(dict(spec, max_steps_per_epoch=5), 1058) == 10 * 5 * 3
    assert FS2K_TRAIN_PAIRS == 1058  # FS2K's anno_train.json


def _check(tmp_path, capsys, variants: list[str] | None):
    args = ["gpu-check", "--out", str(tmp_path), "--resources", "gpu=1", "--resources", "gpu=4", "--steps", "1"]
    assert main(args + (["--variants", *variants] if variants else [])) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    md = (tmp_path / "gpu_check.md").read_text()
    assert md == capsys.readouterr().out
    from facesketch.config import load_config

    from .conftest import REPO

    cfg = load_config(REPO / "config.yaml")
    assert [r["variant"] for r in report["variants"]] == (variants or list(cfg["resolved"]))
    assert report["environment"]["torch"] and report["environment"]["gpu"] is None
    for r in report["variants"]:
        spec = cfg["resolved"][r["variant"]]
        assert r["size"] == 32 and r["own_size"] == spec["input"]["crop"] and r["own_batch"] == spec["batch_size"]
        assert r["images_per_s"] == pytest.approx(r["batch"] / r["step_s"])
        assert r["schedule_steps"] == schedule_steps(spec, FS2K_TRAIN_PAIRS)
        # measured at 32x32 with 8 filters: the projection scales up by the FLOP ratio, which must be large
        scale = r["projected_hours"] * 3600 / (r["schedule_steps"] * r["step_s"])
        assert scale > 10 and r["projection"] == f"scaled by FLOPs x{scale:.0f}"
        assert r["mfu"] is None  # no GPU peak to divide by
    jobs = sum(len(cfg["resolved"][r["variant"]].get("seeds", [0])) for r in report["variants"])
    assert report["jobs"] == jobs
    assert math.isclose(report["total_gpu_hours"], sum(r["projected_hours"] for r in report["variants"]))
    assert report["wall_hours"]["1"] == pytest.approx(report["total_gpu_hours"])
    assert report["total_gpu_hours"] / 4 <= report["wall_hours"]["4"] < report["total_gpu_hours"]
    assert f"**Total: {report['total_gpu_hours']:.1f} GPU-hours**" in md and "`--resources gpu=4`" in md


def test_gpu_check_on_the_cpu_projects_three_families(tmp_path, capsys):
    _check(tmp_path, capsys, ["pix2pix", "hida_full", "cyclegan_attn_no_edge_normal"])


@pytest.mark.slow  # 15 variants: minutes on a 2-core CPU
def test_gpu_check_on_the_cpu_projects_the_full_config(tmp_path, capsys):
    """Every variant of config.yaml at 32x32 on the CPU: the projection of the whole reproduction."""
    _check(tmp_path, capsys, None)


def test_gpu_check_refuses_an_unknown_variant(capsys):
    assert main(["gpu-check", "--variants", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
