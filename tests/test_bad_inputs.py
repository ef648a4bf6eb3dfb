"""The catalogue of bad inputs (README, "Reliability"): each with the exact kind of outcome.

Every case runs one bad input through the code that meets it in the pipeline and states what
must come out: a named ``error`` (the facesketch error class, and the file or key in its one
line), a named ``warning`` (logged, with the file named) or a correct ``value``. Nothing else
(a traceback, a silent default, a wrong number) passes.
"""

from __future__ import annotations

import logging
import os
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from facesketch.config import load_config
from facesketch.data import archive
from facesketch.errors import FacesketchError
from facesketch.maps import safe_pickle, weights
from facesketch.metrics.evaluate import evaluate_folder
from facesketch.metrics.inputs import issues_path
from facesketch.metrics.networks import load_lpips
from facesketch.train import checkpoint as ckpt

from .conftest import REPO, make_fs2k_tree, zip_tree


@dataclass
class Ctx:
    tmp: Path
    prepared: Path  # the tiny aligned data set (manifest.parquet, aligned/)


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # error | warning | value
    run: Callable[[Ctx], object]
    named: Callable[[Ctx], list[str]]  # what the message must contain (the file, the key, the hint)
    error: str = ""  # the facesketch error class, for kind == "error"
    value: Callable[[object], bool] | None = None  # the check of a correct value, for kind == "value"


# --- archives ----------------------------------------------------------------------------------

def _zip(path: Path, entries: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _symlink_zip(c: Ctx) -> Path:
    path = c.tmp / "link.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("FS2K/photo")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc")
    return path


