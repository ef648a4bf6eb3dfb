"""Issue 16, one test per point: no silent wrong number, no lost data, no traceback.

Kills are real signals to real processes; the read-only folder is made read-only by
permissions, for a non-root user (as root, the command under test runs as `nobody`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from facesketch.config import load_config
from facesketch.data import archive
from facesketch.errors import ConfigError, DataError
from facesketch.fileio import sha256_file

from .conftest import REPO

BIN = Path(sys.executable).parent
DEMO = ["--configfile", "config.yaml", "src/facesketch/configs/demo.yaml"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- point 2: moving the archive destroys nothing -------------------------------------------------

def _snakemake(*args, cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "snakemake"), *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.slow  # real Snakemake / training runs in subprocesses (a minute or two on CI)
def test_moved_archive_reruns_nothing_and_keeps_the_verified_copy(repo_copy, tiny_fs2k, tmp_path):
    overlay = tmp_path / "tiny.yaml"
    overlay.write_text(yaml.safe_dump({"fs2k": {"sha256": sha256_file(tiny_fs2k)}}))
    env = {k: v for k, v in os.environ.items() if k not in ("FS2K_ARCHIVE", "VIRTUAL_ENV")}
    target = ["--", "data/demo/fs2k/raw"]
    first = _snakemake("--cores", "1", *DEMO, str(overlay), *target, cwd=repo_copy,
                       env=dict(env, FS2K_ARCHIVE=str(tiny_fs2k)))
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    copy = repo_copy / "data" / "demo" / "fs2k" / "FS2K.zip"
    before = copy.stat().st_mtime_ns
    moved = tmp_path / "elsewhere" / "FS2K.zip"
    moved.parent.mkdir()
    shutil.move(tiny_fs2k, moved)
    for where in ({}, {"FS2K_ARCHIVE": str(moved)}):  # a shell without the variable; the archive moved
        plan = _snakemake("-n", "--cores", "1", *DEMO, str(overlay), *target, cwd=repo_copy, env=dict(env, **where))
        out = plan.stdout + plan.stderr
        assert plan.returncode == 0, out[-3000:]
        assert "Nothing to be done" in out, out[-3000:]
    again = _snakemake("--cores", "1", *DEMO, str(overlay), *target, cwd=repo_copy, env=env)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert copy.stat().st_mtime_ns == before  # not deleted, not copied again, no download tried
    # a fresh copy of the same verified archive (a newer mtime) does not invalidate the extraction
    os.utime(copy, ns=(before + 10**12, before + 10**12))
    plan = _snakemake("-n", "--cores", "1", *DEMO, str(overlay), *target, cwd=repo_copy, env=env)
    assert "Nothing to be done" in plan.stdout + plan.stderr, (plan.stdout + plan.stderr)[-3000:]


def test_fetch_keeps_a_verified_copy_when_the_original_is_gone(tiny_fs2k, tmp_path):
    digest = sha256_file(tiny_fs2k)
    out = archive.fetch(tmp_path / "d" / "FS2K.zip", str(tiny_fs2k), "id", digest)
    tiny_fs2k.unlink()
    # no source, no download: the verified copy is up to date
    assert archive.fetch(out, str(tiny_fs2k), "unreachable", digest) == out
    assert archive.fetch(out, None, "unreachable", digest) == out
    assert sha256_file(out) == digest


# --- point 6: config edges -----------------------------------------------------------------------

def _config_with(tmp_path, text: str) -> Path:
    extra = tmp_path / "extra.yaml"
    extra.write_text(text)
    return extra


def test_number_written_as_yaml11_string_says_how_to_write_it(tmp_path):
    extra = _config_with(tmp_path, "train_defaults:\n  optimizer:\n    lr_g: 2e-4\n")
    with pytest.raises(ConfigError, match=r"lr_g: expected number, got str '2e-4' .*write it as 2\.0e-4"):
        load_config([REPO / "config.yaml", extra])


def test_decay_longer_than_training_is_refused(tmp_path):
    extra = _config_with(tmp_path, "train_overrides:\n  schedule: {epochs: 10, decay_epochs: 25}\n")
    with pytest.raises(ConfigError, match=r"schedule\.decay_epochs: 25 is more than epochs \(10\).*0\.38x"):
        load_config([REPO / "config.yaml", extra])


def test_yaml_syntax_error_names_the_file_among_three(tmp_path):
    good = _config_with(tmp_path, "run: {variants: null}\n")
    bad = tmp_path / "third.yaml"
    bad.write_text("name: x\n  oops: [\n")
    r = subprocess.run([str(BIN / "facesketch"), "validate-config", "--config", "config.yaml", "--config", str(good),
                        "--config", str(bad)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"facesketch: error: {bad}: not valid YAML" in r.stderr and "line 2" in r.stderr


def test_archive_given_as_a_folder_says_so(tmp_path, tiny_fs2k):
    extra = _config_with(tmp_path, f"fs2k: {{archive: {tmp_path}}}\n")
    with pytest.raises(ConfigError, match=r"fs2k\.archive: .* is a folder; give the path of the FS2K\.zip"):
        load_config([REPO / "config.yaml", extra])
    with pytest.raises(DataError, match=r"is a folder; give the path of the FS2K\.zip file"):
        archive.fetch(tmp_path / "out" / "FS2K.zip", str(tmp_path), "id", None)


def test_snakemake_config_error_has_no_stack_frames(tmp_path):
    extra = _config_with(tmp_path, "train_defaults:\n  optimizer:\n    lr_g: 2e-4\n")
    r = _snakemake("-n", "--configfile", "config.yaml", str(extra), cwd=REPO, env=dict(os.environ))
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "lr_g: expected number, got str '2e-4'" in out
    assert not re.search(r'^\s*File ".*", line \d+', out, re.M), out


# --- point 8: extracted data under the user's umask ------------------------------------------------

def test_extracted_tree_gets_the_users_umask(tiny_fs2k, tmp_path):
    out = archive.extract(tiny_fs2k, tmp_path / "raw")
    expected = 0o777 & ~_umask()
    for folder in (out, out / "FS2K", out / "FS2K" / "photo" / "photo1"):
        assert stat.S_IMODE(folder.stat().st_mode) == expected, folder
    assert stat.S_IMODE((out / "extracted.json").stat().st_mode) == 0o666 & ~_umask()


def test_snakemake_names_the_default_config_file_with_a_syntax_error(repo_copy):
    (repo_copy / "config.yaml").write_text("name: x\n  oops: [\n")
    r = _snakemake("-n", cwd=repo_copy, env=dict(os.environ))
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "config.yaml: not valid YAML" in out and "line 2" in out, out[-2000:]


# --- point 5: weights without a fingerprint are never "ok" ---------------------------------------

def test_no_registry_entry_calls_an_arbitrary_file_ok(tmp_path, capsys):
    from facesketch import cli
    from facesketch.maps import weights

    for name, w in weights.REGISTRY.items():
        path = tmp_path / w.folder / w.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not the real weights of " + name.encode())
    states = {r["name"]: r["state"] for r in weights.status_rows(tmp_path)}
    for name, w in weights.REGISTRY.items():
        if w.has_fingerprint:
            assert states[name].startswith("BAD"), (name, states[name])
        else:
            assert states[name].startswith("present, unverified: no fingerprint is published"), (name, states[name])
    assert "ok" not in states.values()
    rc = cli.main(["weights", "check", "dsine", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("present, unverified dsine")
    assert "no fingerprint is published for dsine.pt" in out and "\nok" not in "\n" + out
    assert not (tmp_path / "dsine" / "dsine.pt.verified").exists()


# --- point 4: checkpoint messages and the previous good checkpoint ----------------------------------

from .test_train import _run, cfg, tiny, tiny_maps  # noqa: E402,F401 - fixtures shared with the training tests


@pytest.mark.slow  # real Snakemake / training runs in subprocesses (a minute or two on CI)
def test_unreadable_last_checkpoint_falls_back_to_the_previous_one(cfg, tiny_prepared, tiny_maps, tmp_path):  # noqa: F811
    from facesketch.train import checkpoint as ckpt

    spec = tiny(cfg["resolved"]["pix2pix"], epochs=2, decay=0)
    spec["max_steps_per_epoch"] = 1
    first = _run(spec, tiny_prepared, tiny_maps, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    last, prev = tmp_path / "last.pt", tmp_path / "last.prev.pt"
    assert ckpt.load(last)["epoch"] == 2 and ckpt.load(prev)["epoch"] == 1
    last.write_bytes(last.read_bytes()[:1000])  # cut short, as by a full disk or a bad copy
    again = _run(spec, tiny_prepared, tiny_maps, tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "last.pt is unreadable" in again.stderr and "Resuming from the previous checkpoint" in again.stderr
    assert "resuming after epoch 1 of 2" in again.stderr
    assert ckpt.load(last)["epoch"] == 2 and (tmp_path / "last.bad.pt").is_file()
    # no previous checkpoint to fall back to: one line that says to delete it
    prev.unlink()
    last.write_bytes(b"garbage")
    broken = _run(spec, tiny_prepared, tiny_maps, tmp_path)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert f"Delete it to train this run from scratch (rm {last})" in broken.stderr


def test_unsafe_pickle_is_called_unsafe_never_loaded_with_weights_only_false(tmp_path):
    import torch

    from facesketch.errors import WeightsError
    from facesketch.metrics.networks import load_lpips
    from facesketch.train import checkpoint as ckpt

    marker = tmp_path / "pwned"
    evil = tmp_path / "last.pt"
    torch.save({"epoch": _Evil(str(marker))}, evil)
    with pytest.raises(DataError) as e:
        ckpt.load(evil)
    text = str(e.value)
    assert f"{evil} is not a safe facesketch checkpoint" in text and "do not load it" in text
    assert "weights_only" not in text and not marker.exists()
    w = tmp_path / "lpips" / "alexnet-owt-7be5be79.pth"
    w.parent.mkdir()
    torch.save({"features.0.weight": _Evil(str(marker))}, w)
    (w.parent / (w.name + ".verified")).write_text(f"{w.stat().st_size} {w.stat().st_mtime_ns} sha256 "
                                                     "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02")
    with pytest.raises(WeightsError, match="is not a safe PyTorch state dict") as e:
        load_lpips(tmp_path)
    assert "weights_only" not in str(e.value) and not marker.exists()


class _Evil:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


# --- point 7: one trainer per run folder ---------------------------------------------------------------

def test_second_trainer_in_a_locked_run_folder_is_refused_by_name(tmp_path):
    import socket

    from facesketch.train.run import train

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from facesketch.runlock import run_lock\n"
        f"with run_lock({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DataError) as e:
            train({"name": "x"}, tmp_path / "manifest.parquet", tmp_path, tmp_path, device="cpu")
        text = str(e.value)
        assert f"PID {holder.pid} on host {socket.gethostname()}" in text and "in use" in text
    finally:
        holder.kill()
        holder.wait()
    # the kernel drops the lock of a killed owner: no stale lock to clear by hand
    with pytest.raises(DataError, match="manifest"):
        train({"name": "x", "family": "paired", "input": {"image": 64, "pad": 0, "crop": 64}, "batch_size": 1,
               "losses": {}, "generator": {"arch": "unet"}, "discriminator": {"arch": "patchgan", "inputs": ["photo"]}},
              tmp_path / "manifest.parquet", tmp_path, tmp_path, device="cpu")


# --- point 3: file-system and archive errors are one line, checked before any work ----------------------

def _damaged_zip(path: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("FS2K/anno_train.json", b"[" + b" " * 200 + b"]")
    data = bytearray(path.read_bytes())
    at = data.index(b"[") + 50
    data[at] = ord("x")  # the stored bytes no longer match the entry's CRC-32
    path.write_bytes(bytes(data))
    return path


def test_bad_crc_in_the_archive_is_one_line_naming_the_entry(tmp_path):
    bad = _damaged_zip(tmp_path / "FS2K.zip")
    r = subprocess.run([str(BIN / "facesketch"), "extract", str(bad), "--out", str(tmp_path / "raw")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"facesketch: error: {bad}: entry 'FS2K/anno_train.json' is damaged" in r.stderr
    assert "delete it and fetch it again" in r.stderr
    assert not (tmp_path / "raw").exists() and not list(tmp_path.glob(".raw.partial-*"))


@pytest.fixture
def readonly_dir():
    """A folder this test's commands cannot write to: by permissions, for a non-root user. As
    root (permissions do not stop root) the commands run as `nobody`; see ``as_user``."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="fs-ro-"))
    os.chmod(base, 0o755)
    ro = base / "results"
    ro.mkdir()
    os.chmod(ro, 0o555)
    yield ro
    os.chmod(ro, 0o755)
    shutil.rmtree(base)


