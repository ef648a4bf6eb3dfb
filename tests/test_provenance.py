"""Provenance: jobs rerun when the code they run changes, and never because of modification times
(files that DVC restores or git checks out). The Snakemake calls are the ones dvc.yaml makes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
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
    exempt = {"fetch_fs2k", "extract_fs2k", "apdrawing_extract", "metfaces_extract"}
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


def test_new_mtimes_of_large_files_do_not_rerun(tmp_path):
    """20 MB: over Snakemake's default --max-checksum-file-size (1 MB), under DVC's calls' 256MB."""
    _, work = _toy_workflow(tmp_path, size=20 << 20)
    _checkout_order_mtimes(work)
    assert "Nothing to be done" in _snakemake(work, "--", "out.txt")


def test_a_real_content_change_still_reruns(tmp_path):
    _, work = _toy_workflow(tmp_path, size=20 << 20)
    _checkout_order_mtimes(work)
    # same size, one byte different, the old modification time: only the checksum can tell
    old = (work / "in.txt").stat()
    (work / "in.txt").write_text("y" + "x" * ((20 << 20) - 1) + "\n")
    os.utime(work / "in.txt", ns=(old.st_atime_ns, old.st_mtime_ns + 1))
    rerun = _snakemake(work, "--", "out.txt")
    assert "rule step1" in rerun and "rule step2" in rerun
    assert (work / "out.txt").read_text().startswith("y")


def _folder_workflow(tmp_path: Path, read_through_checksums: bool) -> Path:
    """make_folder writes a folder (and its checksum list, as the project's rules do); read_folder
    reads the folder, through the list or (the control) directly."""
    work = tmp_path / "work"
    work.mkdir()
    reader_input = "'folder.sha256'" if read_through_checksums else "'folder'"
    (work / "Snakefile").write_text(
        "rule make_folder:\n"
        "    input: 'in.txt'\n"
        "    output: folder=directory('folder'), sums='folder.sha256'\n"
        "    shell: 'mkdir -p {output.folder}/sub && cp {input} {output.folder}/a.txt"
        " && cp {input} {output.folder}/sub/b.txt && facesketch checksums {output.folder} --out {output.sums}'\n\n"
        "rule read_folder:\n"
        f"    input: {reader_input}\n"
        "    output: 'out.txt'\n"
        "    shell: 'cat folder/a.txt folder/sub/b.txt > {output}'\n"
    )
    (work / "in.txt").write_text("first\n")
    first = _snakemake(work, "--", "out.txt")
    assert "rule make_folder" in first and "rule read_folder" in first
    return work


def _restore_folder_mtimes(work: Path) -> None:
    """As a checkout in the wrong order: the reader's output oldest, then the folder (every file in
    it and Snakemake's .snakemake_timestamp), its list, and the producer's input newest."""
    now = time.time()
    order = [work / "out.txt", *sorted((work / "folder").rglob("*")), work / "folder", work / "folder.sha256",
             work / "in.txt"]
    for i, path in enumerate(order):
        os.utime(path, (now - 1000 + 10 * i, now - 1000 + 10 * i))


def test_new_mtimes_of_a_folder_output_do_not_rerun_its_readers(tmp_path):
    work = _folder_workflow(tmp_path, read_through_checksums=True)
    assert (work / "folder" / ".snakemake_timestamp").exists()  # the marker Snakemake dates folders by
    sums = (work / "folder.sha256").read_text().splitlines()
    assert [line.split("  ")[1] for line in sums] == ["a.txt", "sub/b.txt"]  # not the marker
    assert sums[0].split()[0] == hashlib.sha256(b"first\n").hexdigest()
    _restore_folder_mtimes(work)
    assert "Nothing to be done" in _snakemake(work, "--", "out.txt")


def test_without_the_checksum_list_a_folder_with_new_mtimes_reruns_its_readers(tmp_path):
    """The control: why rules read folders through their lists (Snakemake 9.27 records no checksum of
    a folder). If this starts to fail, Snakemake learnt to, and the lists could go."""
    work = _folder_workflow(tmp_path, read_through_checksums=False)
    _restore_folder_mtimes(work)
    assert "rule read_folder" in _snakemake(work, "--", "out.txt")


def test_new_folder_content_reruns_its_readers(tmp_path):
    work = _folder_workflow(tmp_path, read_through_checksums=True)
    # the producer's input changes: the folder, its list and then the reader are redone
    (work / "in.txt").write_text("second\n")
    rerun = _snakemake(work, "--", "out.txt")
    assert "rule make_folder" in rerun and "rule read_folder" in rerun
    assert (work / "out.txt").read_text() == "second\nsecond\n"
    # another version of the folder and its list restored together (a checkout of another commit
    # writes them now, newer than the reader's output): the reader reruns, the producer does not
    (work / "folder" / "a.txt").write_text("third\n")
    subprocess.run([str(BIN / "facesketch"), "checksums", str(work / "folder")], check=True, capture_output=True)
    earlier = (work / "folder.sha256").stat().st_mtime - 10
    os.utime(work / "out.txt", (earlier, earlier))
    again = _snakemake(work, "--", "out.txt")
    assert "rule read_folder" in again and "rule make_folder" not in again
    assert (work / "out.txt").read_text() == "third\nsecond\n"


# --- the project's workflow -----------------------------------------------------------------------

