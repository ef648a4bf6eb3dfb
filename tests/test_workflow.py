"""The workflow as users run it: snakemake plans every stage, bad configs stop before anything
runs, the CLI reports errors in one line, and the demo DAG runs end to end through DVC."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import REPO

BIN = Path(sys.executable).parent
DEMO = ["--configfile", "config.yaml", "src/facesketch/configs/demo.yaml"]


def _env(activated: bool = False, **extra) -> dict:
    """The environment of a user who did (or did not) activate the virtual environment."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != BIN]
    env = dict(os.environ, PATH=os.pathsep.join(([str(BIN)] if activated else []) + path), **extra)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.pop("VIRTUAL_ENV", None)
    return env


def _snakemake(*args, cwd=REPO, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "snakemake"), *args], cwd=cwd, env=env or _env(), capture_output=True, text=True)


def test_dry_run_of_the_full_config_plans_every_stage(tmp_path):
    r = _snakemake("-n", "--cores", "all", "--resources", "gpu=1", "--directory", str(REPO),
                   env=_env(FS2K_ARCHIVE="/nonexistent/FS2K.zip"))
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, re.M))
    for rule in ("fetch_fs2k", "extract_fs2k", "align_fs2k", "maps", "contact_sheet", "train", "infer", "infer_cross",
                 "score", "tables", "plots", "all"):
        assert rule in counts, f"{rule} not planned"
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    # variants from published weights (the released HIDA) leave the run while their file is absent
    # (APDrawing's variants train on APDrawing: tests/test_apdrawing.py)
    n_variants = len([v for n, v in cfg["variants"].items()
                      if "pretrained" not in v and n not in cfg["apdrawing"]["variants"]])
    assert int(counts["train"]) == n_variants and int(counts["score"]) == n_variants
    assert int(counts["infer"]) == 3 * n_variants and int(counts["maps"]) == 3
    assert "resources: tmpdir=/tmp, gpu=1" in out  # GPU jobs declare it


def test_demo_dry_run_plans_the_demo(tmp_path):
    # --forceall: the whole DAG, also after `make demo` has run in this checkout (nothing would be left to plan)
    r = _snakemake("-n", "--forceall", *DEMO, env=_env(FS2K_ARCHIVE="/x/FS2K.zip"))
    assert r.returncode == 0, r.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", r.stdout + r.stderr, re.M))
    # Pix2Pix and HIDA with two seeds, the attention CycleGAN with one: 5 runs, 5 x 3 styles drawn,
    # and HIDA (the style-aware one) in all styles once per seed
    assert counts["train"] == "5" and counts["infer"] == "15" and counts["infer_cross"] == "2"


def test_released_results_are_scored_when_their_folder_exists(tmp_path):
    folder = tmp_path / "GENRE results"
    folder.mkdir()
    (folder / "photo1_image0001.png").write_bytes(b"")
    extra = tmp_path / "released.yaml"
    extra.write_text(yaml.safe_dump({"released": {"genre": {"path": str(folder), "framing": "original"}}}))
    r = _snakemake("-n", "-p", *DEMO, str(extra), "--", "tables", env=_env(FS2K_ARCHIVE="/x/FS2K.zip"))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "rule score_released" in out and "released_genre.parquet" in out
    assert f"facesketch evaluate '{folder}'" in out and "--framing original --label released:genre" in out
    assert "released_mdal" not in out  # folders that do not exist are left to the tables to explain


def test_jobs_find_the_cli_without_an_activated_venv(repo_copy, tiny_fs2k, tmp_path):
    """`.venv/bin/snakemake` from a shell that never activated the venv (as `make demo` runs it)."""
    overlay = tmp_path / "tiny.yaml"
    overlay.write_text(yaml.safe_dump({"fs2k": {"archive": str(tiny_fs2k), "sha256": None}}))
    r = _snakemake("--cores", "1", *DEMO, str(overlay), "--", "data/demo/fs2k/raw", cwd=repo_copy)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert (repo_copy / "data" / "demo" / "fs2k" / "raw" / "FS2K" / "anno_train.json").is_file()


def test_bad_config_stops_snakemake_before_anything_runs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("infer:\n  styles: [Style1, Style9]\n")
    r = _snakemake("-n", "--configfile", "config.yaml", str(bad))
    assert r.returncode != 0
    assert "infer.styles[1]: 'Style9' is not one of 'Style1', 'Style2', 'Style3'" in r.stdout + r.stderr