def _bad_crc_zip(c: Ctx) -> Path:
    path = _zip(c.tmp / "crc.zip", {"FS2K/anno_test.json": b"[" + b" " * 100 + b"]"}, zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    data[data.index(b"[") + 20] = ord("x")
    path.write_bytes(bytes(data))
    return path


def _truncated_zip(c: Ctx) -> Path:
    make_fs2k_tree(c.tmp / "src", per_subset=1)
    whole = zip_tree(c.tmp / "src", c.tmp / "whole.zip").read_bytes()
    path = c.tmp / "cut.zip"
    path.write_bytes(whole[: len(whole) // 2])
    return path


def _extract(make: Callable[[Ctx], Path]):
    return lambda c: archive.extract(make(c), c.tmp / "raw")


def _wrong_checksum(c: Ctx):
    src = _zip(c.tmp / "FS2K.zip", {"FS2K/a.txt": b"a"})
    return archive.fetch(c.tmp / "data" / "FS2K.zip", str(src), "id", "0" * 64)


ARCHIVES = [
    Case("archive: entry climbing out with ..", "error",
         _extract(lambda c: _zip(c.tmp / "a.zip", {"FS2K/../../evil.txt": b"x"})),
         lambda c: ["a.zip", "FS2K/../../evil.txt", "climbs out"], "UnsafeArchiveError"),
    Case("archive: symbolic link entry", "error", _extract(_symlink_zip),
         lambda c: ["link.zip", "FS2K/photo", "symbolic link"], "UnsafeArchiveError"),
    Case("archive: member with a bad CRC", "error", _extract(_bad_crc_zip),
         lambda c: ["crc.zip", "FS2K/anno_test.json", "is damaged", "fetch it again"], "DataError"),
    Case("archive: cut short", "error", _extract(_truncated_zip), lambda c: ["cut.zip"], "DataError"),
    Case("archive: not an archive", "error",
         _extract(lambda c: (c.tmp / "notes.zip").write_text("hello") and c.tmp / "notes.zip"),
         lambda c: ["notes.zip", "neither a zip nor a tar"], "DataError"),
    Case("archive: a folder given as the archive", "error",
         lambda c: archive.fetch(c.tmp / "d" / "FS2K.zip", str(c.tmp), "id", None),
         lambda c: [str(c.tmp), "is a folder"], "DataError"),
    Case("archive: checksum differs", "error", _wrong_checksum,
         lambda c: ["FS2K.zip", "does not match fs2k.sha256"], "DataError"),
]


# --- configs ------------------------------------------------------------------------------------

def _config(text: str):
    def run(c: Ctx):
        extra = c.tmp / "extra.yaml"
        extra.write_text(text)
        return load_config([REPO / "config.yaml", extra])
    return run


CONFIGS = [
    Case("config: 2e-4 read as text by YAML 1.1", "error", _config("train_defaults:\n  optimizer: {lr_g: 2e-4}\n"),
         lambda c: ["train_defaults.optimizer.lr_g", "write it as 2.0e-4"], "ConfigError"),
    Case("config: decay_epochs longer than epochs", "error",
         _config("train_overrides:\n  schedule: {epochs: 4, decay_epochs: 9}\n"),
         lambda c: ["schedule.decay_epochs", "more than epochs (4)"], "ConfigError"),
    Case("config: YAML syntax error", "error", _config("name: x\n  bad: [\n"),
         lambda c: [str(c.tmp / "extra.yaml"), "not valid YAML", "line 2"], "ConfigError"),
    Case("config: unknown key", "error", _config("metrics: {nmes: [SSIM]}\n"),
         lambda c: ["metrics: unknown key 'nmes'"], "ConfigError"),
    Case("config: file missing", "error", lambda c: load_config([c.tmp / "nope.yaml"]),
         lambda c: ["config file not found", "nope.yaml"], "ConfigError"),
    Case("config: archive given as a folder", "error", lambda c: _config(f"fs2k: {{archive: {c.tmp}}}\n")(c),
         lambda c: ["fs2k.archive", "is a folder"], "ConfigError"),
]


# --- result images (evaluation) -------------------------------------------------------------------

def _evaluate(change: Callable[[Ctx, pd.DataFrame], None], mismatch: str = "warn"):
    """Results identical to the ground truth, one of them changed; SSIM per image."""
    def run(c: Ctx):
        manifest = pd.read_parquet(c.prepared / "manifest.parquet")
        test = manifest[manifest.split == "test"].reset_index(drop=True)
        res = c.tmp / "res"
        res.mkdir()
        for r in test.itertuples():
            Image.open(c.prepared / r.sketch).convert("L").save(res / f"{r.id}.png")
        change(c, test)
        df = evaluate_folder(res, c.prepared / "manifest.parquet", c.tmp / "o.parquet",
                             {"names": ["SSIM"], "framing": "aligned", "framing_mismatch": mismatch}, c.tmp,
                             framing="aligned", device="cpu")
        return df.set_index("image_id").value
    return run


def _first(c: Ctx, test: pd.DataFrame) -> Path:
    return c.tmp / "res" / f"{test.id[0]}.png"


def _to_16bit(c, test):
    p = _first(c, test)
    Image.fromarray(np.asarray(Image.open(p)).astype(np.uint16) * 257).save(p)


def _to_float(c, test):
    p = _first(c, test)
    p.unlink()
    Image.fromarray(np.full((64, 64), 0.5, np.float32)).save(p.with_suffix(".tif"))


def _stretch(c, test):
    Image.fromarray(np.full((48, 64), 128, np.uint8)).save(_first(c, test))


def _shrink(c, test):
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(_first(c, test))


def _corrupt(c, test):
    _first(c, test).write_bytes(b"\x89PNG\r\n\x1a\n broken")


IMAGES = [
    Case("image: 16-bit PNG", "value", _evaluate(_to_16bit), lambda c: [],
         value=lambda v: bool(np.allclose(v.to_numpy(), 1.0))),  # identical pictures: SSIM 1 for every image
    Case("image: floating-point TIFF", "warning", _evaluate(_to_float), lambda c: ["res/", ".tif", "mode F"]),
    Case("image: unreadable PNG", "warning", _evaluate(_corrupt), lambda c: ["cannot read image", "res/"]),
    Case("image: 64x48 (wrong aspect ratio)", "warning", _evaluate(_stretch),
         lambda c: ["results with the wrong aspect ratio", ".png"]),
    Case("image: 64x48 with framing_mismatch: error", "error", _evaluate(_stretch, "error"),
         lambda c: ["do not match the protocol's framing", "res/"], "DataError"),
    Case("image: 32x32 (another size)", "warning", _evaluate(_shrink), lambda c: ["results of another size"]),
    Case("image: result missing", "warning", _evaluate(lambda c, t: _first(c, t).unlink()),
         lambda c: ["test images have no result"]),
    Case("image: file that is no test id", "warning",
         _evaluate(lambda c, t: (c.tmp / "res" / "photo1_image9999.png").write_bytes(_first(c, t).read_bytes())),
         lambda c: ["files ignored", "photo1_image9999.png"]),
]


# --- checkpoints ---------------------------------------------------------------------------------

class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def _resume(make: Callable[[Path], None], with_previous: bool = False):
    def run(c: Ctx):
        last = c.tmp / "run" / "last.pt"
        last.parent.mkdir()
        if with_previous:
            ckpt.save(ckpt.previous(last), {"epoch": 3})
        make(last)
        return ckpt.load_resume(last)
    return run


CHECKPOINTS = [
    Case("checkpoint: last.pt cut short, no previous one", "error",
         _resume(lambda p: p.write_bytes(b"PK\x03\x04 cut")),
         lambda c: [str(c.tmp / "run" / "last.pt"), "Delete it to train this run from scratch"], "DataError"),
    Case("checkpoint: last.pt cut short, previous one kept", "warning",
         _resume(lambda p: p.write_bytes(b"PK\x03\x04 cut"), with_previous=True),
         lambda c: ["last.pt is unreadable", "Resuming from the previous checkpoint", "last.prev.pt"]),
    Case("checkpoint: pickle that runs code", "error", _resume(lambda p: torch.save({"epoch": _Evil()}, p)),
         lambda c: ["last.pt is not a safe facesketch checkpoint", "do not load it"], "DataError"),
]


# --- weights ---------------------------------------------------------------------------------------

def _weights_file(name: str, data: bytes | None = None, obj=None):
    def run(c: Ctx):
        w = weights.REGISTRY[name]
        path = c.tmp / "w" / w.folder / w.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        if obj is not None:
            torch.save(obj, path)
        elif data is not None:
            path.write_bytes(data)
        return weights.require(name, c.tmp / "w")
    return run


def _evil_lpips(c: Ctx):
    w = weights.REGISTRY["lpips_alexnet"]
    path = c.tmp / "w" / w.folder / w.filename
    path.parent.mkdir(parents=True)
    torch.save({"features.0.weight": _Evil()}, path)
    st = path.stat()  # as if it had passed its checksum: the load itself must still refuse it
    (path.parent / (path.name + ".verified")).write_text(f"{st.st_size} {st.st_mtime_ns} {w.fingerprint()}")
    return load_lpips(c.tmp / "w")


def _evil_numpy_pickle(c: Ctx):
    import pickle

    path = c.tmp / "tri.pkl"
    path.write_bytes(pickle.dumps(_Evil()))
    return safe_pickle.load(path)


WEIGHTS = [
    Case("weights: file missing", "error", _weights_file("fid_inception"),
         lambda c: ["pt_inception-2015-12-05-6726825d.pth", str(c.tmp / "w" / "fid"), "facesketch weights fetch"],
         "WeightsError"),
    Case("weights: wrong file (checksum)", "error", _weights_file("lpips_alexnet", b"x" * 100),
         lambda c: ["alexnet-owt-7be5be79.pth", "does not match"], "WeightsError"),
    Case("weights: cut short (size)", "error", _weights_file("3ddfa_tri", b"x" * 10),
         lambda c: ["tri.pkl", "10 bytes, expected 913040"], "WeightsError"),
    Case("weights: no published fingerprint", "warning", _weights_file("dsine", b"anything"),
         lambda c: ["dsine", "present, unverified", "no fingerprint is published for dsine.pt"]),
    Case("weights: PyTorch pickle that runs code", "error", _evil_lpips,
         lambda c: ["is not a safe PyTorch state dict", "do not load it"], "WeightsError"),
    Case("weights: numpy pickle that runs code", "error", _evil_numpy_pickle,
         lambda c: ["tri.pkl", "refusing to load"], "WeightsError"),
]

CATALOGUE = ARCHIVES + CONFIGS + IMAGES + CHECKPOINTS + WEIGHTS


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.name for c in CATALOGUE])
def test_bad_input_has_its_named_outcome(case: Case, tmp_path, tiny_prepared, caplog):
    c = Ctx(tmp_path, tiny_prepared)
    caplog.set_level(logging.INFO)
    try:
        value = case.run(c)
        raised = None
    except FacesketchError as e:  # anything else (a traceback) fails the test as it stands
        raised = e
    if case.kind == "error":
        assert raised is not None, f"{case.name}: no error"
        assert type(raised).__name__ == case.error and "\n" not in str(raised).split(":")[0]
        text = str(raised)
    else:
        assert raised is None, f"{case.name}: {raised}"
        text = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING or
                         (case.kind == "warning" and "unverified" in r.getMessage()))
        if case.kind == "warning":
            assert text, f"{case.name}: nothing was said"
            if isinstance(value, pd.Series):  # evaluation: every file named is listed beside the metrics
                listed = pd.read_parquet(issues_path(tmp_path / "o.parquet"))
                reasons = " ".join(value.index[value.isna()].map(str))
                assert len(listed) or reasons, f"{case.name}: nothing listed"
                nan_reasons = pd.read_parquet(tmp_path / "o.parquet").reason.str.cat(sep=" ")
                text += "\n" + nan_reasons + "\n" + " ".join(listed.file) + " " + " ".join(listed.detail)
        else:
            assert case.value(value), f"{case.name}: wrong value {value}"
            assert not text, f"{case.name}: unexpected warning {text}"
    for expected in case.named(c):
        assert expected in text, f"{case.name}: {expected!r} not in {text!r}"
