"""The training-throughput benchmark runs here too (CPU, tiny size), so it cannot rot."""

from __future__ import annotations

import importlib.util
import math

from .conftest import REPO


def test_train_throughput_benchmark_runs(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("train_throughput", REPO / "bench" / "train_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # the GPU recipe on the CPU (bf16 autocast, channels_last, fused Adam) without compiling: seconds
    # (the attention CycleGAN's HED/DSINE/LPIPS losses in emulated bf16 take minutes on a small CPU: left out)
    rows = bench.main(["--size", "32", "--steps", "1", "--warmup", "1", "--workdir", str(tmp_path), "--curve-steps",
                       "2", "--cpu-recipe", "--no-compile", "--models", "pix2pix", "hida_full"])
    assert [r["model"] for r in rows] == ["pix2pix", "hida_full"]
    for r in rows:
        assert r["reference"] > 0 and r["ours_fp32"] > 0 and r["ours_bf16"] > 0
        assert math.isclose(r["ratio_fp32"], r["ours_fp32"] / r["reference"])
        assert math.isclose(r["ratio_bf16"], r["ours_bf16"] / r["reference"])
        assert r["precision"] == ("fp32", "bf16")  # the bf16 column really ran in bf16
        # the loss curves: every loss of the step, fp32 and bf16 from the same start stay close
        assert {"G_gan", "D"} <= set(r["curve_gap"]) and all(math.isfinite(g) for g in r["curve_gap"].values())
    out = capsys.readouterr().out
    assert "reference" in out and "bf16 against fp32" in out and "GFLOP/img" in out