_DAG_INPUTS = r"""
import contextlib, io, json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.io import is_flagged
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

with SnakemakeApi(OutputSettings()) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=1, resources={"gpu": 1}),
                      config_settings=ConfigSettings(configfiles=[Path(p) for p in sys.argv[1:]]),
                      snakefile=Path("Snakefile"), workdir=Path("."))
    with contextlib.redirect_stdout(io.StringIO()):
        wf.dag(DAGSettings()).summary(detailed=False)  # builds the DAG of every job
    jobs = wf._workflow.dag.jobs
    print(json.dumps({
        "outputs": {str(f): is_flagged(f, "directory") for j in jobs for f in j.output},
        "inputs": [[j.rule.name, str(f), is_flagged(f, "ancient")] for j in jobs if not j.rule.norun for f in j.input],
    }))
"""

# what jobs may read from other jobs: checksum lists, and tables small enough for Snakemake to hash
_SMALL_SUFFIXES = (".sha256", ".parquet", ".csv", ".json")


@pytest.mark.parametrize("configs,table4", [(["config.yaml"], True),
                                            (["config.yaml", "src/facesketch/configs/demo.yaml"], False)],
                         ids=["full-with-table4-data", "demo"])
def test_no_job_reads_a_folder_or_a_checkpoint_of_another_job_directly(configs, table4, tmp_path):
    """Every input one job takes from another is a file whose checksum Snakemake records (so new
    modification times rerun nothing): never a folder, never a checkpoint. The full config with
    stand-in APDrawing and MetFaces archives plans Table 4's rules too."""
    wild = tmp_path / "wild"
    wild.mkdir()
    env = dict(os.environ, FS2K_ARCHIVE="/nonexistent/FS2K.zip", FACESKETCH_WILD=str(wild))
    if table4:
        from .test_apdrawing import make_apdrawing_zip
        from .test_metfaces import make_metfaces_zip

        make_apdrawing_zip(tmp_path / "APDrawingDB.zip")
        make_metfaces_zip(tmp_path / "metfaces.zip", n=3)
        env.update(APDRAWING_ARCHIVE=str(tmp_path / "APDrawingDB.zip"), METFACES_ARCHIVE=str(tmp_path / "metfaces.zip"))
    r = subprocess.run([sys.executable, "-c", _DAG_INPUTS, *configs], cwd=REPO, env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    dag = json.loads(r.stdout.strip().splitlines()[-1])
    outputs, read = dag["outputs"], 0
    assert any(outputs.values())  # the DAG has folder outputs (samples, maps, ...)
    for rule, path, ancient in dag["inputs"]:
        if path not in outputs:
            continue  # not made by a job (the user's files)
        read += 1
        assert not outputs[path], f"rule {rule} reads the folder {path}: read its checksum list instead"
        assert path.endswith(_SMALL_SUFFIXES) or ancient, f"rule {rule} reads {path}: a checksum list or a table"
    rules = {rule for rule, _, _ in dag["inputs"]}
    assert read > 50 and "draw_figure" in rules  # drawings planned too
    if table4:
        assert {"apdrawing_infer", "apdrawing_score", "metfaces_infer", "metfaces_score", "metfaces_grid"} <= rules


@pytest.mark.slow
@pytest.mark.fs2k
def test_restored_data_and_maps_of_the_workflow_rerun_nothing(fs2k_archive, repo_copy, tmp_path, monkeypatch):
    """The project's rules as DVC runs them (a few real FS2K pairs): FS2K's archive, extraction,
    alignment and depth maps, restored in the wrong order, rerun nothing; another version of the
    aligned photos (and their list) reruns the maps, not the alignment."""
    overlay = tmp_path / "few.yaml"
    overlay.write_text(yaml.safe_dump({"fs2k": {"archive": str(fs2k_archive), "subset": {"per_group": 1, "seed": 0}}}))
    configs = ["--configfile", "config.yaml", "src/facesketch/configs/demo.yaml", str(overlay)]
    target = ["--", "data/demo/maps/depth.sha256"]
    monkeypatch.setenv("FACESKETCH_WEIGHTS", str(tmp_path / "no-weights"))  # the demo's maps need none
    ran = _snakemake(repo_copy, *configs, *target)
    assert all(f"rule {r}:" in ran for r in ("fetch_fs2k", "extract_fs2k", "align_fs2k", "maps")), ran[-3000:]
    data = repo_copy / "data" / "demo"
    # consumers oldest, producers newest: every file, in the folders too
    order = ["maps/depth", "maps/depth.sha256", "fs2k/aligned", "fs2k/aligned.sha256", "fs2k/manifest.parquet",
             "fs2k/skipped.csv", "fs2k/raw", "fs2k/raw.sha256", "fs2k/FS2K.zip"]
    now = time.time()
    for i, name in enumerate(order):
        path = data / name
        for f in [*path.rglob("*"), path] if path.is_dir() else [path]:
            os.utime(f, (now - 1000 + 100 * i, now - 1000 + 100 * i))
    assert "Nothing to be done" in _snakemake(repo_copy, "-n", *configs, *target)
    # another version of one aligned photo: its list changes, the maps rerun
    photo = sorted((data / "fs2k" / "aligned").rglob("*.png"))[0]
    photo.write_bytes(photo.read_bytes() + b"\0")
    subprocess.run([str(BIN / "facesketch"), "checksums", str(data / "fs2k" / "aligned")], check=True,
                   capture_output=True)
    plan = _snakemake(repo_copy, "-n", *configs, *target)
    assert "rule maps:" in plan and "rule align_fs2k:" not in plan, plan[-3000:]
