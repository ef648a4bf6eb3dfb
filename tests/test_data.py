"""FS2K ingestion: fetch, safe extraction, alignment, manifest."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facesketch.data import archive
from facesketch.data.fs2k import (
    OFFICIAL_COUNTS,
    align_pair,
    check_official_counts,
    crop_box,
    prepare,
    read_annotations,
    select_subset,
)
from facesketch.errors import DataError, UnsafeArchiveError
from facesketch.fileio import sha256_file

from .conftest import make_fs2k_tree

# --- fetch ------------------------------------------------------------------------------------


def test_fetch_local_copy_and_checksum(tiny_fs2k, tmp_path):
    digest = sha256_file(tiny_fs2k)
    out = archive.fetch(tmp_path / "d" / "FS2K.zip", str(tiny_fs2k), "id", digest)
    assert sha256_file(out) == digest
    with pytest.raises(DataError, match="does not match fs2k.sha256"):
        archive.fetch(tmp_path / "e" / "FS2K.zip", str(tiny_fs2k), "id", "0" * 64)
    assert not (tmp_path / "e" / "FS2K.zip").exists()  # nothing half-written
    with pytest.raises(DataError, match="FS2K archive not found: .*nowhere.zip"):
        archive.fetch(tmp_path / "f.zip", str(tmp_path / "nowhere.zip"), "id", None)


def test_download_failure_explains_the_manual_route(tmp_path, monkeypatch):
    import requests

    def refuse(*a, **k):
        raise requests.ConnectionError("no route to host")

    monkeypatch.setattr(requests.Session, "get", refuse)
    with pytest.raises(DataError) as e:
        archive.fetch(tmp_path / "FS2K.zip", None, "THE_ID", None)
    text = str(e.value)
    assert "no route to host" in text and "THE_ID" in text and "FS2K_ARCHIVE" in text
    assert not (tmp_path / "FS2K.zip").exists()


# --- safe extraction ----------------------------------------------------------------------------


def _zip(path: Path, entries: list[tuple[str, bytes]], link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries:
            zf.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize("name, message", [
    ("/FS2K/abs.jpg", "absolute path"),
    ("FS2K/../../evil.jpg", "climbs out"),
    ("other/file.jpg", "outside FS2K/"),
    ("FS2K\\..\\evil.jpg", "backslash"),
    ("C:/FS2K/x.jpg", "absolute path"),
])
def test_unsafe_zip_entries_are_refused(tmp_path, name, message):
    bad = _zip(tmp_path / "bad.zip", [("FS2K/ok.txt", b"fine"), (name, b"evil")])
    with pytest.raises(UnsafeArchiveError, match=message):
        archive.extract(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_zip_symlink_is_refused(tmp_path):
    bad = _zip(tmp_path / "link.zip", [("FS2K/ok.txt", b"x")], link="FS2K/link")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        archive.extract(bad, tmp_path / "out")


def test_tar_links_and_escapes_are_refused(tmp_path):
    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        data = b"x"
        info = tarfile.TarInfo("FS2K/ok.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("FS2K/link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
    with pytest.raises(UnsafeArchiveError, match="is a link"):
        archive.extract(path, tmp_path / "out")


def test_zip_bomb_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", 1000)
    bomb = _zip(tmp_path / "bomb.zip", [("FS2K/big.bin", b"\0" * 5000)])
    with pytest.raises(UnsafeArchiveError, match="would unpack to"):
        archive.extract(bomb, tmp_path / "out")


def test_interrupted_extraction_leaves_nothing_that_looks_complete(tiny_fs2k, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = shutil.copyfileobj

    def flaky(src, dst, length=0):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full")
        return real(src, dst, length)

    monkeypatch.setattr(archive.shutil, "copyfileobj", flaky)
    with pytest.raises(OSError, match="disk full"):
        archive.extract(tiny_fs2k, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
    assert not list(tmp_path.glob(".raw.partial-*"))


def test_extract_tiny_archive(tiny_fs2k, tmp_path):
    out = archive.extract(tiny_fs2k, tmp_path / "raw")
    assert (out / "FS2K" / "anno_train.json").is_file()
    assert (out / "FS2K" / "photo" / "photo3" / "image0001.JPG").is_file()
    assert json.loads((out / "extracted.json").read_text())["files"] > 0


# --- alignment and manifest ---------------------------------------------------------------------


def test_crop_box_rules():
    assert crop_box(250, 250, 0.12) == (0, 0, 250)
    assert crop_box(475, 340, 0.12) == (67, 0, 340)          # centred square of a landscape photo
    assert crop_box(223, 318, 0.12) == (0, 11, 223)          # 12% of the free 95 px above it
    assert crop_box(223, 318, 0.0) == (0, 0, 223)


def _marker_centre(a: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(a < 60)
    return np.array([ys.mean(), xs.mean()])


@pytest.mark.parametrize("size", [(250, 250), (223, 318), (475, 340)])
def test_alignment_keeps_photo_and_sketch_pixel_aligned(size):
    w, h = size
    photo = np.full((h, w, 3), 230, np.uint8)
    sketch = np.full((h, w), 250, np.uint8)
    photo[120:150, 110:140] = 0
    sketch[120:150, 110:140] = 0
    p, s, box = align_pair(Image.fromarray(photo), Image.fromarray(sketch), 250, 0.12)
    assert p.size == s.size == (250, 250) and s.mode == "L"
    np.testing.assert_allclose(_marker_centre(np.asarray(p.convert("L"))), _marker_centre(np.asarray(s)), atol=0.5)
    # and the marker lands where the crop box says
    x0, y0, side = box
    expected = (np.array([134.5, 124.5]) - [y0, x0]) * 250 / side
    np.testing.assert_allclose(_marker_centre(np.asarray(s)), expected, atol=1.0)


def test_alignment_refuses_mismatched_pair():
    with pytest.raises(DataError, match="differ in size"):
        align_pair(Image.new("RGB", (10, 10)), Image.new("L", (12, 10)), 8, 0.1)


def test_prepare_tiny_archive(tiny_fs2k, tmp_path):
    raw = archive.extract(tiny_fs2k, tmp_path / "raw")
    manifest = prepare(raw, tmp_path / "data", {"align": {"size": 64}}, check_counts=False)
    assert len(manifest) == 24 and set(manifest.split) == {"train", "test"}
    for col in ("id", "split", "style", "style_name", "subset", "image_name", "orig_width", "orig_height",
                "crop_x", "crop_y", "crop_size", "photo", "sketch", "skin_color", "frontal_face"):
        assert col in manifest.columns
    row = manifest.set_index("id").loc["photo3_image0001"]
    assert row.photo_source.endswith("image0001.JPG")  # the upper-case extension was found
    assert (row.orig_width, row.orig_height, row.crop_size) == (475, 340, 340)
    # the RGBA sketch became grey with white paper, not black
    rgba = np.asarray(Image.open(tmp_path / "data" / manifest.set_index("id").loc["photo2_image0002"].sketch))
    assert rgba.ndim == 2 and np.median(rgba) > 200
    stored = pd.read_parquet(tmp_path / "data" / "manifest.parquet")
    assert stored.id.tolist() == manifest.id.tolist() and stored.crop_y.tolist() == manifest.crop_y.tolist()
    assert (tmp_path / "data" / "skipped.csv").read_text().startswith("id,split,reason")


def test_bad_image_stops_or_is_listed(tmp_path):
    tree = make_fs2k_tree(tmp_path / "raw", per_subset=2)
    victim = next((tree / "photo" / "photo1").glob("image0002.*"))
    victim.write_bytes(b"not an image")
    (next((tree / "sketch" / "sketch2").glob("sketch0003.*"))).unlink()
    with pytest.raises(DataError, match="cannot read image .*image0002"):
        prepare(tree.parent, tmp_path / "a", {"align": {"size": 32}}, check_counts=False)
    manifest = prepare(tree.parent, tmp_path / "b", {"align": {"size": 32}, "skip_bad": True}, check_counts=False)
    skipped = pd.read_csv(tmp_path / "b" / "skipped.csv")
    assert set(skipped.id) == {"photo1_image0002", "photo2_image0003"}
    assert "sketch for photo2/image0003 not found" in " ".join(skipped.reason)
    assert len(manifest) == 12 - 2 and not set(skipped.id) & set(manifest.id)


def test_official_counts_are_checked(tmp_path):
    tree = make_fs2k_tree(tmp_path / "raw", per_subset=1)
    with pytest.raises(DataError, match=r"anno_train.json lists 3 entries by style 3/0/0; the official FS2K has 1058"):
        check_official_counts(read_annotations(tree))


def test_subset_is_stratified_and_reproducible(tmp_path):
    tree = make_fs2k_tree(tmp_path / "raw", per_subset=4)
    items = read_annotations(tree)
    a = select_subset(items, 1, seed=3)
    b = select_subset(items, 1, seed=3)
    assert [i.id for i in a] == [i.id for i in b]
    groups = {(i.split, i.style, i.subset) for i in items}
    assert len(a) == len(groups)
    assert {(i.split, i.style, i.subset) for i in a} == groups


def test_malformed_annotations(tmp_path):
    tree = make_fs2k_tree(tmp_path / "raw", per_subset=1)
    (tree / "anno_test.json").write_text('[{"image_name": "photo1/image0001"}]')
    with pytest.raises(DataError, match="anno_test.json: entry 0 lacks a usable image_name/style"):
        read_annotations(tree)
    os.remove(tree / "anno_test.json")
    with pytest.raises(DataError, match="annotation file missing: .*anno_test.json"):
        read_annotations(tree)


@pytest.mark.fs2k
def test_real_archive_manifest_counts(real_raw, tmp_path):
    manifest = prepare(real_raw, tmp_path / "data", {"align": {"size": 250, "portrait_top": 0.12}})
    counts = manifest.groupby(["split", "style"]).size()
    for split, by_style in OFFICIAL_COUNTS.items():
        assert [int(counts[(split, s)]) for s in range(3)] == [by_style[s] for s in range(3)]
    assert len(manifest) == 2104
    assert manifest.groupby("subset").size().to_dict() == {"photo1": 1529, "photo2": 98, "photo3": 477}
    assert (manifest.loc[manifest.subset == "photo3", "crop_size"] == 340).all()
    assert manifest.set_index("id").loc["photo3_image0449"].photo_source.endswith(".JPG")
    some = manifest.sample(5, random_state=0)
    for r in some.itertuples():
        assert Image.open(tmp_path / "data" / r.photo).size == (250, 250)
        assert Image.open(tmp_path / "data" / r.sketch).mode == "L"
