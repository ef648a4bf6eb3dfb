"""APDrawing (HIDA Table 4): ingestion of a stand-in archive in the official APDrawingDB.zip layout."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facesketch.data import apdrawing
from facesketch.errors import DataError, UnsafeArchiveError


def _pair(seed: int, side: int) -> np.ndarray:
    """A side-by-side photo|drawing image: random colour photo on the left, a grey drawing on the right."""
    rng = np.random.default_rng(seed)
    ab = np.zeros((side, 2 * side, 3), np.uint8)
    ab[:, :side] = rng.integers(0, 256, (side, side, 3))
    grey = rng.integers(0, 256, (side, side))
    ab[:, side:] = grey[..., None]
    return ab


def make_apdrawing_zip(path: Path, n_train: int = 3, n_test: int = 2, side: int = 32, extra: dict | None = None):
    """APDrawingDB/{data/{train,test},landmark/ALL,mask/ALL} as the official archive lays them out."""
    pairs = {}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("APDrawingDB/", "")
        for split, n in (("train", n_train), ("test", n_test)):
            for i in range(n):
                name = f"{split}_{i:03d}"
                ab = _pair(hash((split, i)) % 2**32, side)
                pairs[(split, name)] = ab
                buf = _png(ab)
                zf.writestr(f"APDrawingDB/data/{split}/{name}.png", buf)
                zf.writestr(f"APDrawingDB/landmark/ALL/{name}.txt", "10 10\n20 10\n15 15\n11 20\n19 20\n")
                zf.writestr(f"APDrawingDB/mask/ALL/{name}.png", _png(np.full((side, side), 255, np.uint8)))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return pairs


def _png(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_ingest_stand_in_archive(tmp_path):
    archive = tmp_path / "APDrawingDB.zip"
    pairs = make_apdrawing_zip(archive)
    raw = apdrawing.extract(archive, tmp_path / "raw")
    manifest = apdrawing.prepare(raw, tmp_path / "out", {"size": 32, "expected": {"train": 3, "test": 2}})
    assert manifest.groupby("split").size().to_dict() == {"train": 3, "test": 2}
    assert set(manifest["style"]) == {0}
    on_disk = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert len(on_disk) == 5
    for row in on_disk.itertuples():
        ab = pairs[(row.split, row.id)]
        photo = np.asarray(Image.open(tmp_path / "out" / row.photo))
        sketch = np.asarray(Image.open(tmp_path / "out" / row.sketch))
        np.testing.assert_array_equal(photo, ab[:, :32])  # left half, untouched at the native size
        assert sketch.ndim == 2
        np.testing.assert_array_equal(sketch, ab[:, 32:, 0])  # right half; grey, so L = any channel


def test_resized_to_configured_size(tmp_path):
    archive = tmp_path / "APDrawingDB.zip"
    make_apdrawing_zip(archive, n_train=1, n_test=1, side=32)
    raw = apdrawing.extract(archive, tmp_path / "raw")
    manifest = apdrawing.prepare(raw, tmp_path / "out", {"size": 16, "expected": None})
    for row in manifest.itertuples():
        assert Image.open(tmp_path / "out" / row.photo).size == (16, 16)
        assert Image.open(tmp_path / "out" / row.sketch).size == (16, 16)


def test_counts_checked_against_the_official_split(tmp_path):
    archive = tmp_path / "APDrawingDB.zip"
    make_apdrawing_zip(archive, n_train=3, n_test=2)
    raw = apdrawing.extract(archive, tmp_path / "raw")
    with pytest.raises(DataError, match="test: 2 pairs, expected 70"):
        apdrawing.prepare(raw, tmp_path / "out", {"size": 32, "expected": {"train": 3, "test": 70}})
    assert not (tmp_path / "out" / "manifest.parquet").exists()


def test_official_defaults_in_config():
    from facesketch.config import load_config

    cfg = load_config(Path(__file__).parents[1] / "config.yaml")
    assert cfg["apdrawing"]["expected"] == {"train": 420, "test": 70}
    assert cfg["apdrawing"]["size"] == 512
    assert cfg["apdrawing"]["url"] == apdrawing.URL


def test_unsafe_and_foreign_archives_refused(tmp_path):
    bad = tmp_path / "bad.zip"
    make_apdrawing_zip(bad, 1, 1, extra={"APDrawingDB/../evil.txt": "x"})
    with pytest.raises(UnsafeArchiveError, match=r"\.\."):
        apdrawing.extract(bad, tmp_path / "raw")
    fs2k_like = tmp_path / "FS2K.zip"
    with zipfile.ZipFile(fs2k_like, "w") as zf:
        zf.writestr("FS2K/anno_train.json", "[]")
    with pytest.raises(UnsafeArchiveError, match="outside APDrawingDB/"):
        apdrawing.extract(fs2k_like, tmp_path / "raw2")
    assert not (tmp_path / "raw").exists() and not (tmp_path / "raw2").exists()
    with pytest.raises(DataError, match="APDrawing archive not found: .*APDRAWING_ARCHIVE"):
        apdrawing.extract(tmp_path / "nowhere.zip", tmp_path / "raw3")


def test_pair_that_is_not_side_by_side(tmp_path):
    folder = tmp_path / "APDrawingDB" / "data"
    for split in ("train", "test"):
        (folder / split).mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / split / "square.png")
    with pytest.raises(DataError, match="square.png: 32x32 is not a photo.drawing pair"):
        apdrawing.prepare(tmp_path, tmp_path / "out", {"size": 32, "expected": None})


def test_missing_split_folder_named(tmp_path):
    (tmp_path / "APDrawingDB" / "data" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=r"data/train.*holds no images|data/test is missing"):
        apdrawing.prepare(tmp_path, tmp_path / "out", {"size": 32, "expected": None})


def test_cli_extract_and_prepare(tmp_path):
    from facesketch.cli import main

    archive = tmp_path / "APDrawingDB.zip"
    make_apdrawing_zip(archive, 2, 1)
    assert main(["apdrawing-extract", str(archive), "--out", str(tmp_path / "raw")]) == 0
    spec = '{"size": 32, "expected": {"train": 2, "test": 1}}'
    assert main(["apdrawing-prepare", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out"),
                 "--spec", spec]) == 0
    assert len(pd.read_parquet(tmp_path / "out" / "manifest.parquet")) == 3
