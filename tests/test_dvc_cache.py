"""What the DVC cache holds: the archive, aligned data, maps, final models and metrics; not the
resume checkpoints of training, nor the extracted raw archive (the archive itself is cached)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import REPO

BIN = Path(sys.executable).parent


def _outs() -> dict[str, dict]:
    outs = {}
    for stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].values():
        for out in stage.get("outs", []):
            (path, opts), = out.items() if isinstance(out, dict) else ((out, {}),)
            outs[path] = opts or {}
    return outs


def test_raw_extraction_is_not_cached_but_what_is_worth_versioning_is():
    outs = _outs()
    for prefix in ("data", "data/demo"):
        assert outs[f"{prefix}/fs2k/raw"].get("cache") is False
        for kept in ("fs2k/FS2K.zip", "fs2k/aligned", "maps"):
            assert outs[f"{prefix}/{kept}"].get("cache", True), kept
    assert outs["results/checkpoints"].get("cache", True) and outs["results/demo/checkpoints"].get("cache", True)


def test_resume_checkpoints_stay_out_of_the_cache(tmp_path):
    """DVC itself decides: inside the checkpoints output, last.pt is ignored and model.pt is not."""
    run = REPO / "results" / "demo" / "checkpoints" / "pix2pix" / "0"
    r = subprocess.run([str(BIN / "dvc"), "check-ignore", "-d", str(run / "last.pt"), str(run / "model.pt"),
                        str(run / "losses.csv")], cwd=REPO, capture_output=True, text=True)
    ignored = r.stdout
    assert "last.pt" in ignored and "model.pt" not in ignored and "losses.csv" not in ignored, r.stdout + r.stderr
    # the name train writes its resume checkpoint under is the one ignored
    assert '"last.pt"' in (REPO / "src" / "facesketch" / "train" / "run.py").read_text()