def as_user(cmd: list[str]) -> list[str]:
    """``cmd`` as a user that permissions stop: ourselves, or `nobody` when we are root."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): cannot drop to a user that permissions stop")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]


def test_readonly_output_folder_is_refused_before_any_work(readonly_dir):
    from facesketch.report.tables import table_spec

    spec = json.dumps(table_spec(load_config(REPO / "config.yaml"), {}))
    r = subprocess.run(as_user([sys.executable, "-m", "facesketch", "tables", "--spec", spec, "--out",
                                str(readonly_dir / "tables")]), capture_output=True, text=True, cwd="/")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"facesketch: error: cannot write {readonly_dir / 'tables'}: Permission denied" in r.stderr
    # before any work: the folder is refused although the inputs do not even exist
    r = subprocess.run(as_user([sys.executable, "-m", "facesketch", "train", "--spec", "{}", "--manifest",
                                "/nonexistent/m.parquet", "--maps", "/nonexistent",
                                "--out", str(readonly_dir / "run")]),
                       capture_output=True, text=True, cwd="/")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"cannot write {readonly_dir / 'run'}" in r.stderr and "m.parquet" not in r.stderr


# --- point 7: killed scoring leaves no workers behind -----------------------------------------------

_SCORER = """
import sys
from facesketch.metrics.evaluate import Job, cpu_metrics
a, b = sys.argv[1], sys.argv[2]
jobs = [Job(i, a, "aligned", "aligned", b, b, 96, 96, 0, 0, 96) for i in range(4000)]
print("scoring", flush=True)
cpu_metrics(jobs, ("SCOOT", "SSIM", "MS-SSIM", "FSIM"), workers=2)
"""


def test_killed_scorer_takes_its_workers_with_it(tmp_path):
    import signal
    import time

    import numpy as np
    import psutil
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (96, 96), dtype=np.uint8)).save(tmp_path / name)
    parent = subprocess.Popen([sys.executable, "-c", _SCORER, str(tmp_path / "a.png"), str(tmp_path / "b.png")],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    workers: list[psutil.Process] = []
    try:
        assert parent.stdout.readline().strip() == "scoring"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the pool's workers (spawned, plus the resource tracker)
            workers = [c for c in psutil.Process(parent.pid).children()
                       if "resource_tracker" not in " ".join(c.cmdline())]
            if len(workers) >= 2:
                break
            time.sleep(0.2)
        assert len(workers) >= 2, "no workers started"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        gone, alive = psutil.wait_procs(workers, timeout=15)
        assert not alive, f"orphaned workers still running: {[p.pid for p in alive]}"
    finally:
        parent.kill()
        for w in workers:  # only the processes this test started
            try:
                w.kill()
            except psutil.NoSuchProcess:
                pass


# --- point 1: evaluation refuses, converts or names what it would score wrongly ---------------------------

def _results_like_the_ground_truth(tiny_prepared, folder: Path):
    import numpy as np
    import pandas as pd
    from PIL import Image

    manifest = pd.read_parquet(tiny_prepared / "manifest.parquet")
    test = manifest[manifest.split == "test"].reset_index(drop=True)
    folder.mkdir(parents=True, exist_ok=True)
    for r in test.itertuples():
        Image.fromarray(np.asarray(Image.open(tiny_prepared / r.sketch).convert("L"))).save(folder / f"{r.id}.png")
    return test


def test_sixteen_bit_result_is_converted_not_clipped_to_white(tiny_prepared, tmp_path):
    import numpy as np
    from PIL import Image

    from facesketch.metrics.evaluate import evaluate_folder
    from facesketch.metrics.inputs import issues_path

    test = _results_like_the_ground_truth(tiny_prepared, tmp_path / "res")
    victim = tmp_path / "res" / f"{test.id[0]}.png"
    grey = np.asarray(Image.open(victim)).astype(np.uint16)
    Image.fromarray(grey * 257).save(victim)  # the same picture at 16 bits (65535 = white)
    assert Image.open(victim).mode.startswith("I;16")
    df = evaluate_folder(tmp_path / "res", tiny_prepared / "manifest.parquet", tmp_path / "o.parquet",
                         {"names": ["SSIM"], "framing": "aligned"}, tmp_path, framing="aligned", device="cpu")
    # an exact copy of the ground truth scores SSIM 1, whatever its bit depth
    assert df[df.image_id == test.id[0]].value.iloc[0] == pytest.approx(1.0)
    issues = __import__("pandas").read_parquet(issues_path(tmp_path / "o.parquet"))
    assert list(issues[issues.issue == "converted"].file) == [str(victim)]


def test_float_result_is_refused_by_name(tiny_prepared, tmp_path):
    import numpy as np
    from PIL import Image

    from facesketch.metrics.evaluate import evaluate_folder

    test = _results_like_the_ground_truth(tiny_prepared, tmp_path / "res")
    victim = tmp_path / "res" / f"{test.id[1]}.tif"
    (tmp_path / "res" / f"{test.id[1]}.png").unlink()
    Image.fromarray(np.full((64, 64), 0.5, np.float32)).save(victim)
    df = evaluate_folder(tmp_path / "res", tiny_prepared / "manifest.parquet", tmp_path / "o.parquet",
                         {"names": ["SSIM"], "framing": "aligned"}, tmp_path, framing="aligned", device="cpu")
    row = df[df.image_id == test.id[1]].iloc[0]
    assert np.isnan(row.value) and str(victim) in row.reason and "mode F" in row.reason


def test_misframed_result_is_a_named_warning_or_an_error(tiny_prepared, tmp_path, caplog):
    import numpy as np
    import pandas as pd
    from PIL import Image

    from facesketch.metrics.evaluate import evaluate_folder
    from facesketch.metrics.inputs import issues_path

    test = _results_like_the_ground_truth(tiny_prepared, tmp_path / "res")
    stretched = tmp_path / "res" / f"{test.id[2]}.png"
    Image.fromarray(np.full((48, 64), 200, np.uint8)).save(stretched)  # 64x48: not the square aligned crop
    smaller = tmp_path / "res" / f"{test.id[3]}.png"
    Image.fromarray(np.full((32, 32), 200, np.uint8)).save(smaller)  # square, but not the ground truth's 64x64
    args = (tmp_path / "res", tiny_prepared / "manifest.parquet", tmp_path / "o.parquet")
    with caplog.at_level("WARNING"):
        evaluate_folder(*args, {"names": ["SSIM"], "framing": "aligned"}, tmp_path, framing="aligned", device="cpu")
    assert "results with the wrong aspect ratio" in caplog.text and stretched.name in caplog.text
    assert "results of another size" in caplog.text and smaller.name in caplog.text
    issues = pd.read_parquet(issues_path(tmp_path / "o.parquet")).set_index("file")
    assert issues.loc[str(stretched), "issue"] == "aspect" and issues.loc[str(smaller), "issue"] == "size"
    with pytest.raises(DataError, match=rf"do not match the protocol's framing: {re.escape(str(stretched))}"):
        evaluate_folder(*args, {"names": ["SSIM"], "framing": "aligned", "framing_mismatch": "error"}, tmp_path,
                        framing="aligned", device="cpu")


def test_missing_and_ignored_results_are_named(tiny_prepared, tmp_path, caplog):
    import pandas as pd

    from facesketch.metrics.evaluate import score_variant
    from facesketch.metrics.inputs import issues_path

    manifest = pd.read_parquet(tiny_prepared / "manifest.parquet")
    dirs = []
    for style in ("Style1", "Style2", "Style3"):
        d = tmp_path / "samples" / "v" / "0" / style
        dirs.append(d)
        part = manifest[(manifest.split == "test") & (manifest["style"] == int(style[-1]) - 1)]
        _results_like_the_ground_truth(tiny_prepared, d)
        for other in manifest[manifest.split == "test"].id:  # keep only this style's results
            if other not in set(part.id):
                (d / f"{other}.png").unlink()
    missing = sorted((tmp_path / "samples" / "v" / "0" / "Style1").glob("*.png"))[0]
    missing.unlink()
    train_id = manifest[manifest.split == "train"].id.iloc[0]
    stray = tmp_path / "samples" / "v" / "0" / "Style2" / f"{train_id}.png"
    shutil.copy(sorted(dirs[1].glob("*.png"))[0], stray)
    spec = {"variant": "v", "metrics": {"names": ["SSIM"], "framing": "aligned"}}
    with caplog.at_level("WARNING"):
        score_variant(spec, tiny_prepared / "manifest.parquet", dirs, tmp_path / "v.parquet", tmp_path, device="cpu")
    issues = pd.read_parquet(issues_path(tmp_path / "v.parquet"))
    assert issues[issues.issue == "missing"].image_id.tolist() == [missing.stem]
    assert issues[issues.issue == "ignored"].file.tolist() == [str(stray)]
    assert missing.stem in caplog.text and stray.name in caplog.text


def test_table_cells_say_how_many_images_they_average():
    import numpy as np
    import pandas as pd

    from facesketch.report.tables import build_long, to_markdown

    values = np.linspace(0.2, 0.3, 33)
    rows = [{"variant": "v", "seed": 0, "style_asked": "Style1", "style_gt": "Style1", "image_id": f"i{k}",
             "metric": "SSIM", "value": (np.nan if k in (4, 9) else values[k]), "scope": "image", "n_images": 1,
             "reason": ("no result image" if k in (4, 9) else ""), "n_expected": 1} for k in range(33)]
    spec = {"name": "t", "metrics": {"framing": "aligned"}, "run_variants": ["v"], "released": {},
            "tables": {"t": {"title": "T", "metrics": ["SSIM"], "rows": [{"label": "ours", "variant": "v"}]}}}
    long = build_long(spec, pd.DataFrame(rows))
    mean = float(np.mean([values[k] for k in range(33) if k not in (4, 9)]))  # the 31 finite values
    text = to_markdown(spec, "t", long)
    # ranked first of one: bold, with its 95% interval; then the count
    assert re.search(rf"\| ours \| \*\*{mean:.3f} ± 0\.\d{{3}}\*\* \(31/33\) \|", text), text
    full = build_long(spec, pd.DataFrame([dict(r, value=0.25, reason="") for r in rows]))
    assert "| ours | **0.250 ± 0.000** |" in to_markdown(spec, "t", full)  # every image averaged: no count


def test_full_output_folder_is_one_line_naming_the_file(tmp_path):
    """A really full file system: a 16 KiB tmpfs in a private mount namespace (root, or a user namespace)."""
    from facesketch.report.tables import table_spec

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) for a private tmpfs")
    full = tmp_path / "full"
    full.mkdir()
    probe = subprocess.run(["unshare", "-r", "-m", "sh", "-c", f"mount -t tmpfs -o size=16k tmpfs {full}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a private tmpfs here: {probe.stderr.strip()}")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(table_spec(load_config(REPO / "config.yaml"), {})))
    cmd = (f"mount -t tmpfs -o size=16k tmpfs {full} && exec {sys.executable} -m facesketch tables "
           f"--spec @{spec} --out {full}/tables")
    r = subprocess.run(["unshare", "-r", "-m", "sh", "-c", cmd], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert re.search(rf"facesketch: error: cannot write {re.escape(str(full))}/\S+: No space left on device "
                     r"\(free some space, then rerun\)", r.stderr), r.stderr[-3000:]
