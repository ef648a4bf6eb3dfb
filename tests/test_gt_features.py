"""The ground-truth feature cache (metrics/gt_features.py): faster, never different, never stale."""

from __future__ import annotations

import logging
import re

import numpy as np
import piq
import pytest
import torch
from PIL import Image

from facesketch.metrics import gt_features
from facesketch.metrics.evaluate import Job, cpu_metrics

from .test_metrics import _scoot_by_hand

NAMES = ("SCOOT", "FSIM", "SSIM")


def _pattern(k: int, size: int = 40) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return np.clip(128 + 90 * np.sin(xx / (3 + k)) * np.cos(yy / (5 + k)), 0, 255).astype(np.uint8)


def _pairs(tmp_path, n=3):
    rng = np.random.default_rng(3)
    jobs = []
    for k in range(n):
        g = _pattern(k)
        r = np.clip(g.astype(int) + rng.integers(-50, 50, g.shape), 0, 255).astype(np.uint8)
        Image.fromarray(g).save(tmp_path / f"gt{k}.png")
        Image.fromarray(r).save(tmp_path / f"r{k}.png")
        jobs.append(Job(k, str(tmp_path / f"r{k}.png"), "aligned", "aligned", str(tmp_path / f"gt{k}.png"),
                        "", 0, 0, 0, 0, 0))
    return jobs


def _fsim_piq(r_path, g_path) -> float:
    r, g = (torch.from_numpy(np.array(Image.open(p))).float()[None, None] for p in (r_path, g_path))
    return piq.fsim(r, g, data_range=255.0, reduction="none", chromatic=False).item()


def _scores(jobs, cache):
    return {(k, m): v for k, m, v, _ in cpu_metrics(jobs, NAMES, workers=1, cache=cache)}


def test_cached_scores_equal_fresh_ones_bit_for_bit_and_skip_the_work(tmp_path, monkeypatch):
    jobs = _pairs(tmp_path)
    cache = tmp_path / "cache"
    fresh = _scores(jobs, None)
    first = _scores(jobs, cache)  # computes and stores
    files = sorted((cache / gt_features.code_version()).glob("*.npz"))
    assert len(files) == len(jobs) and not list(cache.rglob("*.tmp*"))
    assert {f.stem for f in files} == {gt_features.content_id(_pattern(k)) for k in range(len(jobs))}

    def no_work(gt):
        raise AssertionError("a cached ground truth was computed again")

    monkeypatch.setattr(gt_features, "_compute", no_work)
    second = _scores(jobs, cache)  # read back
    assert fresh == first == second
    for j in jobs:  # and the values are the metrics' definitions
        assert second[j.key, "FSIM"] == pytest.approx(_fsim_piq(j.result, j.gt_aligned), abs=2e-5)
        g, r = (np.asarray(Image.open(p)) for p in (j.gt_aligned, j.result))
        assert second[j.key, "SCOOT"] == pytest.approx(_scoot_by_hand(g, r), abs=1e-12)


def test_a_changed_ground_truth_is_a_new_entry_never_a_stale_one(tmp_path):
    jobs = _pairs(tmp_path, n=1)
    cache = tmp_path / "cache"
    before = _scores(jobs, cache)
    Image.fromarray(_pattern(7)).save(jobs[0].gt_aligned)  # the same path, other pixels
    after = _scores(jobs, cache)
    assert after[0, "FSIM"] == pytest.approx(_fsim_piq(jobs[0].result, jobs[0].gt_aligned), abs=2e-5)
    assert after[0, "FSIM"] != before[0, "FSIM"] and after[0, "SCOOT"] != before[0, "SCOOT"]
    assert len(list((cache / gt_features.code_version()).glob("*.npz"))) == 2


@pytest.mark.parametrize("damage", ["truncated", "not a zip", "wrong shape", "wrong dtype", "nan", "missing key"])
def test_a_damaged_entry_is_recomputed_and_replaced(tmp_path, damage, caplog):
    jobs = _pairs(tmp_path, n=1)
    cache = tmp_path / "cache"
    want = _scores(jobs, None)
    _scores(jobs, cache)
    path, = (cache / gt_features.code_version()).glob("*.npz")
    with np.load(path) as z:
        entry = {k: z[k] for k in z.files}
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "not a zip":
        path.write_bytes(b"not an archive")
    else:
        if damage == "wrong shape":
            entry["pc"] = entry["pc"][:, :-1]
        elif damage == "wrong dtype":
            entry["gm"] = entry["gm"].astype(np.float64)
        elif damage == "nan":
            entry["scoot"][3] = np.nan
        else:
            del entry["gm"]
        np.savez(path, **entry)
    with caplog.at_level(logging.WARNING, logger="facesketch.metrics.gt_features"):
        assert _scores(jobs, cache) == want
    (message,) = [r.getMessage() for r in caplog.records]
    if damage in ("truncated", "not a zip", "missing key"):  # unreadable: the file and numpy's reason
        assert re.fullmatch(rf"ground-truth feature cache: {re.escape(str(path))} is damaged \((.+)\); recomputing it",
                            message) and "(None)" not in message
    else:
        assert message == f"ground-truth feature cache: {path} does not fit its image; recomputing it"
    with np.load(path) as z:  # replaced by a good entry
        assert gt_features._valid({k: z[k] for k in ("pc", "gm", "scoot")}, _pattern(0))


