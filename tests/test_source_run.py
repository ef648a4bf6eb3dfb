"""Running from source, as the rules do inside `--sdm conda` environments: there facesketch is not
installed, so each job's shell prefix runs the CLI from the checkout's src/. Simulated without
conda: a `python` that sees the venv's third-party packages but not the installed facesketch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from facesketch.workflow import SHELL_PREFIX

BIN = Path(sys.executable).parent
DEMO = ["--configfile", "config.yaml", "src/facesketch/configs/demo.yaml"]


def _conda_like_env(tmp_path: Path) -> dict:
    """PATH has a `python` whose site-packages hold the dependencies but whose .pth files (the
    editable install of facesketch) are not run (-S), and no `facesketch` command."""
    fake = tmp_path / "env-bin"
    fake.mkdir()
    (fake / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    (fake / "python").chmod(0o755)
    path = [str(fake)] + [p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != BIN]
    site_packages = [p for p in sys.path if p.endswith("site-packages")]  # (a venv may chain to another's)
    env = dict(os.environ, PATH=os.pathsep.join(path), PYTHONPATH=os.pathsep.join(site_packages))
    env.pop("VIRTUAL_ENV", None)
    return env


def _job(cmd: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    prefix = SHELL_PREFIX.replace("{{", "{").replace("}}", "}")  # as Snakemake formats it
    return subprocess.run(["bash", "-c", prefix + cmd], cwd=cwd, env=env, capture_output=True, text=True)


def test_rules_run_from_source_where_facesketch_is_not_installed(repo_copy, tiny_fs2k, tmp_path):
    env = _conda_like_env(tmp_path)
    # the simulation holds: this python cannot import the installed package, and has no CLI
    outside = subprocess.run(["python", "-c", "import facesketch"], cwd=tmp_path, env=env, capture_output=True)
    assert outside.returncode != 0
    assert _job("command -v facesketch || true", repo_copy, env).stdout.strip() in ("", "facesketch")
    # a command that loads the config (it needs the schema, which src/ does not hold as a package)
    r = _job("facesketch validate-config --config config.yaml --config src/facesketch/configs/demo.yaml", repo_copy,
             env)
    assert r.returncode == 0 and r.stdout.startswith("ok: "), r.stderr[-2000:]
    # the data rules' own commands, as Snakemake plans them, run from source (align stops at the tiny
    # archive's counts, which are not the official ones, so the test runs the two before it)
    overlay = tmp_path / "tiny.yaml"
    overlay.write_text(yaml.safe_dump({"fs2k": {"archive": str(tiny_fs2k), "sha256": None}}))
    plan = subprocess.run([str(BIN / "snakemake"), "-n", "-p", "--forceall", "--cores", "1", *DEMO, str(overlay),
                           "--", "data/demo/fs2k/raw"], cwd=repo_copy, capture_output=True, text=True)
    assert plan.returncode == 0, plan.stderr[-2000:]
    commands = re.findall(r"^Shell command: (facesketch (?:fetch|extract) .*)$", plan.stdout + plan.stderr, re.M)
    assert [c.split()[1] for c in commands] == ["fetch", "extract"]
    (repo_copy / "results" / "demo" / "logs").mkdir(parents=True, exist_ok=True)
    (repo_copy / "data" / "demo" / "fs2k").mkdir(parents=True, exist_ok=True)
    # Snakemake hands jobs its environment, where the workflow put the archive's path (never a
    # param: see rules/data.smk); the plan's printed command reads it from there
    env["FACESKETCH_FS2K_SOURCE"] = str(tiny_fs2k)
    for cmd in commands:
        r = _job(cmd, repo_copy, env)
        logs = "".join(p.read_text() for p in (repo_copy / "results" / "demo" / "logs").glob("*.log"))
        assert r.returncode == 0, (cmd, r.stderr[-2000:], logs[-2000:])
    assert (repo_copy / "data" / "demo" / "fs2k" / "raw" / "FS2K" / "anno_train.json").is_file()
