"""The cluster profiles as their executor plugins read them. The SLURM profile runs a small demo
target for real through snakemake-executor-plugin-slurm, with fake sbatch/srun/sacct/squeue/
scancel on PATH (tests/fake_slurm.py) that run each job script locally and record their arguments."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from . import fake_slurm
from .conftest import REPO

BIN = Path(sys.executable).parent
DEMO = ["--configfile", "config.yaml", "src/facesketch/configs/demo.yaml"]
GPU_RULES = {"maps", "train", "infer", "infer_cross", "score", "score_released", "draw_photos",
             "apdrawing_maps", "apdrawing_train", "apdrawing_infer", "apdrawing_score", "apdrawing_score_released",
             "metfaces_maps", "metfaces_train", "metfaces_infer", "metfaces_score"}


def _rules_with_gpu() -> set[str]:
    found = set()
    for path in (REPO / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", path.read_text(), re.M | re.S):
            if re.search(r"resources:\n(\s+\w+=.*\n)*?\s+gpu=1", body):
                found.add(name)
    return found


def test_gpu_rules_are_the_ones_the_profiles_place():
    assert _rules_with_gpu() == GPU_RULES
    slurm = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    k8s = yaml.safe_load((REPO / "profiles/kubernetes/config.yaml").read_text())
    assert slurm["executor"] == "slurm" and k8s["executor"] == "kubernetes"
    for rule, res in slurm["set-resources"].items():
        # the plugin makes --gpus from the rules' gpu=1 and refuses GPU flags in slurm_extra
        assert not re.search(r"gres|gpus", str(res.get("slurm_extra", ""))), rule
    for rule in GPU_RULES:
        assert k8s["set-resources"][rule]["gpu_manufacturer"] == "nvidia", rule
    assert not any("kubernetes_gpu" in str(v) for v in k8s["set-resources"].values())
    # the image that the profile names is the one the Snakefile's container directive names
    image = k8s["container-image"]
    assert f'container: "docker://{image}"' in (REPO / "Snakefile").read_text()
    assert (REPO / "Dockerfile").is_file()


def test_dockerfile_installs_the_constraints():
    text = (REPO / "Dockerfile").read_text()
    assert "COPY constraints.txt" in text and "-c constraints.txt" in text
    assert "snakemake-executor-plugin-kubernetes" not in text  # the image runs jobs, it submits none


def _gpus(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a.startswith("--gpus="):
            return a.split("=", 1)[1]
        if a in ("--gpus", "-G") and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _rule(argv: list[str]) -> str:
    comment = argv[argv.index("--comment") + 1]
    return re.match(r"rule_(\w+?)(_wildcards_.*)?$", comment).group(1)


@pytest.mark.slow
@pytest.mark.fs2k
def test_slurm_profile_runs_demo_jobs_through_the_plugin(fs2k_archive, repo_copy, tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    fakebin, state = tmp_path / "fakebin", tmp_path / "slurm-state"
    fake_slurm.install(fakebin, state)
    env = dict(os.environ, PATH=os.pathsep.join([str(fakebin), str(BIN), os.environ["PATH"]]),
               FS2K_ARCHIVE=str(fs2k_archive), FACESKETCH_WEIGHTS=str(tmp_path / "no-weights"))
    for var in ("CUDA_VISIBLE_DEVICES", "VIRTUAL_ENV") + tuple(v for v in os.environ if v.startswith("SLURM_")):
        env.pop(var, None)
    cmd = [str(BIN / "snakemake"), "--workflow-profile", "profiles/slurm", *DEMO, "--slurm-no-account",
           "--slurm-init-seconds-before-status-checks", "1", "--latency-wait", "5",
           "--", "data/demo/maps/depth"]
    r = subprocess.run(cmd, cwd=repo_copy, env=env, capture_output=True, text=True, timeout=1200)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-5000:]
    assert len(list((repo_copy / "data/demo/maps/depth").rglob("*.npy"))
               + list((repo_copy / "data/demo/maps/depth").rglob("*.png"))) > 0
    submitted = {_rule(argv): argv for argv in fake_slurm.recorded(state, "sbatch")}
    assert set(submitted) == {"fetch_fs2k", "extract_fs2k", "align_fs2k", "maps"}, submitted.keys()
    for rule, argv in submitted.items():
        # recorded for the report: what a real sbatch would have been asked for
        print(rule, shlex.join(argv[:argv.index(next(a for a in argv if a.startswith("--wrap")))]))
        if rule in GPU_RULES:
            assert _gpus(argv) == "1", argv
            assert argv[argv.index("-p") + 1] == "gpu"
        else:
            assert _gpus(argv) is None and not any("gres" in a for a in argv), argv
    # inside the GPU job, srun places the step on that one GPU too; CPU steps ask for none
    steps = fake_slurm.recorded(state, "srun")
    gpu_steps = [a for a in steps if "maps" in " ".join(a)]
    assert gpu_steps and all(_gpus(a) == "1" for a in gpu_steps)
    assert all(_gpus(a) is None for a in steps if a not in gpu_steps)
    assert fake_slurm.recorded(state, "sacct") or fake_slurm.recorded(state, "squeue")
