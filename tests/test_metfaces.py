"""MetFaces (HIDA Table 4, exemplar-based translation): a stand-in release in the official layout
(metfaces-dataset/metfaces.json + images/*.png), ingestion, CoCosNet and CoCosNet + HIDA, scoring."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facesketch.data import metfaces
from facesketch.errors import DataError, UnsafeArchiveError

REPO = Path(__file__).parents[1]


def _painting(seed: int, side: int) -> np.ndarray:
    """A face-like stand-in: a bright ellipse with two dark eyes on a coloured background, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    im = np.empty((side, side, 3))
    im[:] = rng.uniform(0.1, 0.5, 3)
    face = ((xx - 0.5) / 0.3) ** 2 + ((yy - 0.5) / 0.4) ** 2 < 1
    im[face] = rng.uniform(0.6, 0.9, 3)
    for ex in (0.38, 0.62):
        im[((xx - ex) / 0.06) ** 2 + ((yy - 0.42) / 0.04) ** 2 < 1] = 0.05
    im += rng.normal(0, 0.03, im.shape)
    return (np.clip(im, 0, 1) * 255).astype(np.uint8)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def release_records(n: int, side: int) -> tuple[list[dict], dict[str, bytes]]:
    """metfaces.json records (the official keys) and the image files they name."""
    records, files = [], {}
    for i in range(n):
        name = f"images/{10000 + i}-00.png"
        data = _png(_painting(i, side))
        files[name] = data
        records.append({"obj_id": str(10000 + i), "meta_url": "https://collectionapi.metmuseum.org/x",
                        "source_url": "https://images.metmuseum.org/x.jpg", "source_path": f"unprocessed/image-{i}.png",
                        "source_md5": "0" * 32, "image_path": name, "image_md5": hashlib.md5(data).hexdigest(),
                        "title": f"Portrait {i}", "artist_display_name": "Anonymous",
                        "face_spec": {"rect": [0, 0, side, side], "landmarks": [], "shrink": 1}, "face_idx": 0})
    return records, files


def make_metfaces_zip(path: Path, n: int = 6, side: int = 64, extra: dict | None = None) -> list[dict]:
    records, files = release_records(n, side)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metfaces-dataset/metfaces.json", json.dumps(records))
        for name, data in files.items():
            zf.writestr(f"metfaces-dataset/{name}", data)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return records


def make_metfaces_folder(root: Path, n: int = 6, side: int = 64) -> Path:
    records, files = release_records(n, side)
    folder = root / "metfaces-dataset"
    (folder / "images").mkdir(parents=True)
    (folder / "metfaces.json").write_text(json.dumps(records))
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


SPEC = {"size": 64, "expected": 6, "check_md5": True, "edges": {"sigma": 1.0}, "split": {"test": 0.34, "seed": 0},
        "exemplars": {"k": 2}}


def _zip_and_prepare(tmp_path: Path, spec: dict = SPEC, n: int = 6) -> pd.DataFrame:
    make_metfaces_zip(tmp_path / "metfaces.zip", n=n)
    raw = metfaces.extract(tmp_path / "metfaces.zip", tmp_path / "raw")
    return metfaces.prepare(raw, tmp_path / "data", spec)


# --- ingestion -------------------------------------------------------------------------------

def test_ingest_stand_in_release(tmp_path):
    from skimage import feature

    manifest = _zip_and_prepare(tmp_path)
    assert manifest.groupby("split").size().to_dict() == {"test": 2, "train": 4}  # round(6 * 0.34) test
    on_disk = pd.read_parquet(tmp_path / "data" / "manifest.parquet")
    assert list(on_disk.id) == list(manifest.id) and len(on_disk) == 6
    for r in on_disk.itertuples():
        painting = Image.open(tmp_path / "data" / r.photo)
        assert painting.size == (64, 64) and painting.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(painting), _painting(int(r.id[:5]) - 10000, 64))  # native size
        edge = np.asarray(Image.open(tmp_path / "data" / r.edge))
        # CoCosNet's edge input, recomputed here with skimage's Canny on the grey painting
        expected = feature.canny(np.asarray(painting.convert("L")), sigma=1.0)
        np.testing.assert_array_equal(edge > 0, expected)
        assert edge.any() and set(np.unique(edge)) <= {0, 255}
        refs = r.exemplars.split(",")
        assert len(refs) == 2 and r.id not in refs
        assert set(refs) <= set(on_disk[on_disk.split == "train"].id)  # exemplars come from the training set