def test_an_unwritable_cache_warns_once_and_scores_the_same(tmp_path, caplog):
    jobs = _pairs(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / gt_features.code_version()).write_text("a file where the folder goes")  # fails as root too
    with caplog.at_level(logging.WARNING, logger="facesketch.metrics.gt_features"):
        assert _scores(jobs, cache) == _scores(jobs, None)
    (message,) = [r.getMessage() for r in caplog.records]
    folder = re.escape(str(cache / gt_features.code_version()))
    assert re.fullmatch(rf"ground-truth feature cache off: cannot write {folder} \((.+)\)", message)
    assert not message.endswith("(None)")


def test_the_folder_belongs_to_the_code_and_the_torch_version(monkeypatch, tmp_path):
    v = gt_features.code_version()
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert gt_features.code_version() != v
    monkeypatch.undo()
    fake = tmp_path / "scoot.py"
    fake.write_text("# another SCOOT\n")
    monkeypatch.setattr(gt_features.scoot, "__file__", str(fake))
    assert gt_features.code_version() != v


@pytest.mark.parametrize("shape,k", [((601, 521), 2), ((384, 400), 2), ((383, 400), 1), ((250, 250), 1)])
def test_valid_checks_the_shape_fsim_features_gives(shape, k):
    """FSIM averages k x k blocks first, k = round(min side / 256) (384 / 256 = 1.5 rounds to 2),
    flooring odd sides; the expected shape is what fsim.features returns."""
    gt = np.zeros(shape, np.uint8)
    pc, _ = gt_features.fsim.features(torch.from_numpy(gt).float()[None, None])
    want = (1, shape[0] // k, shape[1] // k)
    assert tuple(pc.shape) == want
    entry = {"pc": np.zeros(want, np.float32), "gm": np.zeros(want, np.float32), "scoot": np.zeros(32)}
    assert gt_features._valid(entry, gt)
    assert not gt_features._valid({**entry, "scoot": np.zeros(31)}, gt)
    assert not gt_features._valid({**entry, "pc": np.zeros((1, *shape), np.float32)}, gt) or k == 1
    assert not gt_features._valid({**entry, "gm": np.zeros((1, want[1] + 1, want[2]), np.float32)}, gt)


@pytest.mark.parametrize("keep", [True, False])
def test_evaluate_keeps_the_features_beside_its_output_unless_told_not_to(tmp_path, tiny_prepared, keep):
    import pandas as pd

    from facesketch.metrics.evaluate import evaluate_folder

    test = pd.read_parquet(tiny_prepared / "manifest.parquet").query("split == 'test'")
    (tmp_path / "res").mkdir()
    for r in test.itertuples():
        Image.fromarray(255 - np.asarray(Image.open(tiny_prepared / r.sketch))).save(tmp_path / "res" / f"{r.id}.png")
    metrics = {"names": ["SCOOT", "FSIM"], "framing": "aligned", "feature_cache": keep}
    out = tmp_path / "metrics" / "x.parquet"
    df = evaluate_folder(tmp_path / "res", tiny_prepared / "manifest.parquet", out, metrics, tmp_path, device="cpu")
    stored = list((tmp_path / "metrics" / ".cache" / "gt_features").rglob("*.npz"))
    assert len(stored) == (len(set(test.id)) if keep else 0)
    assert df.value.notna().all() and len(df) == 2 * len(test)


def test_without_a_folder_only_the_asked_metrics_features_are_computed(tmp_path, monkeypatch):
    jobs = _pairs(tmp_path, n=2)
    want = _scores(jobs, None)

    def no_fsim(images):
        raise AssertionError("FSIM features computed for SCOOT alone")

    monkeypatch.setattr(gt_features.fsim, "features", no_fsim)
    got = {(k, m): v for k, m, v, _ in cpu_metrics(jobs, ("SCOOT",), workers=1)}
    assert got == {k: v for k, v in want.items() if k[1] == "SCOOT"}
    monkeypatch.undo()
    cpu_metrics(jobs, ("SCOOT",), workers=1, cache=tmp_path / "cache")  # with a folder: whole entries
    for f in (tmp_path / "cache" / gt_features.code_version()).glob("*.npz"):
        with np.load(f) as z:
            assert set(z.files) == {"pc", "gm", "scoot"}
