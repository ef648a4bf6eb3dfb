"""DVC experiments compare what they should: metrics and plot data are DVC outputs kept in git
(not ignored, not cached), so `dvc exp show`, `dvc metrics diff` and `dvc plots diff` see them in
every commit and experiment; the files are the ones the workflow writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import REPO

BIN = Path(sys.executable).parent


def _report_stages():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: stages[name] for name in ("report", "demo_report")}


def test_metrics_and_plot_data_are_in_git_and_not_in_the_cache():
    for name, stage in _report_stages().items():
        losses = {"report": "results/dvc_losses", "demo_report": "results/demo/dvc_losses"}[name]
        outs = {k: v for o in stage["outs"] for k, v in o.items()}
        entries = stage["metrics"] + stage["plots"] + [{losses: outs[losses]}]
        paths = [next(iter(e)) for e in entries]
        for entry in entries:
            (path, opts), = entry.items()
            assert opts["cache"] is False, (name, path)
        r = subprocess.run(["git", "check-ignore", "--no-index", *[f"{p}/x.csv" if "dvc_" in p else p for p in paths]],
                           cwd=REPO, capture_output=True, text=True)
        assert r.stdout == "", f"git ignores {r.stdout.split()}"  # they must reach commits
    # what is not worth a commit stays ignored
    kept_out = ["results/demo/report.html", "results/checkpoints/a/0/model.pt"]
    r = subprocess.run(["git", "check-ignore", "--no-index", *kept_out], cwd=REPO, capture_output=True, text=True)
    assert len(r.stdout.split()) == 2


def test_plots_are_per_metric_and_per_variant_from_files_the_rules_write():
    rules = (REPO / "rules" / "report.smk").read_text()
    assert 'dvc_plots=directory(f"{RES}/dvc_plots")' in rules and 'losses=directory(f"{RES}/dvc_losses")' in rules
    top = {next(iter(e)): next(iter(e.values())) for e in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]}
    for name, stage in _report_stages().items():
        plots = {next(iter(e)): next(iter(e.values())) for e in stage["plots"]}
        prefix = "results" if name == "report" else "results/demo"
        assert plots[f"{prefix}/dvc_plots"]["y"] == "method" and plots[f"{prefix}/dvc_plots"]["x"] == "ours"
        assert top[f"{prefix}/dvc_losses"]["x"] == "epoch"
        assert set(top[f"{prefix}/dvc_losses"]["y"]) == {"generator", "discriminator"}


def test_dvc_accepts_the_pipeline_and_draws_the_loss_plots(tmp_path):
    """dvc.yaml validates (DVC's own schema), and its loss plot definition renders one chart per
    variant file with both series."""
    r = subprocess.run([str(BIN / "dvc"), "stage", "list"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0 and "demo_report" in r.stdout, r.stdout + r.stderr
    repo = tmp_path / "repo"
    (repo / "results" / "demo" / "dvc_losses").mkdir(parents=True)
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=repo, check=True)
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]}))
    (repo / "results" / "dvc_losses").mkdir(parents=True)
    for folder in ("results/demo/dvc_losses", "results/dvc_losses"):
        for v, g in (("hida_full", 3.0), ("pix2pix", 4.0)):
            (repo / folder / f"{v}.csv").write_text(f"epoch,generator,discriminator\n1,{g},0.7\n")
    r = subprocess.run([str(BIN / "dvc"), "plots", "show", "--json"], cwd=repo, capture_output=True, text=True)
    data = json.loads(r.stdout)
    assert not data.get("errors"), data.get("errors")
    assert {"results/demo/dvc_losses/hida_full.csv", "results/demo/dvc_losses/pix2pix.csv"} <= set(data["data"])
    fields = {v["field"] for v in data["data"]["results/demo/dvc_losses/hida_full.csv"][0]["content"]["data"]["values"]}
    assert fields == {"generator", "discriminator"}