def test_cli_reports_user_errors_in_one_line(tmp_path):
    r = subprocess.run([str(BIN / "facesketch"), "validate-config", "--config", str(tmp_path / "none.yaml")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "facesketch: error: config file not found" in r.stderr and "Traceback" not in r.stderr
    ok = subprocess.run([str(BIN / "facesketch"), "validate-config", "--config", "config.yaml", "--config",
                         "src/facesketch/configs/demo.yaml"], cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: 20 variants")
    summary = subprocess.run([str(BIN / "facesketch"), "summary", "--variant", "hida_full"], cwd=REPO,
                             capture_output=True, text=True)
    assert summary.returncode == 0 and "G    params    80.89 M" in summary.stdout
    listing = subprocess.run([str(BIN / "facesketch"), "weights", "list", "--dir", str(tmp_path)], cwd=REPO,
                             capture_output=True, text=True)
    assert "mb1_120x120.pth" in listing.stdout and "missing" in listing.stdout
    assert "_ckpt_epoch_749.ckpt" in listing.stdout and "1q9S7nHaweH8OMmfVZ9Zv4FcHNHjfBsDy" in listing.stdout


def test_conda_envs_match_the_constraints():
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = version
    for env_file in (REPO / "envs").glob("*.yaml"):
        env = yaml.safe_load(env_file.read_text())
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        for req in pip:
            name, version = req.split("==")
            assert pins[name.lower()] == version, f"{env_file.name}: {req} differs from constraints.txt"
    for rules in (REPO / "rules").glob("*.smk"):
        text = rules.read_text()
        for env in re.findall(r'conda:\n\s+"\.\./envs/(\w+)\.yaml"', text):
            assert (REPO / "envs" / f"{env}.yaml").is_file()
        assert text.count("shell:") == text.count("conda:"), f"{rules.name}: a rule without a conda env"


def test_every_subpackage_ships():
    import tomllib

    declared = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.relative_to(REPO / "src").parts[:-1]) for p in (REPO / "src").rglob("__init__.py")}
    assert found | {"facesketch.schemas"} == declared


# --- the demo, end to end, through DVC ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.fs2k
def test_demo_end_to_end_with_dvc(fs2k_archive, repo_copy, tmp_path):
    """`dvc repro demo_report` runs the whole demo DAG; a second one does nothing; a report-only
    config change reruns only the report stage."""
    root = repo_copy
    env = _env(activated=True, FS2K_ARCHIVE=str(fs2k_archive), FACESKETCH_WEIGHTS=str(tmp_path / "no-weights"))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=root, check=True)
    first = subprocess.run([str(BIN / "dvc"), "repro", "demo_report"], cwd=root, env=env, capture_output=True,
                           text=True)
    assert first.returncode == 0, (first.stdout + first.stderr)[-5000:]
    res = root / "results" / "demo"
    for f in ("report.html", "metrics.json", "per_style.csv", "plots/grid_methods.png", "plots/training_curves.png",
              "maps/depth_contact_sheet.png", "tables/hida_table1.md", "tables/cyclegan_table2.tex"):
        assert (res / f).is_file(), f
    # every table exists, rows without results explain themselves, and the demo's rows hold
    # finite SCOOT and SSIM per style computed from the real sketches
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    for table in cfg["tables"]:
        long = pd.read_parquet(res / "tables" / f"{table}.parquet")
        missing = long[long.ours.isna()]
        assert (missing.reason != "").all(), table
    metrics = pd.concat(pd.read_parquet(p) for p in (res / "metrics").glob("*.parquet"))
    for variant in ("pix2pix", "hida_full", "cyclegan_attn_no_edge_normal"):
        for metric in ("SCOOT", "SSIM"):
            per_style = metrics[(metrics.variant == variant) & (metrics.metric == metric)].groupby("style_gt").value
            assert per_style.count().min() > 0 and per_style.mean().between(0, 1).all(), (variant, metric)
    t1 = pd.read_parquet(res / "tables" / "cyclegan_table2.parquet")
    row = t1[(t1.label == "w/o edge & normal") & (t1.metric == "SSIM") & (t1["style"] == "all")].iloc[0]
    # the cell is the mean over seeds of the per-image mean, the paper's number comes from the config
    ssim = metrics[(metrics.variant == "cyclegan_attn_no_edge_normal") & (metrics.metric == "SSIM")
                   & (metrics.scope == "image")]
    assert row.ours == pytest.approx(ssim.groupby("seed").value.mean().mean(), rel=1e-9)
    paper = next(r for r in cfg["tables"]["cyclegan_table2"]["rows"] if r["label"] == "w/o edge & normal")["paper"]
    assert row.paper == paper["SSIM"]
    # without weights (FACESKETCH_WEIGHTS is empty) every LPIPS cell of a run variant is empty and says why
    lp = t1[(t1.metric == "LPIPS") & (t1.source != "")]
    assert len(lp) and lp.ours.isna().all() and lp.reason.str.contains("lpips_alexnet").all()
    html = (res / "report.html").read_text(errors="replace")
    assert "Tables" in html and "Figures" in html
    # nothing changed: nothing runs
    again = subprocess.run([str(BIN / "dvc"), "repro", "demo_report"], cwd=root, env=env, capture_output=True,
                           text=True)
    assert again.returncode == 0 and "Running stage" not in again.stdout, again.stdout
    # a report-only change: only the report stage runs, and inside it only the plots
    demo = root / "src" / "facesketch" / "configs" / "demo.yaml"
    demo.write_text(demo.read_text().replace("grid_rows: 4", "grid_rows: 3"))
    third = subprocess.run([str(BIN / "dvc"), "repro", "demo_report"], cwd=root, env=env, capture_output=True,
                           text=True)
    assert third.returncode == 0, third.stdout[-3000:]
    ran = re.findall(r"Running stage '(\w+)'", third.stdout)
    assert ran == ["demo_report"], third.stdout
    assert "rule plots" in third.stdout + third.stderr and "rule train" not in third.stdout + third.stderr
    shutil.rmtree(root / ".dvc" / "cache", ignore_errors=True)
