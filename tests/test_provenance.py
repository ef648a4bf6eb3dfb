"""Provenance: jobs rerun when the code they run changes, and never because of modification times
(files that DVC restores or git checks out). The Snakemake calls are the ones dvc.yaml makes."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from facesketch.workflow import PACKAGE_DIR, code_files, code_fingerprint

from .conftest import REPO

BIN = Path(sys.executable).parent


def _package(root: Path) -> Path:
    pkg = root / "facesketch"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "STYLES = 3\n",
        "sub/__init__.py": "",
        "sub/run.py": ("from facesketch.sub.helper import f\n\n"
                       "def main():\n    from .lazy import g\n    return f() + g()\n"),
        "sub/helper.py": "from ..base import h\n\ndef f():\n    return h()\n",
        "sub/lazy.py": "def g():\n    return 1\n",
        "base.py": "def h():\n    return 2\n",
        "other.py": "def unrelated():\n    return 0\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    return pkg


def test_fingerprint_follows_the_imports_of_the_module_a_rule_runs(tmp_path):
    pkg = _package(tmp_path)
    names = {p.relative_to(pkg).as_posix() for p in code_files("facesketch.sub.run", root=pkg)}
    # absolute, relative (..base), lazy (inside a function) imports and parent packages; not other.py
    assert names == {"__init__.py", "sub/__init__.py", "sub/run.py", "sub/helper.py", "sub/lazy.py", "base.py"}
    before = code_fingerprint("facesketch.sub.run", root=pkg)
    (pkg / "other.py").write_text("def unrelated():\n    return 1\n")
    assert code_fingerprint("facesketch.sub.run", root=pkg) == before
    for changed in ("base.py", "sub/lazy.py", "__init__.py"):
        (pkg / changed).write_text((pkg / changed).read_text() + "# changed\n")
        after = code_fingerprint("facesketch.sub.run", root=pkg)
        assert after != before, changed
        before = after


def _rules_fingerprints() -> dict[str, list[str]]:
    """rules file -> the modules its rules fingerprint."""
    pattern = r'code_fingerprint\("([\w.]+)"\)'
    return {p.name: re.findall(pattern, p.read_text()) for p in (REPO / "rules").glob("*.smk")}


def test_every_rule_that_computes_fingerprints_the_code_it_runs():
    # fetch_fs2k (checked against its sha256) and the extractions (safe unzips) compute nothing
    exempt = {"fetch_fs2k", "extract_fs2k", "apdrawing_extract"}
    for path in (REPO / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", path.read_text(), re.M | re.S):
            if "facesketch " in body and name not in exempt:
                assert "code=code_fingerprint(" in body, f"{path.name}: rule {name} has no code fingerprint"
    for modules in _rules_fingerprints().values():
        for module in modules:
            assert code_files(module)  # raises for a module that does not exist


def test_dvc_stages_depend_on_all_the_code_their_jobs_run():
    """Otherwise dvc repro skips a stage whose jobs' code changed and dvc.lock keeps a stale result."""
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    fingerprints = _rules_fingerprints()
    checked = 0
    for stage, body in dvc["stages"].items():
        deps = [d for d in body.get("deps", [])]
        for rules in [d for d in deps if d.startswith("rules/") and d.endswith(".smk")]:
            for module in fingerprints[Path(rules).name]:
                for f in code_files(module):
                    rel = (Path("src/facesketch") / f.relative_to(PACKAGE_DIR)).as_posix()
                    assert any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps), (stage, rel)
                    checked += 1
    assert checked > 50


def _dvc_snakemake_args() -> list[str]:
    smk = next(v["smk"] for v in yaml.safe_load((REPO / "dvc.yaml").read_text())["vars"] if "smk" in v)
    args = shlex.split(smk)
    assert args[0] == "snakemake"
    return args[1:]