def test_resized_to_the_configured_size(tmp_path):
    make_metfaces_folder(tmp_path, n=3, side=128)
    spec = dict(SPEC, size=64, expected=3)
    manifest = metfaces.prepare(tmp_path, tmp_path / "out", spec)  # a folder holding metfaces-dataset/
    for r in manifest.itertuples():
        assert Image.open(tmp_path / "out" / r.photo).size == (64, 64)
        assert Image.open(tmp_path / "out" / r.edge).size == (64, 64)


def test_retrieval_ranks_by_thumbnail_similarity():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(16, 16))
    thumbs = {"q": base, "near": base + 0.1 * rng.normal(size=(16, 16)), "far": rng.normal(size=(16, 16)),
              "neg": -base}
    split = {"q": "test", "near": "train", "far": "train", "neg": "train"}
    assert metfaces.retrieve_exemplars(thumbs, split, 3)["q"] == ["near", "far", "neg"]
    assert metfaces.retrieve_exemplars(thumbs, split, 3)["near"][:1] == ["far"]  # never itself


def test_split_from_the_users_list(tmp_path):
    ids = [f"{10000 + i}-00" for i in range(5)]
    listing = tmp_path / "test.txt"
    listing.write_text("10001-00.png\n10003-00\n")
    split = metfaces.split_ids(ids, {"test_list": str(listing)})
    assert sorted(i for i, s in split.items() if s == "test") == ["10001-00", "10003-00"]
    listing.write_text("99999-00\n")
    with pytest.raises(DataError, match="not MetFaces images"):
        metfaces.split_ids(ids, {"test_list": str(listing)})


def test_counts_and_md5_checked(tmp_path):
    make_metfaces_folder(tmp_path, n=3)
    with pytest.raises(DataError, match="lists 3 images, expected 1336"):
        metfaces.prepare(tmp_path, tmp_path / "out", dict(SPEC, expected=1336))
    image = tmp_path / "metfaces-dataset" / "images" / "10001-00.png"
    Image.fromarray(_painting(99, 64)).save(image)
    with pytest.raises(DataError, match="10001-00.png: MD5 .* does not match"):
        metfaces.prepare(tmp_path, tmp_path / "out", dict(SPEC, expected=3))
    image.unlink()
    with pytest.raises(DataError, match="10001-00.png is missing"):
        metfaces.prepare(tmp_path, tmp_path / "out", dict(SPEC, expected=3))
    assert not (tmp_path / "out" / "manifest.parquet").exists()


def test_unsafe_and_foreign_archives_refused(tmp_path):
    bad = tmp_path / "bad.zip"
    make_metfaces_zip(bad, n=2, extra={"metfaces-dataset/../evil.txt": "x"})
    with pytest.raises(UnsafeArchiveError, match=r"\.\."):
        metfaces.extract(bad, tmp_path / "raw")
    foreign = tmp_path / "APDrawingDB.zip"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("APDrawingDB/data/test/a.png", "x")
    with pytest.raises(UnsafeArchiveError, match="outside metfaces-dataset/"):
        metfaces.extract(foreign, tmp_path / "raw2")
    with pytest.raises(DataError, match="MetFaces archive not found: .*METFACES_ARCHIVE"):
        metfaces.extract(tmp_path / "nowhere.zip", tmp_path / "raw3")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no metfaces.json"):
        metfaces.prepare(tmp_path / "empty", tmp_path / "out", SPEC)


def test_cli_extract_and_prepare(tmp_path):
    from facesketch.cli import main

    make_metfaces_zip(tmp_path / "metfaces.zip", n=4)
    assert main(["metfaces-extract", str(tmp_path / "metfaces.zip"), "--out", str(tmp_path / "raw")]) == 0
    assert main(["metfaces-prepare", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out"),
                 "--spec", json.dumps(dict(SPEC, expected=4))]) == 0
    assert len(pd.read_parquet(tmp_path / "out" / "manifest.parquet")) == 4
