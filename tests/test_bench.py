"""The training-throughput benchmark runs here too (CPU, tiny size), so it cannot rot."""

from __future__ import annotations

import importlib.util
import math

from .conftest import REPO


def test_train_throughput_benchmark_runs(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("train_throughput", REPO / "bench" / "train_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--size", "32", "--steps", "1", "--warmup", "1", "--workdir", str(tmp_path),
                       "--models", "pix2pix", "hida_full", "cyclegan_attn"])
    assert [r["model"] for r in rows] == ["pix2pix", "hida_full", "cyclegan_attn"]
    for r in rows:
        assert r["reference"] > 0 and r["ours"] > 0 and math.isclose(r["ratio"], r["ours"] / r["reference"])
    out = capsys.readouterr().out
    assert "reference" in out and "ours" in out and "GFLOP/img" in out