def test_dvc_snakemake_calls_ignore_modification_times():
    args = _dvc_snakemake_args()
    i = args.index("--rerun-triggers")
    triggers = []
    for a in args[i + 1:]:
        if a.startswith("-"):
            break
        triggers.append(a)
    assert triggers and "mtime" not in triggers and {"code", "input", "params"} <= set(triggers)
    for stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].values():
        cmds = stage["cmd"] if isinstance(stage["cmd"], list) else [stage["cmd"]]
        for cmd in cmds:
            if cmd.startswith("snakemake") and "--report" not in cmd:
                raise AssertionError(f"a Snakemake call without ${{smk}}: {cmd}")


def _snakemake(workdir: Path, *args) -> str:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    r = subprocess.run([str(BIN / "snakemake"), *_dvc_snakemake_args(), *args], cwd=workdir, capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return r.stdout + r.stderr


def _toy_workflow(tmp_path: Path, size: int) -> tuple[Path, Path]:
    pkg = _package(tmp_path / "code")
    work = tmp_path / "work"
    work.mkdir()
    (work / "Snakefile").write_text(
        "from pathlib import Path\n"
        "from facesketch.workflow import code_fingerprint\n\n"
        "rule step1:\n"
        "    input: 'in.txt'\n    output: 'mid.txt'\n"
        f"    params: code=code_fingerprint('facesketch.sub.run', root=Path({str(pkg)!r}))\n"
        "    shell: 'cp {input} {output}'\n\n"
        "rule step2:\n"
        "    input: 'mid.txt'\n    output: 'out.txt'\n"
        f"    params: code=code_fingerprint('facesketch.other', root=Path({str(pkg)!r}))\n"
        "    shell: 'cp {input} {output}'\n"
    )
    (work / "in.txt").write_text("x" * size + "\n")
    first = _snakemake(work, "--", "out.txt")
    assert "rule step1" in first and "rule step2" in first
    return pkg, work


def _checkout_order_mtimes(work: Path) -> None:
    """Same content, new modification times, each file newer than the one made from it (as after
    a `dvc checkout` or `git checkout` that wrote them in the wrong order)."""
    now = (work / "out.txt").stat().st_mtime
    for age, name in ((2000, "out.txt"), (1000, "mid.txt"), (0, "in.txt")):
        os.utime(work / name, (now - age, now - age))


def test_snakemake_as_dvc_calls_it_reruns_exactly_the_jobs_whose_code_changed(tmp_path):
    pkg, work = _toy_workflow(tmp_path, size=10)
    _checkout_order_mtimes(work)  # small files: Snakemake compares their recorded checksums
    assert "Nothing to be done" in _snakemake(work, "--", "out.txt")
    # the code step1 runs changes (a module it imports): step1 reruns (and step2 after it)
    (pkg / "base.py").write_text("def h():\n    return 3\n")
    rerun = _snakemake(work, "--", "out.txt")
    assert "rule step1" in rerun and "params" in rerun.lower()
    assert "Nothing to be done" in _snakemake(work, "--", "out.txt")
    # code that only step2 runs changes: step1 stays
    (pkg / "other.py").write_text("def unrelated():\n    return 5\n")
    last = _snakemake(work, "--", "out.txt")
    assert "rule step2" in last and "rule step1" not in last


@pytest.mark.xfail(strict=True, reason="Snakemake 9.27 ignores --rerun-triggers for modification times: "
                   "RerunTrigger.MTIME is never consulted and dag.py reruns on 'Updated input files' unless "
                   "the file is at most --max-checksum-file-size and its checksum was recorded (never for "
                   "folders). Strict: passes, and so fails here, once Snakemake honours the setting.")
def test_new_mtimes_of_large_files_do_not_rerun(tmp_path):
    _, work = _toy_workflow(tmp_path, size=20 << 20)
    _checkout_order_mtimes(work)
    assert "Nothing to be done" in _snakemake(work, "--", "out.txt")
