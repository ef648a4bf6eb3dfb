"""DVC experiments compare what they should: metrics and plot data are DVC outputs kept in git
(not ignored, not cached), so `dvc exp show`, `dvc metrics diff` and `dvc plots diff` see them in
every commit and experiment; the files are the ones the workflow writes."""

from __future__ import annotations

import subprocess

import yaml

from .conftest import REPO


def _report_stages():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: stages[name] for name in ("report", "demo_report")}


def test_metrics_and_plot_data_are_in_git_and_not_in_the_cache():
    for name, stage in _report_stages().items():
        entries = stage["metrics"] + stage["plots"]
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
    for name, stage in _report_stages().items():
        plots = {next(iter(e)): next(iter(e.values())) for e in stage["plots"]}
        prefix = "results" if name == "report" else "results/demo"
        assert plots[f"{prefix}/dvc_plots"]["y"] == "method" and plots[f"{prefix}/dvc_plots"]["x"] == "ours"
        assert plots[f"{prefix}/dvc_losses"]["x"] == "epoch"
        assert set(plots[f"{prefix}/dvc_losses"]["y"]) == {"generator", "discriminator"}
