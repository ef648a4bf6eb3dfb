"""Fast tests written against mutmut's survivors (issue 11): each checks a behaviour of the modules
whose numbers reach the tables, with its expectation derived here (by hand, from a definition or an
independent implementation, or from an invariant), never copied from the code's own output.

`make mutate` runs them with the rest of the fast selection ([tool.mutmut] in pyproject.toml).
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facesketch import fileio
from facesketch.errors import DataError

# --- fileio --------------------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_transparent_sketch_pixels_become_white_paper(tmp_path):
    # RGBA ink on transparent paper (FS2K's photo2 sketches): alpha a over white is 255 - a*(255-c)/255
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = (0, 0, 0, 0)          # fully transparent black -> white paper
    rgba[0, 1] = (0, 0, 0, 255)        # opaque black ink
    rgba[0, 2] = (0, 0, 0, 102)        # 40 % black over white: 255 - 102 = 153
    rgba[1, 0] = (200, 100, 50, 0)     # transparent colour: still white
    rgba[1, 1] = (10, 20, 30, 255)     # opaque colour kept
    rgba[1, 2] = (255, 0, 0, 51)       # 20 % red over white: (255, 204, 204)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "s.png")
    rgb = fileio.read_array(tmp_path / "s.png", "RGB")
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    want = np.array([[[255, 255, 255], [0, 0, 0], [153, 153, 153]],
                     [[255, 255, 255], [10, 20, 30], [255, 204, 204]]])
    assert np.abs(rgb.astype(int) - want).max() <= 1
    flat = fileio.flatten_on_white(Image.fromarray(rgba, "RGBA"))
    assert flat.mode == "RGB"
    assert np.abs(np.asarray(flat).astype(int) - want).max() <= 1
    grey = fileio.read_array(tmp_path / "s.png", "L")
    assert grey.shape == (2, 3) and grey[0, 0] == 255 and grey[0, 1] == 0 and abs(int(grey[0, 2]) - 153) <= 1


def test_palette_and_la_images_are_flattened_on_white(tmp_path):
    la = np.zeros((1, 2, 2), np.uint8)
    la[0, 1] = (0, 255)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert fileio.read_array(tmp_path / "la.png", "L").tolist() == [[255, 0]]
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    p.info["transparency"] = 0  # index 0 transparent: paper
    p.save(tmp_path / "p.png", transparency=0)
    assert fileio.read_array(tmp_path / "p.png", "RGB").tolist() == [[[255, 255, 255], [255, 0, 0]]]


def test_palette_alpha_tiff_is_flattened_on_white(tmp_path):
    # PA (palette + alpha; Pillow decodes it from TIFF): a transparent pixel is paper whatever its colour
    pa = Image.new("PA", (2, 1))
    pa.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pa.putdata([(0, 0), (1, 255)])
    pa.save(tmp_path / "pa.tif")
    assert Image.open(tmp_path / "pa.tif").mode == "PA"
    assert fileio.read_array(tmp_path / "pa.tif", "RGB").tolist() == [[[255, 255, 255], [255, 0, 0]]]
    assert fileio.read_array(tmp_path / "pa.tif", "L").tolist() == [[255, 76]]


def test_only_grey_and_rgb_requests_are_flattened(tmp_path):
    # asking RGBA for LA keeps the alpha channel: only L and RGB mean "on paper"
    rgba = np.array([[[0, 0, 0, 0], [0, 0, 0, 255]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    la = fileio.read_array(tmp_path / "a.png", "LA")
    assert la.shape == (1, 2, 2) and la[0, :, 1].tolist() == [0, 255]
    # a palette file read without a mode stays a palette image (no conversion at all)
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.putdata([0, 1])
    p.save(tmp_path / "p.png")
    im = fileio.read_image(tmp_path / "p.png")
    assert im.mode == "P" and np.asarray(im).tolist() == [[0, 1]]


def test_parquet_is_written_without_the_frame_index(tmp_path):
    import pandas as pd

    df = pd.DataFrame({"v": [1.5, 2.5, 3.5, 4.5]}).iloc[[1, 3]]  # a filtered frame: index 1, 3
    fileio.write_parquet(tmp_path / "d.parquet", df)
    back = pd.read_parquet(tmp_path / "d.parquet")
    assert back.index.tolist() == [0, 1] and back.v.tolist() == [2.5, 4.5] and list(back.columns) == ["v"]


def test_the_write_probe_is_made_inside_the_folder(tmp_path, monkeypatch):
    import tempfile

    made = []
    real = tempfile.mkstemp

    def spy(*args, **kwargs):
        fd, path = real(*args, **kwargs)
        made.append(Path(path))
        return fd, path

    monkeypatch.setattr(tempfile, "mkstemp", spy)
    fileio.check_writable(tmp_path / "out")
    assert len(made) == 1 and made[0].parent == tmp_path / "out" and not made[0].exists()


def test_read_image_without_a_mode_keeps_the_file_mode_and_detaches_from_it(tmp_path):
    Image.fromarray(np.full((3, 4), 7, np.uint8)).save(tmp_path / "g.png")
    im = fileio.read_image(tmp_path / "g.png")
    assert im.mode == "L" and im.size == (4, 3)
    (tmp_path / "g.png").unlink()  # decoded fully: usable after the file is gone
    assert np.asarray(im).tolist() == [[7] * 4] * 3
    Image.fromarray(np.full((1, 1, 3), (1, 2, 3), np.uint8)).save(tmp_path / "c.png")
    assert fileio.read_image(tmp_path / "c.png", "RGB").mode == "RGB"
    assert int(fileio.read_array(tmp_path / "c.png", "L")[0, 0]) == round(0.299 * 1 + 0.587 * 2 + 0.114 * 3)


def test_missing_and_corrupt_images_are_data_errors_naming_the_file(tmp_path):
    with pytest.raises(DataError, match="image not found: .*nothing.png"):
        fileio.read_image(tmp_path / "nothing.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    with pytest.raises(DataError, match="cannot read image .*bad.png"):
        fileio.read_image(tmp_path / "bad.png", "L")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(DataError, match="image not found"):
        fileio.read_image(tmp_path / "folder.png")


def test_atomic_outputs_get_the_umask_mode_and_keep_their_suffix(tmp_path):
    mask = _umask()
    seen = {}
    with fileio.atomic_path(tmp_path / "deep" / "er" / "table.csv") as tmp:
        seen["tmp"] = tmp
        assert tmp.parent == tmp_path / "deep" / "er" and tmp.name.endswith(".csv") and tmp.name.startswith(".table.")
        assert not (tmp_path / "deep" / "er" / "table.csv").exists()
        tmp.write_text("x")
    out = tmp_path / "deep" / "er" / "table.csv"
    assert out.read_text() == "x" and not seen["tmp"].exists()
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
    assert fileio.folder_mode() == 0o777 & ~mask
    with fileio.atomic_path(tmp_path / "f.npz", suffix=".weird") as tmp:
        assert tmp.name.endswith(".weird")
        tmp.write_bytes(b"1")
    assert (tmp_path / "f.npz").read_bytes() == b"1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "f.npz"]  # no temporary left behind


def test_a_failing_block_leaves_neither_temporary_nor_final_file(tmp_path):
    with pytest.raises(KeyError):
        with fileio.atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("half")
            raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []
    # a full disk inside the block: the project's one-line error naming the file and what to do
    with pytest.raises(DataError, match=r"cannot write .*b\.txt: No space left on device \(free some space"):
        with fileio.atomic_path(tmp_path / "b.txt") as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []
    # another OS error is not dressed up: it propagates as it is, and still leaves nothing
    with pytest.raises(OSError) as info:
        with fileio.atomic_path(tmp_path / "c.txt") as tmp:
            tmp.write_text("half")
            raise OSError(errno.EIO, "I/O error")
    assert info.type is OSError and info.value.errno == errno.EIO
    assert list(tmp_path.iterdir()) == []


def test_unwritable_destination_is_a_data_error_naming_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataError, match=r"cannot write .*file.*out\.txt"):
        with fileio.atomic_path(blocker / "out.txt"):
            pass
    with pytest.raises(DataError, match=r"cannot write .*file/sub"):
        fileio.check_writable(blocker / "sub")
    fileio.check_writable(tmp_path / "new" / "nested")
    assert (tmp_path / "new" / "nested").is_dir() and list((tmp_path / "new" / "nested").iterdir()) == []
    fileio.check_writable(tmp_path / "new" / "nested")  # an existing folder is fine, and stays empty
    assert list((tmp_path / "new" / "nested").iterdir()) == []


def test_write_errors_name_the_file_the_reason_and_a_hint_per_errno():
    e = fileio.write_error("/x/y.txt", OSError(errno.EROFS, "Read-only file system"))
    assert isinstance(e, DataError) and "/x/y.txt" in str(e) and "Read-only file system" in str(e)
    assert "\n" not in str(e)
    hints = {n: str(fileio.write_error("p", OSError(n, "s"))) for n in
             (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)}
    # the hint depends on the errno: space for a full disk, permissions for a forbidden folder
    assert "space" in hints[errno.ENOSPC] and "space" in hints[errno.EDQUOT] and "quota" in hints[errno.EDQUOT]
    assert "read-only" in hints[errno.EROFS]
    assert "writable" in hints[errno.EACCES] and "writable" in hints[errno.EPERM]
    assert hints[errno.EIO] != hints[errno.ENOSPC] and "space" not in hints[errno.EIO]
    assert "None" not in hints[errno.EIO] and "disk" in hints[errno.EIO]  # an unlisted errno: a general hint
    assert "oops" in str(fileio.write_error("p", OSError("oops")))  # no strerror: the error itself


def test_json_is_sorted_indented_and_converts_numpy_and_paths(tmp_path):
    fileio.write_json(tmp_path / "m.json", {"b": np.int64(3), "a": np.float32(0.5), "c": Path("x/y")})
    text = (tmp_path / "m.json").read_text()
    assert text == '{\n  "a": 0.5,\n  "b": 3,\n  "c": "x/y"\n}\n'
    assert json.loads(text) == {"a": 0.5, "b": 3, "c": "x/y"}
    with pytest.raises(TypeError, match="set"):
        fileio.write_json(tmp_path / "bad.json", {"s": {1}})
    assert not (tmp_path / "bad.json").exists()


def test_save_image_round_trips_uint8_and_refuses_other_types(tmp_path):
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    fileio.save_image(tmp_path / "a.png", a)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), a)
    with pytest.raises(TypeError, match="uint8.*float"):
        fileio.save_image(tmp_path / "f.png", a.astype(np.float32))
    assert not (tmp_path / "f.png").exists()
    fileio.save_pil(tmp_path / "b.png", Image.fromarray(a))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), a)
    # the writer's options reach it: JPEG quality 5 is a smaller file than quality 95
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    fileio.save_pil(tmp_path / "lo.jpg", noise, quality=5)
    fileio.save_pil(tmp_path / "hi.jpg", noise, quality=95)
    assert (tmp_path / "lo.jpg").stat().st_size < 0.5 * (tmp_path / "hi.jpg").stat().st_size


def test_file_hashes_match_hashlib_and_git(tmp_path):
    data = bytes(range(256)) * 41 + b"tail"  # not a multiple of the chunk
    f = tmp_path / "blob.bin"
    f.write_bytes(data)
    assert fileio.sha256_file(f, chunk=100) == hashlib.sha256(data).hexdigest()
    assert fileio.sha256_file(f) == hashlib.sha256(data).hexdigest()
    git = subprocess.run(["git", "hash-object", str(f)], capture_output=True, text=True, check=True).stdout.strip()
    assert fileio.git_blob_sha1(f, chunk=100) == git
    assert fileio.git_blob_sha1(f) == git


# --- train/data: on-device augmentation ----------------------------------------------------------


def _distinct_tensors(n: int = 5, size: int = 6, seed: int = 0) -> dict:
    """uint8 photos/sketches and float depths whose every window is unique (random content)."""
    g = np.random.default_rng(seed)
    return {"photo": torch.from_numpy(g.integers(1, 255, (n, 3, size, size), dtype=np.uint8)),
            "sketch": torch.from_numpy(g.integers(1, 255, (n, 1, size, size), dtype=np.uint8)),
            "depth": torch.from_numpy(g.uniform(0.1, 1.0, (n, 1, size, size)).astype(np.float32)),
            "style": torch.tensor([2, 0, 1, 1, 0][:n])}


def _window_of(crop: np.ndarray, padded: np.ndarray, c: int) -> set[tuple[int, int, bool]]:
    """Every (oy, ox, flipped) placing ``crop`` in ``padded`` (C, S, S): a slow search."""
    s = padded.shape[-1]
    hits = set()
    for oy in range(s - c + 1):
        for ox in range(s - c + 1):
            w = padded[:, oy:oy + c, ox:ox + c]
            for flipped in (False, True):
                if np.array_equal(w[..., ::-1] if flipped else w, crop):
                    hits.add((oy, ox, flipped))
    return hits


def test_training_crops_are_one_window_of_the_zero_padded_pair(monkeypatch):
    from facesketch.train.data import DeviceDataset

    t = _distinct_tensors()
    pad, crop, size = 2, 7, 6
    ds = DeviceDataset(t, torch.device("cpu"), pad, crop, True, seed=3)
    assert len(ds) == 5 and ds.size == size + 2 * pad
    seen_offsets, flips = set(), []
    for _ in range(40):
        idx = torch.tensor([3, 0, 4])
        b = ds.batch(idx)
        assert b.photo.shape == (3, 3, crop, crop) and b.sketch.shape == (3, 1, crop, crop)
        assert b.depth.shape == (3, 1, crop, crop) and torch.equal(b.index, idx)
        assert torch.equal(b.style, torch.eye(3)[t["style"][idx]])
        for j, i in enumerate(idx.tolist()):
            # zero padding around; photo and sketch in [-1, 1] (x / 127.5 - 1), depth as it is
            photo = np.pad(t["photo"][i].numpy(), ((0, 0), (pad, pad), (pad, pad))).astype(np.int64)
            sketch = np.pad(t["sketch"][i].numpy(), ((0, 0), (pad, pad), (pad, pad))).astype(np.float64)
            depth = np.pad(t["depth"][i].numpy(), ((0, 0), (pad, pad), (pad, pad)))
            got = b.photo[j].double().numpy()
            where = _window_of(np.round((got + 1) * 127.5).astype(np.int64), photo, crop)
            assert len(where) == 1, where
            (oy, ox, flipped), = where
            w = photo[:, oy:oy + crop, ox:ox + crop]
            np.testing.assert_allclose(got, (w[..., ::-1] if flipped else w) / 127.5 - 1, atol=1e-6)
            # the sketch and the depth are cut from the same window, flipped the same way
            for full, part in ((sketch / 127.5 - 1, b.sketch[j].double().numpy()), (depth, b.depth[j].numpy())):
                w = full[:, oy:oy + crop, ox:ox + crop]
                np.testing.assert_allclose(part, w[..., ::-1] if flipped else w, atol=1e-6)
            seen_offsets.add((oy, ox))
            flips.append(flipped)
    # every window position can be drawn (offsets 0..s-c inclusive on both axes) and about half are flipped
    s = size + 2 * pad
    assert {o for o, _ in seen_offsets} == set(range(s - crop + 1)) == {o for _, o in seen_offsets}
    assert 0.3 < np.mean(flips) < 0.7
    # without flipping, never flipped
    ds = DeviceDataset(t, torch.device("cpu"), pad, crop, False, seed=3)
    for _ in range(10):
        b = ds.batch(torch.tensor([1]))
        assert b.style.tolist() == [[1.0, 0.0, 0.0]]  # three columns even when the batch has only style 0
        photo = np.pad(t["photo"][1].numpy(), ((0, 0), (pad, pad), (pad, pad))).astype(np.int64)
        got = np.round((b.photo[0].double().numpy() + 1) * 127.5).astype(np.int64)
        assert [f for _, _, f in _window_of(got, photo, crop)] == [False]


def test_training_epochs_visit_each_pair_once_and_replay_from_the_saved_state():
    from facesketch.train.data import DeviceDataset

    t = _distinct_tensors()
    t.pop("depth")
    ds = DeviceDataset(t, torch.device("cpu"), 1, 8, True, seed=11)
    assert ds.depth is None
    batches = list(ds.epoch(2))
    assert len(batches) == 5 // 2 and all(b.depth is None for b in batches)  # the last partial batch dropped
    rows = torch.cat([b.index for b in batches]).tolist()
    assert len(set(rows)) == 4 and set(rows) <= set(range(5))
    assert len(list(ds.epoch(1, max_steps=3))) == 3 and len(list(ds.epoch(1, max_steps=9))) == 5
    assert len(list(ds.epoch(1, max_steps=None))) == 5
    # the sampler is seeded: same seed, same orders and crops; the saved state replays the rest
    a = DeviceDataset(t, torch.device("cpu"), 1, 8, True, seed=11)
    b = DeviceDataset(t, torch.device("cpu"), 1, 8, True, seed=11)
    other = DeviceDataset(t, torch.device("cpu"), 1, 8, True, seed=12)
    pa, pb, po = a.permutation(), b.permutation(), other.permutation()
    assert torch.equal(pa, pb) and sorted(pa.tolist()) == list(range(5))
    assert not all(torch.equal(a.permutation(), other.permutation()) for _ in range(3)) or not torch.equal(pa, po)
    saved = a.state()
    first = [x.photo for x in a.epoch(2)]
    a.set_state(saved)
    again = [x.photo for x in a.epoch(2)]
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    # crops and flips come from the dataset's own generator, never the global one
    c = DeviceDataset(t, torch.device("cpu"), 2, 6, True, seed=5)   # 10 px padded, 6 px crops: offsets 0..4
    d = DeviceDataset(t, torch.device("cpu"), 2, 6, True, seed=5)
    idx = torch.arange(5)
    torch.manual_seed(1)
    from_c = [c.batch(idx).photo for _ in range(4)]
    torch.manual_seed(2)
    from_d = [d.batch(idx).photo for _ in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(from_c, from_d))
    assert not all(torch.equal(from_c[0], x) for x in from_c[1:])  # and they do vary from batch to batch
    with pytest.raises(DataError, match=r"\(8\).*input.crop \(9\)"):
        DeviceDataset(t, torch.device("cpu"), 1, 9, True, seed=0)


def test_resize_u8_keeps_same_size_and_rounds_to_uint8():
    from facesketch.train.data import _resize_u8

    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 1, 4, 4), dtype=np.uint8))
    assert _resize_u8(x, 4) is x
    # a constant image stays that constant at any size
    y = _resize_u8(torch.full((1, 3, 6, 6), 77, dtype=torch.uint8), 4)
    assert y.dtype == torch.uint8 and y.shape == (1, 3, 4, 4) and bool((y == 77).all())
    assert bool((_resize_u8(torch.zeros((1, 1, 6, 6), dtype=torch.uint8), 4) == 0).all())
    # shrinking 4 -> 1 is antialiased: the triangle kernel stretched 4x weighs pixel centres 0.5..3.5
    # around 2 by 1 - |x - 2| / 4 = 0.625, 0.875, 0.875, 0.625 (sum 3); a bright first column gives
    # 255 * 0.625 / 3 = 53.1 (plain bilinear would sample between the middle two only: 0)
    edge = torch.zeros((1, 1, 4, 4), dtype=torch.uint8)
    edge[..., 0] = 255
    assert _resize_u8(edge, 1).item() == 53
    # 2 -> 1 by symmetry is the mean, 127.5: rounded (to 128), not truncated
    z = _resize_u8(torch.tensor([[[[0, 255], [0, 255]]]], dtype=torch.uint8), 1)
    assert z.tolist() == [[[[128]]]]


# --- train/infer: test framing -------------------------------------------------------------------


def test_fit_to_centres_padding_and_crops_with_the_odd_pixel_after():
    from facesketch.train.infer import fit_to

    x = torch.arange(9.0).reshape(1, 1, 3, 3) + 1
    assert fit_to(x, 3) is x
    p = fit_to(x, 6)  # 3 more: 1 before, 2 after
    assert p.shape == (1, 1, 6, 6)
    assert torch.equal(p[0, 0, 1:4, 1:4], x[0, 0]) and p.sum() == x.sum()
    assert torch.equal(p[0, 0, 0], torch.zeros(6)) and torch.equal(p[0, 0, :, 4:], torch.zeros(6, 2))
    big = torch.arange(36.0).reshape(1, 1, 6, 6)
    c = fit_to(big, 3)  # 3 fewer: 1 cut before, 2 after
    assert torch.equal(c[0, 0], big[0, 0, 1:4, 1:4])
    assert torch.equal(fit_to(p, 3), x)  # the crop undoes the padding


def test_network_inputs_resize_to_input_image_then_frame_photo_and_depth():
    from facesketch.train.infer import network_inputs

    spec = {"input": {"image": 4, "crop": 8}}
    photo = torch.full((2, 3, 10, 10), 51, dtype=torch.uint8)   # constant: any resize keeps it
    depth = torch.full((2, 1, 10, 10), 0.25)
    x, d = network_inputs(photo, depth, spec)
    assert x.shape == (2, 3, 8, 8) and d.shape == (2, 1, 8, 8)
    inner = (slice(None), slice(None), slice(2, 6), slice(2, 6))
    torch.testing.assert_close(x[inner], torch.full((2, 3, 4, 4), 51 / 127.5 - 1))
    torch.testing.assert_close(d[inner], torch.full((2, 1, 4, 4), 0.25))
    ring = torch.ones(8, 8, dtype=torch.bool)
    ring[2:6, 2:6] = False
    assert bool((x[..., ring] == -1).all()) and bool((d[..., ring] == 0).all())  # zeros before scaling: black
    x2, d2 = network_inputs(torch.full((1, 3, 4, 4), 255, dtype=torch.uint8), None, spec)
    assert d2 is None and float(x2[0, 0, 3, 3]) == 1.0
    # depth already at input.image is framed, not resized
    _, d3 = network_inputs(photo, torch.arange(16.0).reshape(1, 1, 4, 4), spec)
    assert torch.equal(d3[0, 0, 2:6, 2:6], torch.arange(16.0).reshape(4, 4))


def test_network_outputs_crop_grey_resize_and_clamp():
    from facesketch.train.infer import network_outputs, to_uint8

    spec = {"input": {"image": 4, "crop": 6}}
    y = torch.zeros(1, 3, 6, 6)
    y[:, 0], y[:, 1], y[:, 2] = 0.5, -0.25, 0.75
    y[..., 0, :] = 5.0   # the padding ring: cropped away before anything else
    out = network_outputs(y, spec, 4)
    want = 0.5 * 0.2989 - 0.25 * 0.5870 + 0.75 * 0.1140  # rgb2gray's documented coefficients
    assert out.shape == (1, 1, 4, 4)
    torch.testing.assert_close(out, torch.full((1, 1, 4, 4), want, dtype=torch.float32))
    up = network_outputs(torch.full((1, 1, 6, 6), 3.0), spec, 9)  # resized to the aligned size and clamped
    assert up.shape == (1, 1, 9, 9) and bool((up == 1).all())
    assert bool((network_outputs(torch.full((1, 1, 6, 6), -3.0), spec, 4) == -1).all())
    # [-1, 1] -> uint8: (y + 1) * 127.5 rounded, clamped
    v = torch.tensor([-1.0, 1.0, 0.0, -0.996, 0.5, 2.0, -2.0]).reshape(1, 1, 1, 7)
    u = to_uint8(v)
    assert u.dtype == np.uint8 and u.shape == (1, 1, 7)
    assert u[0, 0].tolist() == [0, 255, 128, 1, 191, 255, 0]


def test_infer_mode_train_draws_one_image_at_a_time_with_dropout_on():
    from facesketch.train.infer import set_infer_mode

    g = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    assert set_infer_mode(g, {"infer": {"mode": "eval"}}, 8) == 8 and not g.training
    assert set_infer_mode(g, {"infer": {"mode": "train"}}, 8) == 1 and g.training and g[1].training
    a = g(torch.ones(1, 2))
    set_infer_mode(g, {"infer": {"mode": "train"}}, 8)  # seeded: the same dropout again
    assert torch.equal(a, g(torch.ones(1, 2)))


def test_a_file_without_spec_or_generators_is_not_a_model(tmp_path):
    from facesketch.errors import DataError
    from facesketch.train import checkpoint as ckpt
    from facesketch.train.infer import load_model

    ckpt.save(tmp_path / "m.pt", {"generators": {}})
    with pytest.raises(DataError, match=r"m\.pt: not a facesketch model file"):
        load_model(tmp_path / "m.pt", "cpu")
    ckpt.save(tmp_path / "n.pt", {"spec": "{}"})
    with pytest.raises(DataError, match=r"n\.pt: not a facesketch model file"):
        load_model(tmp_path / "n.pt", "cpu")


# --- metrics/protocol: MATLAB's rounding, kernel and framing -------------------------------------


def test_round_half_away_from_zero_as_matlab():
    from facesketch.metrics.protocol import round_half_away

    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49, -0.49, 3.0, -3.2])
    assert round_half_away(x).tolist() == [1, 2, 3, -1, -2, -3, 0, 0, 3, -3]


def test_rgb2gray_drops_alpha_passes_grey_and_clips():
    from facesketch.metrics.protocol import rgb2gray

    grey = np.array([[3, 250]], np.uint16)
    g = rgb2gray(grey)
    assert g.dtype == np.uint8 and g.tolist() == [[3, 250]]
    rgba = np.array([[[255, 255, 255, 0], [100, 50, 200, 255]]], np.uint8)
    # 0.2989 R + 0.5870 G + 0.1140 B (rgb2gray's documented coefficients), rounded: alpha plays no part
    assert rgb2gray(rgba).tolist() == [[255, round(0.2989 * 100 + 0.5870 * 50 + 0.1140 * 200)]]
    assert rgb2gray(rgba).dtype == np.uint8 and rgb2gray(rgba[..., :3]).dtype == np.uint8
    assert rgb2gray(np.array([[[300.0, 300.0, 300.0]]])).tolist() == [[255]]  # clipped, not wrapped


def test_keys_cubic_kernel_by_hand():
    from facesketch.metrics.protocol import cubic

    x = np.array([0.0, 0.5, -0.5, 1.0, 1.5, -1.5, 2.0, 2.5, -3.0])
    # (1.5|x|^3 - 2.5|x|^2 + 1) on [0, 1], (-0.5|x|^3 + 2.5|x|^2 - 4|x| + 2) on (1, 2], 0 beyond
    np.testing.assert_allclose(cubic(x), [1.0, 0.5625, 0.5625, 0.0, -0.0625, -0.0625, 0.0, 0.0, 0.0], atol=1e-12)


def test_uint8_resize_clips_the_cubic_overshoot():
    from facesketch.metrics.protocol import imresize

    # [0, 255] -> 4 samples: 255 x (-0.09375, 0.203125, 0.796875, 1.09375) (Keys' cubic by hand, see
    # test_bicubic_upscale_derived_by_hand) = -23.9, 51.8, 203.2, 278.9: rounded and clipped to 0..255
    out = imresize(np.array([[0, 255]], np.uint8), 1, 4)
    assert out.dtype == np.uint8 and out.tolist() == [[0, 52, 203, 255]]


def test_contributions_sum_to_one_and_mirror_at_the_border():
    from facesketch.metrics.protocol import contributions

    w, idx = contributions(4, 8)  # upscaling by 2: the plain kernel, 4 taps
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert idx.min() >= 0 and idx.max() <= 3
    # output 1 (1-based) sits at input u = 1/2 + 0.5 * (1 - 1/2) = 0.75; taps at 1-based -2..3 (left =
    # floor(u - 2)), at distances 2.75, 1.75, 0.75, -0.25, -1.25, -2.25: weights 0, -0.0234375,
    # 0.2265625, 0.8671875, -0.0703125, 0 (Keys' cubic by hand, summing to 1); symmetric padding puts
    # taps -2, -1, 0 on inputs 3, 2, 1 (1-based): input 1 gets 0.2265625 + 0.8671875, input 2 the rest
    got = {}
    for t, v in zip(idx[0], w[0]):
        got[int(t)] = got.get(int(t), 0.0) + v
    assert got.get(0) == pytest.approx(1.09375, abs=1e-12)
    assert got.get(1) == pytest.approx(-0.09375, abs=1e-12)
    assert abs(got.get(2, 0.0)) < 1e-12 and abs(got.get(3, 0.0)) < 1e-12
    # shrinking by 2 with antialiasing: the kernel is stretched to width 8, so each output sees ~8 inputs
    w2, idx2 = contributions(16, 8)
    np.testing.assert_allclose(w2.sum(axis=1), 1.0)
    assert (np.count_nonzero(w2[4]) >= 7) and idx2[4].min() >= 0 and idx2[4].max() <= 15
    w3, _ = contributions(16, 8, antialias=False)
    assert np.count_nonzero(w3[4]) <= 4


def test_original_framing_cuts_the_crop_box_scaled_to_the_result():
    from types import SimpleNamespace

    from facesketch.metrics.protocol import frame_result, imresize

    row = SimpleNamespace(orig_width=100, orig_height=80, crop_x=10, crop_y=20, crop_size=40)
    result = np.arange(50 * 40, dtype=np.int64).reshape(40, 50).astype(np.uint8)  # half the archive's size
    # box (10, 20)-(50, 60) in the archive is (5, 10)-(25, 30) in the result
    np.testing.assert_array_equal(frame_result(result, row, "original", (20, 20)), result[10:30, 5:25])
    resized = frame_result(result, row, "original", (10, 10))
    np.testing.assert_array_equal(resized, imresize(result[10:30, 5:25], 10, 10))
    # aligned results are only resized to the ground truth, never cut
    np.testing.assert_array_equal(frame_result(result, row, "aligned", (40, 50)), result)
    assert frame_result(result, row, "aligned", (20, 25)).shape == (20, 25)
    # a different scale per axis: 200 x 40 result of the 100 x 80 archive
    wide = np.tile(np.arange(200, dtype=np.uint8), (40, 1))
    cut = frame_result(wide, row, "original", (20, 80))
    assert cut.shape == (20, 80) and cut[0, 0] == 20 and cut[0, -1] == 99


def test_native_ground_truth_is_the_crop_box_of_the_archive_sketch(tmp_path):
    from types import SimpleNamespace

    from facesketch.metrics.protocol import ground_truth

    full = np.zeros((30, 40, 3), np.uint8)
    full[..., 0] = np.arange(40)[None, :]
    full[..., 1] = np.arange(30)[:, None]
    Image.fromarray(full).save(tmp_path / "s.png")
    (tmp_path / "al").mkdir()
    Image.fromarray(np.full((5, 5), 9, np.uint8)).save(tmp_path / "al" / "a.png")
    row = SimpleNamespace(sketch="al/a.png", sketch_source=str(tmp_path / "s.png"), crop_x=7, crop_y=4, crop_size=6)
    gt = ground_truth(row, tmp_path, "native")
    assert gt.shape == (6, 6)
    x, y = np.meshgrid(np.arange(7, 13), np.arange(4, 10))
    want = np.floor(0.298936021293775 * x + 0.587043074451121 * y + 0.5)
    np.testing.assert_array_equal(gt, want)
    assert ground_truth(row, tmp_path, "aligned").tolist() == [[9] * 5] * 5


def test_native_ground_truth_of_a_transparent_sketch_is_on_white_paper(tmp_path):
    """FS2K's RGBA sketches (ink opaque, paper transparent): the native crop is ink on white, the
    same pixels the scorer's own ground truth has (facesketch.metrics.evaluate.load_pair)."""
    from types import SimpleNamespace

    from facesketch.metrics.evaluate import Job, load_pair
    from facesketch.metrics.protocol import ground_truth

    rgba = np.zeros((8, 8, 4), np.uint8)   # black everywhere; only the alpha says what is ink
    rgba[2:5, 3:6, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "s.png")
    la = np.zeros((8, 8, 2), np.uint8)
    la[..., 0], la[2:5, 3:6, 1] = 0, 255
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    want = np.full((6, 6), 255)
    want[1:4, 2:5] = 0                     # crop (1, 1) size 6: ink rows 2..4, cols 3..5 -> 1..3, 2..4
    for name in ("s.png", "la.png"):
        row = SimpleNamespace(sketch="", sketch_source=str(tmp_path / name), crop_x=1, crop_y=1, crop_size=6)
        np.testing.assert_array_equal(ground_truth(row, tmp_path, "native"), want)
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(tmp_path / "r.png")
    job = Job(0, str(tmp_path / "r.png"), "native", "aligned", "", str(tmp_path / "s.png"), 8, 8, 1, 1, 6)
    _, gt = load_pair(job)
    np.testing.assert_array_equal(gt, want)


# --- metrics/fsim: against piq on the sizes the even-sized test does not reach ---------------------


@pytest.mark.parametrize("shape", [(37, 45), (44, 31), (384, 388)])
def test_fsim_equals_piq_on_odd_and_downsampled_sizes(shape):
    """Odd sides take the other branch of the frequency grid; sides of 384 and more are averaged
    down by round(min side / 256) first (384 is the first: round(1.5) = 2). piq.fsim
    (chromatic=False) is the independent implementation."""
    import piq

    from facesketch.metrics.fsim import filter_bank, fsim

    filter_bank.cache_clear()  # built here, by the code under test, not by an earlier test

    rng = np.random.default_rng(sum(shape))
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    a = (120 + 60 * np.sin(xx / 7.0) * np.cos(yy / 5.0) + rng.normal(0, 8, shape)).clip(0, 255)
    b = np.clip(a + rng.normal(0, 25, shape), 0, 255)
    x = torch.from_numpy(np.stack([a, b])[:, None]).float()
    y = torch.from_numpy(np.stack([b, a[::-1].copy()])[:, None]).float()
    ours = fsim(x, y).numpy()
    theirs = piq.fsim(x, y, data_range=255.0, reduction="none", chromatic=False).numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-5)
    assert 0 < ours.min() and ours.max() < 1


def test_fsim_of_a_flat_image_against_a_textured_one_equals_piq():
    """A flat image has no filter response at all: its phase congruency is eps / eps = 1."""
    import piq

    from facesketch.metrics.fsim import filter_bank, fsim, phase_congruency

    filter_bank.cache_clear()
    yy, xx = np.mgrid[0:40, 0:48]
    textured = (120 + 60 * np.sin(xx / 5) * np.cos(yy / 4)).clip(0, 255)
    flat = np.full((40, 48), 200.0)
    assert bool((phase_congruency(torch.full((1, 1, 40, 48), 200.0)) == 1).all())
    x = torch.from_numpy(np.stack([flat, textured])[:, None]).float()
    y = torch.from_numpy(np.stack([textured, flat])[:, None]).float()
    ours = fsim(x, y).numpy()
    theirs = piq.fsim(x, y, data_range=255.0, reduction="none", chromatic=False).numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-5)


# --- train/infer: the command's file layout ------------------------------------------------------


def test_cross_style_inference_draws_the_first_photos_in_every_style(tiny_prepared, tmp_path, monkeypatch):
    """style='cross': the first N test photos (sorted ids) in each of the three styles, into out/<Style>/,
    each drawing carrying its style; a model trained under another spec is refused; the batch size does
    not change a drawing."""
    import json as _json

    import pandas as pd
    from torch import nn

    from facesketch.config import load_config
    from facesketch.errors import DataError
    from facesketch.models import registry
    from facesketch.train import checkpoint as ckpt
    from facesketch.train.infer import infer

    from .conftest import REPO
    from .test_regressions import LEVELS, StyleEcho, expected_drawing, small

    spec = small(load_config(REPO / "config.yaml")["resolved"]["pix2pix"], image=64, pad=4, crop=72)
    spec["generator"]["num_downs"] = 3
    gen = StyleEcho()
    with torch.no_grad():
        gen.levels.copy_(torch.tensor(LEVELS))
    model = tmp_path / "model.pt"
    ckpt.save(model, {"spec": _json.dumps(spec), "generators": {"G": gen.state_dict()}})
    monkeypatch.setattr(registry, "build", lambda s: {"G": StyleEcho(), "D": nn.Identity()})
    manifest_path = tiny_prepared / "manifest.parquet"
    manifest = pd.read_parquet(manifest_path)
    test = manifest[manifest.split == "test"].set_index("id")
    first = sorted(test.index)[:2]
    n = infer(spec, model, manifest_path, tmp_path / "maps", tmp_path / "cross", "cross", cross_style=2,
              batch_size=1, device="cpu")
    assert n == 6
    for s, name in enumerate(("Style1", "Style2", "Style3")):
        assert sorted(p.stem for p in (tmp_path / "cross" / name).glob("*.png")) == first
        for i in first:
            got = np.asarray(Image.open(tmp_path / "cross" / name / f"{i}.png").convert("L"))
            photo = np.asarray(Image.open(tiny_prepared / test.loc[i, "photo"]).convert("RGB"))
            np.testing.assert_allclose(got, expected_drawing(photo, s, offset=4), atol=1)
    # one style, all its photos, in one batch: the same drawings as one at a time
    n2 = infer(spec, model, manifest_path, tmp_path / "maps", tmp_path / "s2", "Style2", batch_size=8, device="cpu")
    ids2 = sorted(test[test["style"] == 1].index)
    assert n2 == len(ids2) and sorted(p.stem for p in (tmp_path / "s2").glob("*.png")) == ids2
    for i in set(ids2) & set(first):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "s2" / f"{i}.png")),
                              np.asarray(Image.open(tmp_path / "cross" / "Style2" / f"{i}.png")))
    other = dict(spec, input=dict(spec["input"], pad=6))
    with pytest.raises(DataError, match=r"model\.pt was trained with a different spec"):
        infer(other, model, manifest_path, tmp_path / "maps", tmp_path / "x", "Style1", device="cpu")


# --- metrics/networks: a wrong file in the weights folder is named ---------------------------------


@pytest.mark.parametrize("name", ["fid_inception", "lpips_alexnet"])
def test_a_wrong_weights_file_is_a_weights_error_naming_it(tmp_path, name, monkeypatch):
    import dataclasses

    from facesketch.errors import WeightsError
    from facesketch.maps import weights
    from facesketch.metrics.networks import load_fid_inception, load_lpips

    load = {"fid_inception": load_fid_inception, "lpips_alexnet": load_lpips}[name]
    w = weights.REGISTRY[name]
    path = tmp_path / w.folder / w.filename
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a pickle at all")  # unreadable: one error naming the file and what it should be

    def registered(p):  # the file's own fingerprint, so that loading (not the checksum) is what fails
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        monkeypatch.setitem(weights.REGISTRY, name, dataclasses.replace(w, sha256=digest, sha256_prefix=None,
                                                                        size=None))

    registered(path)
    with pytest.raises(WeightsError, match=rf"^{re.escape(str(path))}\b.* state dict"):
        load(tmp_path)
    torch.save({"unrelated.weight": torch.zeros(1)}, path)  # readable, wrong keys: still the file's name
    registered(path)
    with pytest.raises(WeightsError, match=rf"^{re.escape(str(path))}: not "):
        load(tmp_path)


# --- metrics/evaluate: the CPU metrics' dispatch ---------------------------------------------------


def _job(key, result, gt, **kw):
    from facesketch.metrics.evaluate import Job

    return Job(key, None if result is None else str(result), kw.get("gt_framing", "aligned"), "aligned", str(gt),
               "", 0, 0, 0, 0, 0)


def test_only_image_files_are_results(tmp_path):
    from facesketch.metrics.evaluate import index_results

    (tmp_path / "photo1_image0001.png").mkdir()          # a folder named like a result is not one
    (tmp_path / "photo1_image0002.txt").write_text("x")  # nor is a file of another kind
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "photo1_image0003.TIFF")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "photo3_image0004.tif")
    # the released HIDA test script's names: <subset>_image<number>
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "2_image0005.jpg")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "2-image0006.jpg")  # not that pattern
    assert index_results(tmp_path) == {"photo1_image0003": tmp_path / "photo1_image0003.TIFF",
                                       "photo3_image0004": tmp_path / "photo3_image0004.tif",
                                       "photo2_image0005": tmp_path / "2_image0005.jpg"}


def test_cpu_metrics_file_each_value_under_its_metric_and_image(tmp_path):
    """Each (result, metric) value is the metric's own definition on that pair: SCOOT and SSIM by the
    slow loops of test_metrics, FSIM by piq; a failing metric and an unreadable result are NaN with
    the reason; ground truths shared by several results give the same FSIM as computed alone."""
    import piq

    from facesketch.metrics.evaluate import cpu_metrics

    from .test_metrics import _scoot_by_hand, _ssim_brute_force

    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:24, 0:24]
    gts = [np.clip(128 + 80 * np.sin(xx / (3 + k)) * np.cos(yy / (4 + k)), 0, 255).astype(np.uint8) for k in range(2)]
    for k, g in enumerate(gts):
        Image.fromarray(g).save(tmp_path / f"gt{k}.png")
    res = [np.clip(gts[k % 2].astype(int) + rng.integers(-60, 60, (24, 24)), 0, 255).astype(np.uint8)
           for k in range(3)]
    for k, r in enumerate(res):
        Image.fromarray(r).save(tmp_path / f"r{k}.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    # results 0 and 2 share ground truth 0; result 1 has ground truth 1; key 7 is unreadable, key 9 missing
    jobs = [_job(10, tmp_path / "r0.png", tmp_path / "gt0.png"), _job(11, tmp_path / "r1.png", tmp_path / "gt1.png"),
            _job(12, tmp_path / "r2.png", tmp_path / "gt0.png"), _job(7, tmp_path / "bad.png", tmp_path / "gt1.png"),
            _job(9, None, tmp_path / "gt0.png")]
    names = ("SCOOT", "SSIM", "FSIM", "MS-SSIM", "LPIPS")
    out = cpu_metrics(jobs, names, workers=1)
    got = {(k, m): (v, why) for k, m, v, why in out}
    assert len(out) == len(got) == 5 * 4  # LPIPS is not a CPU metric
    for key, r, g in ((10, res[0], gts[0]), (11, res[1], gts[1]), (12, res[2], gts[0])):
        assert got[key, "SCOOT"] == (pytest.approx(_scoot_by_hand(g, r), abs=1e-9), "")
        assert got[key, "SSIM"] == (pytest.approx(_ssim_brute_force(r, g), abs=1e-9), "")
        want = piq.fsim(torch.from_numpy(r).float()[None, None], torch.from_numpy(g).float()[None, None],
                        data_range=255.0, reduction="none", chromatic=False).item()
        assert got[key, "FSIM"][0] == pytest.approx(want, abs=2e-5) and got[key, "FSIM"][1] == ""
        v, why = got[key, "MS-SSIM"]  # 24 px cannot hold MS-SSIM's five scales: NaN and why, the rest scored
        assert np.isnan(v) and why.startswith("MS-SSIM failed: ")
    for key, text in ((7, "cannot read image"), (9, "no result image")):
        for m in ("SCOOT", "SSIM", "FSIM", "MS-SSIM"):
            v, why = got[key, m]
            assert np.isnan(v) and text in why
    assert cpu_metrics([], names) == [] and cpu_metrics(jobs, ("LPIPS", "FID")) == []


def test_ms_ssim_is_scored_when_the_image_holds_five_scales(tmp_path):
    import piq

    from facesketch.metrics.evaluate import cpu_metrics

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:176, 0:176]
    g = np.clip(128 + 90 * np.sin(xx / 9) * np.cos(yy / 13), 0, 255).astype(np.uint8)
    r = np.clip(g.astype(int) + rng.integers(-40, 40, g.shape), 0, 255).astype(np.uint8)
    Image.fromarray(g).save(tmp_path / "g.png")
    Image.fromarray(r).save(tmp_path / "r.png")
    (key, metric, value, why), = cpu_metrics([_job(3, tmp_path / "r.png", tmp_path / "g.png")], ("MS-SSIM",))
    want = piq.multi_scale_ssim(torch.from_numpy(r).float()[None, None], torch.from_numpy(g).float()[None, None],
                                data_range=255.0, reduction="none").item()  # piq's default: Wang et al.'s weights
    # (given weights are normalised by piq, its defaults, which sum to 1.0001, are not: ~1e-5 apart)
    assert (key, metric, why) == (3, "MS-SSIM", "") and value == pytest.approx(want, abs=5e-5)


# --- metrics/evaluate: FID/KID sets, missing weights and the feature cache -------------------------


class _Pooled(torch.nn.Module):
    """FID stand-in: tanh of a fixed projection of the 4x4 block means of the [0, 1] input (3 channels)."""

    def __init__(self, seed: int = 0, dim: int = 3):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(48, dim, generator=g), requires_grad=False)

    def forward(self, x):
        return [torch.tanh(torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1) @ self.w - 1.0)[:, :, None, None]]


def _pooled_here(net: _Pooled, grey: np.ndarray) -> np.ndarray:
    """The stand-in's features written out: the image / 255, repeated on 3 channels, 4x4 block means."""
    h, w = grey.shape
    blocks = (grey.astype(np.float64) / 255).reshape(4, h // 4, 4, w // 4).mean(axis=(1, 3)).ravel()
    return np.tanh(np.tile(blocks, 3) @ net.w.double().numpy() - 1.0)


def _kid_here(r: np.ndarray, f: np.ndarray) -> float:
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, by loops."""
    d = r.shape[1]
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    m, n = len(r), len(f)
    rr = sum(k(r[i], r[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    ff = sum(k(f[i], f[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    rf = sum(k(r[i], f[j]) for i in range(m) for j in range(n)) / (m * n)
    return rr + ff - 2 * rf


def _set_rows(tmp_path, n: int = 5):
    rng = np.random.default_rng(3)
    jobs, gts, res = [], [], []
    for k in range(n):
        g = rng.integers(0, 256, (16, 16)).astype(np.uint8)
        r = np.clip(g.astype(int) + rng.integers(-70, 70, g.shape), 0, 255).astype(np.uint8)
        Image.fromarray(g).save(tmp_path / f"g{k}.png")
        Image.fromarray(r).save(tmp_path / f"r{k}.png")
        jobs.append(_job(k, tmp_path / f"r{k}.png", tmp_path / f"g{k}.png"))
        gts.append(g)
        res.append(r)
    return jobs, gts, res


def test_fid_and_kid_per_group_with_replicates_and_too_small_sets(tmp_path, monkeypatch):
    from facesketch.metrics import networks
    from facesketch.metrics.evaluate import network_metrics

    from .test_regressions import frechet_here

    net = _Pooled()
    monkeypatch.setattr(networks, "load_fid_inception", lambda d: net)
    jobs, gts, res = _set_rows(tmp_path)
    groups = {("v", 0, "Style1", "Style1"): [0, 1, 2, 3], ("v", 0, "Style2", "Style2"): [4],
              ("v", 0, "all", "all"): [0, 1, 2, 3, 4]}
    image_rows, set_rows = network_metrics(jobs, groups, ("FID", "KID"), tmp_path, False, "cpu", 2, None, n_boot=3)
    assert image_rows == []
    real = {k: _pooled_here(net, g) for k, g in enumerate(gts)}
    fake = {k: _pooled_here(net, r) for k, r in enumerate(res)}
    main = {(r["group"][2], r["metric"]): r for r in set_rows if "replicate" not in r}
    assert len(main) == 6
    for g, members in groups.items():
        for m in ("FID", "KID"):
            row = main[g[2], m]
            assert row["n"] == row["expected"] == len(members)
            if len(members) < 2:  # one image: no covariance, no pairs; NaN and why
                assert np.isnan(row["value"]) and row["reason"] == f"{m} needs at least 2 images, the set has 1"
                continue
            r, f = np.stack([real[k] for k in members]), np.stack([fake[k] for k in members])
            want = frechet_here(r, f) if m == "FID" else _kid_here(r, f)
            assert row["value"] == pytest.approx(want, rel=1e-4) and row["reason"] == ""  # float32 network
    reps = [r for r in set_rows if "replicate" in r]
    for g, members in groups.items():
        for m in ("FID", "KID"):
            mine = [r for r in reps if r["group"] == g and r["metric"] == m]
            assert [r["replicate"] for r in mine] == ([0, 1, 2] if len(members) >= 2 else [])
            assert all(r["n"] == len(members) and r["expected"] == len(members) for r in mine)
    # no bootstrap asked: no replicates; only FID asked: no KID rows
    _, only = network_metrics(jobs, groups, ("FID",), tmp_path, False, "cpu", 2, None, n_boot=0)
    assert {r["metric"] for r in only} == {"FID"} and len(only) == 3


def test_missing_network_weights_give_named_nan_rows_when_allowed(tmp_path):
    from facesketch.errors import WeightsError
    from facesketch.metrics.evaluate import network_metrics

    jobs, _, _ = _set_rows(tmp_path, 3)
    groups = {("v", 0, "all", "all"): [0, 1, 2]}
    image_rows, set_rows = network_metrics(jobs, groups, ("LPIPS", "FID", "KID"), tmp_path / "none", True, "cpu", 2,
                                           None, n_boot=2)
    assert [r[:2] for r in image_rows] == [(0, "LPIPS"), (1, "LPIPS"), (2, "LPIPS")]
    assert all(np.isnan(r[2]) and r[3].startswith("LPIPS not computed: ") and "alexnet" in r[3] for r in image_rows)
    assert sorted(r["metric"] for r in set_rows) == ["FID", "KID"]
    for r in set_rows:
        assert np.isnan(r["value"]) and r["reason"].startswith(f"{r['metric']} not computed: ")
        assert r["n"] == r["expected"] == 3 and "replicate" not in r
    for names in (("LPIPS",), ("FID",)):
        with pytest.raises(WeightsError):
            network_metrics(jobs, groups, names, tmp_path / "none", False, "cpu", 2, None)
    assert network_metrics(jobs, groups, ("SSIM",), tmp_path / "none", False, "cpu", 2, None) == ([], [])


def test_real_features_are_cached_per_network_and_ground_truth(tmp_path, monkeypatch):
    from facesketch.metrics import networks
    from facesketch.metrics.evaluate import content_id, network_metrics

    net = _Pooled(seed=1)
    monkeypatch.setattr(networks, "load_fid_inception", lambda d: net)
    jobs, gts, res = _set_rows(tmp_path, 4)
    groups = {("v", 0, "all", "all"): [0, 1, 2, 3]}
    cache = tmp_path / "cache"
    _, first = network_metrics(jobs, groups, ("FID",), tmp_path, False, "cpu", 3, cache)
    files = list(cache.glob("fid_real_features_*.npz"))
    assert len(files) == 1
    with np.load(files[0]) as z:
        ids, feats = z["ids"].tolist(), z["features"]
    assert sorted(ids) == sorted(content_id(g) for g in gts) and ids == sorted(ids)
    for i, g in zip(ids, [dict((content_id(g), g) for g in gts)[i] for i in ids]):
        np.testing.assert_allclose(feats[ids.index(i)], _pooled_here(net, g), atol=1e-6)
    # the cache is what is read next time: doctored features change the value, as they must
    np.savez(files[0], ids=np.array(ids), features=np.zeros_like(feats))
    _, second = network_metrics(jobs, groups, ("FID",), tmp_path, False, "cpu", 3, cache)
    from .test_regressions import frechet_here

    fake = np.stack([_pooled_here(net, r) for r in res])
    assert second[0]["value"] == pytest.approx(frechet_here(np.zeros_like(feats), fake), rel=1e-4)
    assert second[0]["value"] != pytest.approx(first[0]["value"])
    # another network (other weights) has its own file; a changed ground truth is a new entry
    net2 = _Pooled(seed=2)
    monkeypatch.setattr(networks, "load_fid_inception", lambda d: net2)
    network_metrics(jobs, groups, ("FID",), tmp_path, False, "cpu", 3, cache)
    assert len(list(cache.glob("fid_real_features_*.npz"))) == 2
    assert content_id(gts[0]) != content_id(gts[0].T.copy()) != content_id(gts[0][:8])
    assert content_id(gts[0]) == content_id(gts[0].copy())
    assert content_id(gts[0]) != content_id(gts[0].reshape(8, 32))  # the same bytes framed otherwise


def test_lpips_network_is_frozen_and_refuses_wrong_shapes_by_name():
    import torchvision

    from facesketch.errors import WeightsError
    from facesketch.metrics.networks import lpips_from_alexnet_state

    state = torchvision.models.alexnet(weights=None).state_dict()
    net = lpips_from_alexnet_state(state, "here.pth")
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    x = torch.rand(1, 3, 32, 32, requires_grad=True) * 2 - 1
    net(x, torch.zeros(1, 3, 32, 32)).sum().backward()  # gradients reach the image (edge loss), not the weights
    assert all(p.grad is None for p in net.parameters())
    state["features.3.weight"] = torch.zeros(192, 64, 3, 3)  # 3x3 where AlexNet has 5x5
    with pytest.raises(WeightsError, match=r"^here\.pth: AlexNet shapes do not match"):
        lpips_from_alexnet_state(state, "here.pth")


# --- train/data: decoding a split ------------------------------------------------------------------


def _halve_here(a: np.ndarray) -> np.ndarray:
    """Antialiased bilinear 2x downscale of the last two axes, by loops over the 1-D taps."""
    def axis(x, ax):
        x = np.moveaxis(x, ax, -1)
        n = x.shape[-1]
        out = np.zeros(x.shape[:-1] + (n // 2,))
        for j in range(n // 2):
            taps = [(k, w) for k, w in ((2 * j - 1, 1), (2 * j, 3), (2 * j + 1, 3), (2 * j + 2, 1)) if 0 <= k < n]
            out[..., j] = sum(w * x[..., k] for k, w in taps) / sum(w for _, w in taps)
        return np.moveaxis(out, -1, ax)

    return axis(axis(a, -1), -2)


def test_load_split_decodes_resizes_and_keeps_the_asked_order(tiny_prepared):
    import pandas as pd

    from facesketch.maps import encoding
    from facesketch.train.data import load_split

    from .conftest import write_depth_blobs

    maps = write_depth_blobs(tiny_prepared, "maps_mutants", (30, 28), (5, 3), 700.0)
    manifest_path = tiny_prepared / "manifest.parquet"
    full = pd.read_parquet(manifest_path)
    train = full[full.split == "train"]
    ids = list(reversed(sorted(train.id)))[:3]
    rows, t = load_split(manifest_path, maps, "train", None, True, ids=ids)
    assert rows.id.tolist() == ids and rows.attrs["root"] == str(tiny_prepared)
    assert t["style"].tolist() == [int(train.set_index("id")["style"][i]) for i in ids]
    for j, i in enumerate(ids):  # aligned size (64) kept: the decoded files themselves
        r = train.set_index("id").loc[i]
        photo = np.asarray(Image.open(tiny_prepared / r.photo).convert("RGB"))
        assert t["photo"].dtype == torch.uint8 and np.array_equal(t["photo"][j].permute(1, 2, 0).numpy(), photo)
        assert np.array_equal(t["sketch"][j, 0].numpy(), np.asarray(Image.open(tiny_prepared / r.sketch).convert("L")))
        d = encoding.load_depth(encoding.map_path(maps, "depth", "train", i))
        np.testing.assert_allclose(t["depth"][j, 0].numpy(), d, atol=1e-6)
    _, small = load_split(manifest_path, maps, "train", 32, True, ids=ids)
    assert small["photo"].shape == (3, 3, 32, 32) and small["sketch"].shape == (3, 1, 32, 32)
    assert small["depth"].shape == (3, 1, 32, 32) and small["photo"].dtype == torch.uint8
    # an antialiased bilinear halving, written out: the triangle kernel stretched 2x puts weights
    # 1/8, 3/8, 3/8, 1/8 on input pixels 2j-1 .. 2j+2 of output j, renormalised where the border cuts it
    np.testing.assert_allclose(small["depth"].numpy(), _halve_here(t["depth"].double().numpy()), atol=1e-5)
    assert np.abs(small["photo"].numpy().astype(float) - _halve_here(t["photo"].double().numpy())).max() <= 0.5 + 1e-6
    _, one = load_split(manifest_path, maps, "train", None, True, ids=ids[:1])  # a split of one pair
    assert one["photo"].shape == (1, 3, 64, 64) and torch.equal(one["photo"][0], t["photo"][0])
    _, no_depth = load_split(manifest_path, None, "test", None, False)
    assert "depth" not in no_depth and len(no_depth["photo"]) == (full.split == "test").sum()


def test_load_split_errors_name_what_is_missing(tiny_prepared):
    from facesketch.errors import DataError
    from facesketch.train.data import load_split

    with pytest.raises(DataError, match="needs depth maps; give --maps"):
        load_split(tiny_prepared / "manifest.parquet", None, "train", None, True)
    with pytest.raises(DataError, match=r"manifest\.parquet: no train pairs"):
        load_split(tiny_prepared / "manifest.parquet", None, "train", None, False, ids=[])


def test_every_cpu_metric_in_the_catalogue_computes_its_definition():
    """The catalogue's functions (the scorer computes FSIM through cached features instead, so its
    catalogue entry is checked here): float values of the pair (result, ground truth), against piq."""
    import piq

    from facesketch.metrics.catalogue import CPU_METRICS, LOWER_IS_BETTER, METRICS, SET_METRICS

    from .test_metrics import _scoot_by_hand, _ssim_brute_force

    assert CPU_METRICS == ("SCOOT", "FSIM", "SSIM", "MS-SSIM") and SET_METRICS == ("FID", "KID")
    assert LOWER_IS_BETTER == {"FID", "KID", "LPIPS"}
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:176, 0:176]
    g = np.clip(128 + 90 * np.sin(xx / 9) * np.cos(yy / 13), 0, 255).astype(np.uint8)
    r = np.clip(g.astype(int) + rng.integers(-50, 50, g.shape), 0, 255).astype(np.uint8)
    tr, tg = torch.from_numpy(r).float()[None, None], torch.from_numpy(g).float()[None, None]
    values = {m: METRICS[m].cpu(r, g) for m in CPU_METRICS}
    assert all(type(v) is float for v in values.values())
    assert values["FSIM"] == pytest.approx(piq.fsim(tr, tg, data_range=255.0, chromatic=False).item(), abs=2e-5)
    assert values["MS-SSIM"] == pytest.approx(piq.multi_scale_ssim(tr, tg, data_range=255.0).item(), abs=5e-5)
    small_r, small_g = r[:40, :40], g[:40, :40]  # the loops are slow: a corner
    assert METRICS["SSIM"].cpu(small_r, small_g) == pytest.approx(_ssim_brute_force(small_r, small_g), abs=1e-9)
    assert METRICS["SCOOT"].cpu(small_r, small_g) == pytest.approx(_scoot_by_hand(small_g, small_r), abs=1e-9)


# --- metrics/fid: the smallest sets ----------------------------------------------------------------


def test_fid_is_defined_from_two_images_per_set_and_nan_below():
    import warnings

    from facesketch.metrics.fid import fid_from_features

    from .test_regressions import frechet_here

    rng = np.random.default_rng(4)
    r2, f2 = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)) + 1
    # two samples: rank-1 covariances, still a distance (the means and one direction each)
    assert fid_from_features(r2, f2) == pytest.approx(frechet_here(r2, f2), rel=1e-6)
    r5 = rng.normal(size=(5, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no covariance of one sample is ever attempted
        for real, fake in ((r5, f2[:1]), (r2[:1], r5), (r5[:0], r5)):
            assert np.isnan(fid_from_features(real, fake))


# --- metrics/similarity: batches -------------------------------------------------------------------


def test_ssim_of_a_batch_is_each_pair_by_matlabs_definition():
    from facesketch.metrics.similarity import ssim_matlab

    from .test_metrics import _ssim_brute_force

    rng = np.random.default_rng(9)
    a = rng.integers(0, 256, (3, 14, 23)).astype(np.uint8)   # not square: rows and columns differ
    b = np.clip(a + rng.normal(0, 35, a.shape), 0, 255).astype(np.uint8)
    b[1] = b[1, :, ::-1]                                      # one pair far apart, so the values differ
    got = ssim_matlab(b, a)
    assert got.shape == (3,)
    for k in range(3):
        assert got[k] == pytest.approx(_ssim_brute_force(b[k], a[k]), abs=1e-12)


# --- metrics/scoot: blocks without pixel pairs -----------------------------------------------------


def test_scoot_of_images_too_small_for_every_block():
    """Three rows split into four block rows leave a block row empty: its co-occurrence matrix is
    all zero and its probabilities are zero (not 0/0), as the definition's loops give."""
    from facesketch.metrics.scoot import scoot

    from .test_metrics import _scoot_by_hand

    rng = np.random.default_rng(2)
    for shape in ((3, 9), (9, 3), (2, 2)):
        a = rng.integers(0, 256, shape).astype(np.uint8)
        b = rng.integers(0, 256, shape).astype(np.uint8)
        want = _scoot_by_hand(a, b)
        assert np.isfinite(want) and scoot(b, a) == pytest.approx(want, abs=1e-12)


# --- train/losses: gradients, the textural loss's modes, the geometric loss ------------------------


def _gradients_here(x: np.ndarray, kind: str, grey: str, padding: str) -> np.ndarray:
    """(B, 2, H, W) by scipy's correlate with the 3x3 kernels written out (Sobel; Prewitt / 3)."""
    from scipy.ndimage import correlate

    k = (np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]) if kind == "sobel"
         else np.array([[-1.0, 0, 1], [-1, 0, 1], [-1, 0, 1]]) / 3)
    g = x.sum(1) if grey == "sum" else np.tensordot(np.array([0.2989, 0.5870, 0.1140]), x, axes=([0], [1]))
    mode = {"replicate": "nearest", "zeros": "constant"}[padding]
    return np.stack([np.stack([correlate(im, k, mode=mode, cval=0.0), correlate(im, k.T, mode=mode, cval=0.0)])
                     for im in g])


def test_image_gradients_and_textural_loss_in_every_mode_against_scipy():
    from facesketch.train.losses import image_gradients, textural_loss, textural_mode_args

    rng = np.random.default_rng(8)
    yy, xx = np.mgrid[0:9, 0:11]
    p = np.stack([np.stack([xx * 0.1 - 0.5, yy * 0.08 - 0.3, rng.uniform(-1, 1, (9, 11))]) for _ in range(2)])
    r = np.stack([np.stack([yy * 0.05, -xx * 0.07, rng.uniform(-1, 1, (9, 11))]) for _ in range(2)])
    tp, tr = torch.from_numpy(p).float(), torch.from_numpy(r).float()

    def loss_here(kind, grey, padding):
        gp, gr = _gradients_here(p, kind, grey, padding), _gradients_here(r, kind, grey, padding)
        cos = (gp * gr).sum(1) / (np.linalg.norm(gp, axis=1) * np.linalg.norm(gr, axis=1) + 1e-6)
        return float((1 - cos).mean())

    for kind in ("sobel", "prewitt"):
        for grey in ("luminance", "sum"):
            for padding in ("replicate", "zeros"):
                np.testing.assert_allclose(image_gradients(tp, kind, grey, padding).numpy(),
                                           _gradients_here(p, kind, grey, padding), atol=1e-5)
                assert textural_loss(tp, tr, kind, grey=grey, padding=padding).item() == pytest.approx(
                    loss_here(kind, grey, padding), abs=1e-5)
    # the defaults are the paper's mode: Sobel, luminance, replicate
    np.testing.assert_allclose(image_gradients(tp).numpy(), _gradients_here(p, "sobel", "luminance", "replicate"),
                               atol=1e-5)
    assert textural_loss(tp, tr).item() == pytest.approx(loss_here("sobel", "luminance", "replicate"), abs=1e-5)
    # each config mode gives its loss: the paper's, and the released code's (Prewitt / 3 of R+G+B, zeros)
    assert textural_loss(tp, tr, **textural_mode_args("sobel_target")).item() == pytest.approx(
        loss_here("sobel", "luminance", "replicate"), abs=1e-5)
    assert textural_loss(tp, tr, **textural_mode_args("prewitt_photo")).item() == pytest.approx(
        loss_here("prewitt", "sum", "zeros"), abs=1e-5)
    assert textural_loss(tp, tp).item() == pytest.approx(0.0, abs=1e-4)  # eps and float32 only
    with pytest.raises(ValueError, match="unknown textural mode 'nope'"):
        textural_mode_args("nope")


def test_geometric_loss_default_is_the_papers_mse_and_rmse_of_equal_maps_is_zero():
    from facesketch.train.losses import geometric_loss

    a = torch.tensor([[0.0, 0.5], [1.0, 0.25]])
    b = torch.tensor([[0.5, 0.5], [0.0, 0.25]])
    assert geometric_loss(a, b).item() == pytest.approx((0.25 + 1.0) / 4)
    assert geometric_loss(a, b, "rmse").item() == pytest.approx(((0.25 + 1.0) / 4) ** 0.5)
    z = geometric_loss(a, a, "rmse")
    assert torch.isfinite(z) and z.item() == pytest.approx(0.0, abs=1e-5)


def test_gan_losses_by_hand_on_asymmetric_logits():
    """Logits whose means are not 0 and feature lists of three (two intermediate maps, then logits),
    so every sign and the choice of the last map matter."""
    from facesketch.train.losses import GANLoss

    def out(logits):
        return [torch.full((2,), 7.0), torch.full((2,), -3.0), torch.tensor(logits)]

    real, fake = out([2.0, 0.5]), out([-2.0, 0.3])
    h = GANLoss("hinge")
    # D: relu(1 - r) = 0, 0.5 -> 0.25; relu(1 + f) = 0, 1.3 -> 0.65
    assert h.d_loss(real, fake).item() == pytest.approx(0.25 + 0.65)
    assert h.g_loss(fake).item() == pytest.approx(-(-2.0 + 0.3) / 2)  # -mean f = 0.85
    # the released extra term: (mean f - mean r)^4 = (-0.85 - 1.25)^4
    assert GANLoss("hinge", d_extra=True).d_loss(real, fake).item() == pytest.approx(0.9 + 2.1 ** 4)
    ls = GANLoss("lsgan")
    assert ls.d_loss(real, fake).item() == pytest.approx(0.5 * (((2 - 1) ** 2 + 0.5 ** 2) / 2 + (4 + 0.09) / 2))
    assert ls.g_loss(fake).item() == pytest.approx(((-3) ** 2 + 0.7 ** 2) / 2)
    v = GANLoss()  # the default is the vanilla (cross-entropy) loss: log(1 + e^-x) for a real target
    want = (np.log1p(np.exp(2.0)) + np.log1p(np.exp(-0.3))) / 2
    assert v.g_loss(fake).item() == pytest.approx(want, rel=1e-6)
    # two scales: summed
    assert h.d_loss([real, real], [fake, fake]).item() == pytest.approx(2 * 0.9)


def test_edge_loss_feeds_hed_images_in_0_1_and_lpips_edges_in_minus_1_1():
    from facesketch.train.losses import EdgeLoss

    seen, compared = [], []

    class Hed(torch.nn.Module):  # an "edge map" in [0, 1]: the first channel itself
        def forward(self, x):
            seen.append(x.detach().clone())
            return x[:, :1]

    class Lpips(torch.nn.Module):
        def forward(self, a, b):
            compared.append((a.detach().clone(), b.detach().clone()))
            return (a - b).abs().mean((1, 2, 3))

    loss = EdgeLoss(Hed(), Lpips())
    real = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 1, 3).repeat(2, 1, 1, 1)  # a batch of two
    rec = torch.tensor([1.0, 0.0, -1.0]).view(1, 1, 1, 3).repeat(2, 1, 1, 1)
    value = loss(real, rec)
    assert torch.equal(seen[0], torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3).expand(2, 3, 1, 3))
    # LPIPS gets the edge maps mapped back to [-1, 1] (2 e - 1) on three channels: here the inputs themselves
    a, b = compared[0]
    assert torch.equal(a, real.expand(2, 3, 1, 3)) and torch.equal(b, rec.expand(2, 3, 1, 3))
    assert value.item() == pytest.approx((2 + 0 + 2) / 3)


def test_vgg_loss_network_is_frozen():
    import torchvision

    from facesketch.train.losses import VGGLoss

    net = VGGLoss(torchvision.models.vgg19(weights=None).state_dict())
    assert not any(p.requires_grad for p in net.parameters())
    x = torch.rand(2, 1, 32, 32, requires_grad=True)
    y = torch.rand(2, 1, 32, 32)
    value = net(x, y)
    value.backward()  # the gradient reaches the images only
    # grey batches are compared as three equal channels
    assert value.item() == pytest.approx(net(x.detach().expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)).item(),
                                         rel=1e-6)
    assert x.grad is not None and all(p.grad is None for p in net.parameters())


def test_unpaired_depth_model_draws_with_g_a_from_its_depth_into_an_existing_folder(tiny_prepared, tmp_path,
                                                                                  monkeypatch):
    """An unpaired model (G_A photo -> sketch, G_B back) that reads depth, in eval mode: the drawing
    is G_A's, made from the test photo's own depth map, framed back; the batch size is kept."""
    import json as _json

    import pandas as pd
    from torch import nn

    from facesketch.config import load_config
    from facesketch.maps import encoding
    from facesketch.models import registry
    from facesketch.train import checkpoint as ckpt
    from facesketch.train.infer import infer

    from .conftest import REPO, write_depth_blobs
    from .test_regressions import small

    class DepthEcho(nn.Module):  # G_A: the sketch is the depth map, in [-1, 1]
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x, depth=None, style=None):
            return self.w * depth * 2 - 1

    class Blank(nn.Module):  # G_B: anything else would show up as a blank drawing
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x, depth=None, style=None):
            return torch.ones_like(x[:, :1]) * self.w

    maps = write_depth_blobs(tiny_prepared, "maps_infer_mutants", (30, 28), (5, 3), 700.0)
    spec = small(load_config(REPO / "config.yaml")["resolved"]["pix2pix"], image=64, pad=4, crop=72)
    spec["generator"]["num_downs"] = 3
    spec["infer"] = dict(spec.get("infer", {}), mode="eval")
    model = tmp_path / "model.pt"
    ckpt.save(model, {"spec": _json.dumps(spec), "generators": {"G_A": DepthEcho().state_dict(),
                                                                "G_B": Blank().state_dict()}})
    monkeypatch.setattr(registry, "build",  # networks are built from the spec the model file holds
                        lambda s: {"G_A": DepthEcho(), "G_B": Blank(), "D_A": nn.Identity()} if s == spec else {})
    monkeypatch.setattr(registry, "needs_depth", lambda s: True)
    manifest_path = tiny_prepared / "manifest.parquet"
    manifest = pd.read_parquet(manifest_path)
    ids = sorted(manifest[(manifest.split == "test") & (manifest["style"] == 0)].id)
    out = tmp_path / "drawn"
    out.mkdir()
    (out / "keep.txt").write_text("already here")
    assert infer(spec, model, manifest_path, maps, out, "Style1", batch_size=2, device="cpu") == len(ids)
    assert (out / "keep.txt").read_text() == "already here"
    for i in ids:
        got = np.asarray(Image.open(out / f"{i}.png"))
        want = np.round(encoding.load_depth(encoding.map_path(maps, "depth", "test", i)) * 255)
        assert got.shape == want.shape and np.abs(got.astype(float) - want).max() <= 1


def test_inference_resizes_as_pillow_does():
    """Photos and depth to input.image: antialiased bilinear; outputs back to the aligned size:
    antialiased bicubic, both ways. Pillow's resize (BILINEAR, BICUBIC on float images) is the
    independent implementation of both filters."""
    from facesketch.train.infer import network_inputs, network_outputs

    def pil(a: np.ndarray, size: int, how) -> np.ndarray:
        return np.asarray(Image.fromarray(a.astype(np.float32), "F").resize((size, size), how))

    rng = np.random.default_rng(12)
    photo = rng.integers(0, 256, (1, 3, 10, 10)).astype(np.uint8)
    depth = rng.uniform(0, 1, (1, 1, 10, 10)).astype(np.float32)
    spec = {"input": {"image": 4, "crop": 6}}
    x, d = network_inputs(torch.from_numpy(photo), torch.from_numpy(depth), spec)
    for c in range(3):
        np.testing.assert_allclose(x[0, c, 1:5, 1:5].numpy(), pil(photo[0, c], 4, Image.BILINEAR) / 127.5 - 1,
                                   atol=1e-5)
    np.testing.assert_allclose(d[0, 0, 1:5, 1:5].numpy(), pil(depth[0, 0], 4, Image.BILINEAR), atol=1e-5)
    for image, size in ((8, 4), (4, 8)):  # a variant drawing at 512 shrinks to 250; one at 128 grows
        y = rng.uniform(-0.8, 0.8, (1, 1, image + 2, image + 2)).astype(np.float32)
        out = network_outputs(torch.from_numpy(y), {"input": {"image": image, "crop": image + 2}}, size)
        want = np.clip(pil(y[0, 0, 1:-1, 1:-1], size, Image.BICUBIC), -1, 1)
        np.testing.assert_allclose(out[0, 0].numpy(), want, atol=1e-5)


def test_evaluate_folder_lists_missing_and_ignored_files_beside_the_metrics(tiny_prepared, tmp_path):
    import pandas as pd

    from facesketch import STYLES
    from facesketch.metrics.evaluate import evaluate_folder
    from facesketch.metrics.inputs import issues_path

    manifest = pd.read_parquet(tiny_prepared / "manifest.parquet")
    test = manifest[manifest.split == "test"].sort_values("id")
    res = tmp_path / "res"
    res.mkdir()
    for r in test.iloc[1:].itertuples():
        Image.fromarray(np.asarray(Image.open(tiny_prepared / r.sketch).convert("L"))).save(res / f"{r.id}.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(res / "notes.png")  # not named by FS2K id
    out = tmp_path / "o.parquet"
    df = evaluate_folder(res, tiny_prepared / "manifest.parquet", out, {"names": ["SSIM"], "framing": "aligned"},
                         tmp_path, framing="aligned", label="theirs", device="cpu")
    assert set(df.variant) == {"theirs"} and set(df.seed) == {0}
    issues = pd.read_parquet(issues_path(out)).set_index("issue")
    first = test.iloc[0]
    missing = issues.loc[["missing"]]
    assert len(missing) == 1
    assert missing.iloc[0].to_dict() == {"variant": "theirs", "seed": 0, "style": STYLES[int(first["style"])],
                                         "image_id": first.id, "file": "", "detail": f"no result in {res}"}
    ignored = issues.loc[["ignored"]]
    assert ignored.file.tolist() == [str(res / "notes.png")] and ignored.seed.tolist() == [0]


def test_score_variant_lists_missing_and_ignored_samples_and_refuses_other_folders(tiny_prepared, tmp_path):
    import pandas as pd

    from facesketch.errors import DataError
    from facesketch.metrics.evaluate import score_variant
    from facesketch.metrics.inputs import issues_path

    manifest = pd.read_parquet(tiny_prepared / "manifest.parquet")
    test = manifest[(manifest.split == "test") & (manifest["style"] == 1)].sort_values("id")
    d = tmp_path / "samples" / "v" / "3" / "Style2"
    d.mkdir(parents=True)
    for r in test.iloc[1:].itertuples():
        Image.fromarray(np.asarray(Image.open(tiny_prepared / r.sketch).convert("L"))).save(d / f"{r.id}.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(d / "stray.png")
    spec = {"variant": "v", "metrics": {"names": ["SSIM"], "framing": "aligned"}}
    out = tmp_path / "v.parquet"
    df = score_variant(spec, tiny_prepared / "manifest.parquet", [d], out, tmp_path, device="cpu")
    assert set(df.seed) == {3} and set(df.style_asked) == {"Style2"} and len(df) == len(test)
    assert df.set_index("image_id").value.isna().to_dict() == {i: i == test.iloc[0].id for i in test.id}
    assert df.set_index("image_id").reason[test.iloc[0].id] == "no result image"  # missing, not unreadable
    issues = pd.read_parquet(issues_path(out))
    got = {(r.issue, r.variant, r.seed, r.style, r.image_id, Path(r.file).name) for r in issues.itertuples()}
    assert got == {("missing", "v", 3, "Style2", test.iloc[0].id, f"{test.iloc[0].id}.png"),
                   ("ignored", "v", 3, "Style2", "stray", "stray.png")}
    with pytest.raises(DataError, match=r"Other: sample folders end in <seed>/<Style1\|Style2\|Style3>"):
        score_variant(spec, tiny_prepared / "manifest.parquet", [tmp_path / "samples" / "v" / "3" / "Other"], out,
                      tmp_path, device="cpu")


# --- models/layers: the pyramid on any size, the condition's parts, the layer's defaults -----------


def _bilinear_half_pixel(a: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize (H, W) -> (size, size), half-pixel centres, no antialiasing (PyTorch's
    align_corners=False), written out: source coordinate (i + 0.5) * scale - 0.5, clamped at 0."""
    def axis(n_in):
        src = np.maximum((np.arange(size) + 0.5) * n_in / size - 0.5, 0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), src - i0
    r0, r1, fr = axis(a.shape[0])
    c0, c1, fc = axis(a.shape[1])
    rows = a[r0] * (1 - fr)[:, None] + a[r1] * fr[:, None]
    return rows[:, c0] * (1 - fc) + rows[:, c1] * fc


def _pyramid_by_hand(x: np.ndarray, size: int) -> np.ndarray:
    k = np.array([1, 4, 6, 4, 1]) / 16
    while x.shape[1] > size:  # halve both axes while the width exceeds the target
        p = np.pad(x, 2, mode="edge")
        rows = sum(k[i] * p[i:i + x.shape[0]] for i in range(5))
        x = sum(k[j] * rows[:, j:j + x.shape[1]] for j in range(5))[::2, ::2]
    return x if x.shape == (size, size) else _bilinear_half_pixel(x, size)


@pytest.mark.parametrize("shape,size", [((12, 12), 5), ((13, 13), 3), ((16, 8), 4), ((9, 14), 4)])
def test_gaussian_pyramid_on_odd_non_square_and_non_power_of_two_sizes(shape, size):
    from facesketch.models.layers import gaussian_downsample

    x = np.random.default_rng(sum(shape)).random(shape)
    got = gaussian_downsample(torch.from_numpy(x)[None, None], size)[0, 0].numpy()
    np.testing.assert_allclose(got, _pyramid_by_hand(x, size), rtol=1e-12, atol=1e-12)


def test_condition_resizes_depth_by_the_chosen_pyramid_and_keeps_the_depth_dtype():
    from facesketch.models.layers import ConditionBranch, gaussian_downsample, nearest_resize
    from facesketch.models.layers import style_maps as layers_style_maps

    def branch(pyramid, **kw):
        return ConditionBranch(4, ("gamma",), depth=kw.get("depth", True), depth_pyramid=pyramid,
                               style_channels=kw.get("style", 0), appearance=False)
    assert branch("gaussian").resize_depth is gaussian_downsample
    assert branch("nearest").resize_depth is nearest_resize
    assert branch("gaussian", depth=False, style=3).resize_depth is None
    depth = torch.rand(2, 1, 16, 16).bfloat16()  # the bf16 recipe: style maps follow the depth's dtype
    style = torch.eye(3)[[0, 2]]  # float32
    got = branch("nearest", style=3).condition(4, depth, style, None)
    assert got.dtype == torch.bfloat16 and got.shape == (2, 4, 4, 4)
    torch.testing.assert_close(got[:, 0], depth[:, 0, ::4, ::4])  # nearest: every fourth pixel from the first
    torch.testing.assert_close(got[:, 1:], style[:, :, None, None].bfloat16().expand(-1, -1, 4, 4))
    only_style = branch("gaussian", depth=False, style=3).condition(4, None, style.double(), None)
    assert only_style.dtype == torch.float64  # no depth: the style's own dtype
    assert layers_style_maps(style, (2, 3), torch.float64).dtype == torch.float64


def test_layer_defaults_are_the_plain_hida_layer():
    """IDAUp's defaults: transposed-conv up, no appearance, depth condition through the Gaussian
    pyramid, the paper's residual, no dropout (the generator passes each switch explicitly)."""
    from facesketch.models.layers import DySPADE, IDAUp, gaussian_downsample

    layer = IDAUp(8, 4, norm="dyspade")
    assert isinstance(layer.up, torch.nn.ConvTranspose2d) and layer.appearance is None
    assert layer.condition.resize_depth is gaussian_downsample and layer.condition.style_channels == 0
    assert isinstance(layer.norm, DySPADE) and layer.norm.add_upsampled  # the paper's H + K
    assert isinstance(layer.dropout, torch.nn.Identity) and isinstance(layer.f_act, torch.nn.ReLU)
    assert layer.condition.shared.in_channels == 1  # depth only
    dropped = IDAUp(8, 4, dropout=True).dropout
    assert isinstance(dropped, torch.nn.Dropout) and dropped.p == 0.5


def test_any_one_condition_is_enough():
    from facesketch.models.layers import IDAUp

    assert IDAUp(8, 4, norm="dyspade", depth=False, style_channels=3).condition.shared.in_channels == 3
    with_a = IDAUp(8, 4, skip_channels=4, norm="dyspade", depth=False, appearance=True)
    assert with_a.condition.shared.in_channels == 1 and with_a.appearance is not None
    for kw in ({}, {"appearance": True}):  # appearance needs a skip to draw it from
        with pytest.raises(ValueError, match="^DySPADE/InfoACON need a condition: enable depth, style or appearance$"):
            IDAUp(8, 4, norm="dyspade", act="infoacon", depth=False, **kw)


def test_layer_errors_name_the_bad_value():
    from facesketch.models import layers

    for call, text in ((lambda: layers.activation("gelu", 4), "unknown activation 'gelu'"),
                       (lambda: layers.norm_layer("group", 4), "unknown norm 'group'"),
                       (lambda: layers.DySPADE("other"), "unknown residual 'other'"),
                       (lambda: layers.IDAUp(8, 4, norm="batch"), "unknown decoder norm 'batch'"),
                       (lambda: layers.IDAUp(8, 4, act="gelu"), "unknown decoder activation 'gelu'"),
                       (lambda: layers.DOGUpsample(5, 4), "DOG: 5 input channels do not split into 2 deformable"),
                       (lambda: layers.ConditionBranch(4, ("theta",), depth=False, depth_pyramid="gaussian",
                                                       style_channels=0, appearance=False),
                        "DySPADE/InfoACON need a condition: enable depth, style or appearance")):
        with pytest.raises(ValueError, match=f"^{re.escape(text)}"):
            call()


def test_norm_none_is_the_identity_and_leaky_relu_slope_is_0_2():
    from facesketch.models import layers

    assert isinstance(layers.norm_layer("none", 4), torch.nn.Identity)
    assert isinstance(layers.norm_layer("batch", 4), torch.nn.BatchNorm2d)
    x = torch.tensor([-1.0, 2.0])
    torch.testing.assert_close(layers.LeakyReLU()(x, None), torch.tensor([-0.2, 2.0]))
    torch.testing.assert_close(layers.activation("leakyrelu", 1)(x), torch.tensor([-0.2, 2.0]))


def test_infoacon_parameters_have_the_released_shape():
    from facesketch.models.layers import InfoACON

    a = InfoACON(5)
    assert a.p1.shape == a.p2.shape == (1, 5, 1, 1)  # AconC's layout: released checkpoints load


def test_dog_weights_start_as_pytorchs_conv_default_and_keep_the_input_dtype():
    """kaiming_uniform_(a=sqrt(5)) bounds the weights by 1/sqrt(fan_in), as nn.Conv2d's default;
    a bf16 input gets a bf16 output (the deformable conv itself runs in fp32)."""
    from facesketch.models.layers import DOGUpsample

    torch.manual_seed(0)
    dog = DOGUpsample(32, 32)
    bound = 1 / math.sqrt(32 * 9)
    assert dog.weight.abs().max() <= bound and dog.weight.abs().max() > 0.99 * bound
    y = dog.bfloat16()(torch.randn(1, 32, 4, 4).bfloat16())
    assert y.dtype == torch.bfloat16 and y.shape == (1, 32, 8, 8)



# --- report/tables: what the tables rule passes ---------------------------------------------------


def test_table_spec_carries_the_run_and_leaves_out_variants_whose_weights_are_missing(tmp_path):
    from facesketch.config import load_config, run_variants
    from facesketch.report.tables import table_spec

    from .conftest import REPO

    cfg = load_config(REPO / "config.yaml", overrides={
        "paths": {"weights": str(tmp_path / "no-weights")},
        "variants": {"hida_D": {"precision": "bf16"}, "pix2pix": {"select": "test"}},
        "released": {"mine": {"path": "somewhere", "label": "Mine", "framing": "aligned"}}})
    spec = table_spec(cfg, {"mine": True})
    assert (spec["name"], spec["tables"], spec["metrics"]) == (cfg["name"], cfg["tables"], cfg["metrics"])
    assert spec["statistics"] == cfg["statistics"]
    released_variants = [v for v in run_variants(cfg) if cfg["resolved"][v].get("pretrained")]
    assert released_variants and set(spec["weights_missing"]) == set(released_variants)
    assert all("hida" in why.lower() for why in spec["weights_missing"].values())  # where the file goes
    assert spec["run_variants"] == [v for v in run_variants(cfg) if v not in released_variants]
    info = spec["variant_info"]
    assert set(info) == set(cfg["resolved"])
    assert info["hida_D"] == {"precision": "bf16", "select": "final"}
    assert info["pix2pix"] == {"precision": "fp32", "select": "test"}
    assert spec["released"]["mine"] == {"path": "somewhere", "available": True}
    assert spec["released"]["mdal"] == {"path": cfg["released"]["mdal"]["path"], "available": False}


def test_attribute_header_text_and_unknown_codes():
    import pandas as pd

    from facesketch.report.tables import attribute_name, attributes_markdown

    assert attribute_name("gender", 1) == "gender: female" and attribute_name("gender", 1.0) == "gender: female"
    assert attribute_name("gender", 7) == "gender=7"          # a code FS2K's README does not define
    assert attribute_name("hat_colour", 2) == "hat_colour=2"  # an attribute it does not define
    empty = pd.DataFrame(columns=["variant", "attribute", "code", "metric", "mean", "n_images"])
    assert attributes_markdown(empty) == (
        "### Metrics by FS2K annotation (beyond the papers)\n\n"
        "Mean per-image value over the test photos with each annotation (FS2K's anno_test.json, codes decoded "
        "as FS2K's README defines them; n = test photos). Only methods scored in this run.\n\n"
        "No per-image metrics in this run.\n")
    one = pd.DataFrame([dict(variant="a", attribute="gender", code=0, metric="SSIM", mean=0.25, n_images=3)])
    assert attributes_markdown(one).endswith(
        "#### SSIM\n\n| method | gender: male |\n|---|---|\n| a | 0.250 (n=3) |\n")


def test_attribute_codes_stay_integers_when_an_image_has_no_annotation(tiny_prepared):
    import pandas as pd

    from facesketch.report.tables import attribute_breakdown

    manifest = pd.read_parquet(tiny_prepared / "manifest.parquet")
    ids = list(manifest[manifest.split == "test"].id) + ["photo9_image9999"]  # not in the manifest: NaN codes
    rows = [dict(variant="v", seed=0, style_asked="Style1", style_gt="Style1", image_id=i, metric="SSIM",
                 value=0.5, scope="image", n_images=1, reason="") for i in ids]
    out = attribute_breakdown(pd.DataFrame(rows), manifest)
    assert out.code.dtype.kind == "i" and list(out.index) == list(range(len(out)))
    assert out.n_images.sum() == (len(ids) - 1) * out.attribute.nunique()  # the stranger counts nowhere


# --- metrics/evaluate: a folder's missing and ignored files, record by record ----------------------


def test_evaluate_folder_names_each_missing_and_ignored_file(tiny_prepared, tmp_path, caplog):
    import shutil

    import pandas as pd

    from facesketch import STYLES
    from facesketch.metrics.evaluate import evaluate_folder
    from facesketch.metrics.inputs import issues_path

    manifest = pd.read_parquet(tiny_prepared / "manifest.parquet")
    test = manifest[manifest.split == "test"].sort_values("id")
    res = tmp_path / "res"
    res.mkdir()
    for r in test.itertuples():
        shutil.copy(tiny_prepared / r.sketch, res / f"{r.id}.png")
    gone = test.iloc[0]
    (res / f"{gone.id}.png").unlink()
    train_id = manifest[manifest.split == "train"].id.iloc[0]
    shutil.copy(res / f"{test.iloc[1].id}.png", res / f"{train_id}.png")      # an FS2K id, not a test one
    shutil.copy(res / f"{test.iloc[1].id}.png", res / "portrait.png")         # not an FS2K id
    (sub := res / test.iloc[1].image_name.split("/")[0]).mkdir()
    shutil.copy(res / f"{test.iloc[1].id}.png", sub / (test.iloc[1].image_name.split("/")[1] + ".jpg"))  # a second file
    out = tmp_path / "m" / "x.parquet"
    with caplog.at_level("WARNING"):
        evaluate_folder(res, tiny_prepared / "manifest.parquet", out, {"names": ["SSIM"], "framing": "aligned"},
                        tmp_path, framing="aligned", label="mine")  # device left at its default, auto
    issues = pd.read_parquet(issues_path(out)).sort_values(["issue", "file"]).reset_index(drop=True)
    missing = issues[issues.issue == "missing"]
    assert missing.drop(columns="file").to_dict("records") == [
        {"variant": "mine", "seed": 0, "style": STYLES[int(gone["style"])], "image_id": gone.id, "issue": "missing",
         "detail": f"no result in {res}"}]
    ignored = issues[issues.issue == "ignored"]
    stranger = "not named by FS2K id, or a second file for an id"
    got = {r["file"]: r["detail"] for r in ignored.to_dict("records")}
    twins = {str(res / f"{test.iloc[1].id}.png"), str(sub / (test.iloc[1].image_name.split("/")[1] + ".jpg"))}
    (twin,) = set(got) & twins  # one of the two files for that id is scored, the other named
    assert got == {str(res / f"{train_id}.png"): "not a test id of the manifest",
                   str(res / "portrait.png"): stranger, twin: stranger}
    assert (ignored[["variant", "seed", "style", "image_id"]].drop_duplicates().to_dict("records")
            == [{"variant": "mine", "seed": 0, "style": "", "image_id": ""}])
    assert f"{res}: 1 of {len(test)} test images have no result (scored as missing)" in caplog.messages


def test_a_folder_without_fs2k_names_is_one_line_saying_how_to_name_them(tiny_prepared, tmp_path):
    from facesketch.metrics.evaluate import evaluate_folder

    (tmp_path / "res").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "res" / "face.png")
    with pytest.raises(DataError) as e:
        evaluate_folder(tmp_path / "res", tiny_prepared / "manifest.parquet", tmp_path / "o.parquet",
                        {"names": ["SSIM"]}, tmp_path, device="cpu")
    assert str(e.value) == (f"{tmp_path / 'res'}: no images named by FS2K id (photo1_image0001.png, "
                            "photo1/image0001.jpg or sketch1/sketch0001.jpg)")


# --- metrics/evaluate: score()'s records and its defaults ----------------------------------------


def _tiny_items(tiny_prepared, tmp_path):
    import pandas as pd

    manifest = pd.read_parquet(tiny_prepared / "manifest.parquet")
    manifest = manifest[manifest.split == "test"].reset_index(drop=True)
    manifest.attrs["root"] = str(tiny_prepared)
    (tmp_path / "res").mkdir(exist_ok=True)
    for r in manifest.itertuples():  # results: the ground truth inverted (every metric well away from 1)
        Image.fromarray(255 - np.asarray(Image.open(tiny_prepared / r.sketch))).save(tmp_path / "res" / f"{r.id}.png")
    items = pd.DataFrame({"variant": "v", "seed": 3, "style_asked": "Style2", "image_id": manifest.id,
                          "result": [str(tmp_path / "res" / f"{i}.png") for i in manifest.id]})
    return manifest, items.set_axis(range(10, 10 + len(items)))  # an index that is not 0..n-1


def test_score_writes_one_record_per_value_with_its_group(tiny_prepared, tmp_path, monkeypatch):
    from facesketch import STYLES
    from facesketch.metrics import networks
    from facesketch.metrics.catalogue import METRICS
    from facesketch.metrics.evaluate import COLUMNS, load_pair, score
    from facesketch.metrics.evaluate import _job as _job_of

    net = _Pooled(seed=2)
    monkeypatch.setattr(networks, "load_fid_inception", lambda d: net)
    manifest, items = _tiny_items(tiny_prepared, tmp_path)
    df = score(items, manifest, {"names": ["SSIM", "FID"], "bootstrap": 2}, tmp_path, "cpu", cache=tmp_path / "c")
    assert list(df.columns) == COLUMNS
    image = df[df.scope == "image"]
    assert len(image) == len(manifest)
    by_id = manifest.set_index("id")
    for row in image.to_dict("records"):
        assert {k: row[k] for k in ("variant", "seed", "style_asked", "metric", "scope", "n_images", "reason",
                                    "replicate", "n_expected")} == {
            "variant": "v", "seed": 3, "style_asked": "Style2", "metric": "SSIM", "scope": "image", "n_images": 1,
            "reason": "", "replicate": -1, "n_expected": 1}
        assert row["style_gt"] == STYLES[int(by_id.loc[row["image_id"], "style"])]
    first = next(manifest.itertuples())
    res, gt = load_pair(_job_of(0, tmp_path / "res" / f"{first.id}.png", first, tiny_prepared, "aligned", "aligned"))
    assert image.set_index("image_id").value[manifest.id[0]] == pytest.approx(METRICS["SSIM"].cpu(res, gt), abs=1e-12)
    sets = df[df.scope == "set"]
    groups = {("Style2", STYLES[int(s)]) for s in manifest["style"]} | {("all", "all")}
    assert set(zip(sets.style_asked, sets.style_gt)) == groups and set(sets.metric) == {"FID"}
    assert (sets.image_id == "").all() and (sets.replicate == -1).all() and (sets.reason == "").all()
    whole = sets[sets.style_gt == "all"].iloc[0]
    assert whole.n_images == whole.n_expected == len(manifest)
    boot = df[df.scope == "set_boot"]
    assert sorted(set(boot.replicate)) == [0, 1] and (boot.image_id == "").all()
    assert list(tmp_path.joinpath("c").glob("fid_real_features_*.npz"))  # the FID cache is where it was asked


def test_score_defaults(tiny_prepared, tmp_path, monkeypatch, caplog):
    """Without keys: the four CPU metrics, the aligned framing, the feature cache on, results that
    do not fit only warned about, 200 FID/KID replicates, missing weights an error."""
    from facesketch.errors import WeightsError
    from facesketch.metrics import networks
    from facesketch.metrics.evaluate import COLUMNS, CPU_METRICS, score

    manifest, items = _tiny_items(tiny_prepared, tmp_path)
    with caplog.at_level("WARNING", logger="facesketch.metrics.evaluate"):
        plain = score(items, manifest, {}, tmp_path, "cpu", cache=tmp_path / "c")
    first = plain[plain.metric == "MS-SSIM"].iloc[0]
    (message,) = caplog.messages
    named = re.fullmatch(rf"{len(manifest)} per-image values could not be computed \(see the reason column\), "
                         rf"e\.g\. (\S+): {re.escape(first.reason)}", message)
    assert named and named.group(1) in set(manifest.id)
    nothing = score(items, manifest, {"names": []}, tmp_path, "cpu")
    assert nothing.empty and list(nothing.columns) == list(COLUMNS)
    assert set(plain.metric) == set(CPU_METRICS)
    small = plain.metric == "MS-SSIM"  # the tiny archive's 64 px cannot hold MS-SSIM's five scales
    assert plain[~small].value.notna().all() and plain[small].reason.str.startswith("MS-SSIM failed").all()
    assert list((tmp_path / "c" / "gt_features").rglob("*.npz"))
    aligned = score(items, manifest, {"names": list(CPU_METRICS), "framing": "aligned"}, tmp_path, "cpu")
    native = score(items, manifest, {"names": list(CPU_METRICS), "framing": "native"}, tmp_path, "cpu")
    assert plain[~small].value.tolist() == aligned[~small].value.tolist()
    assert plain[~small].value.tolist() != native[~small].value.tolist()
    Image.fromarray(np.zeros((40, 30), np.uint8)).save(items.result.iloc[0])  # wrong aspect: warned, scored
    issues: list = []
    assert score(items, manifest, {"names": ["SSIM"]}, tmp_path, "cpu", issues=issues).value.notna().all()
    assert [i["issue"] for i in issues] == ["aspect"]
    with pytest.raises(WeightsError):
        score(items, manifest, {"names": ["FID"]}, tmp_path / "no-weights", "cpu")
    monkeypatch.setattr(networks, "load_fid_inception", lambda d: _Pooled(seed=4))
    boot = score(items.iloc[1:], manifest, {"names": ["KID"]}, tmp_path, "cpu")
    assert boot[(boot.scope == "set_boot") & (boot.style_gt == "all")].replicate.tolist() == list(range(200))


@pytest.mark.parametrize("name", ["FSIM", "SCOOT"])
def test_fsim_and_scoot_read_the_ground_truths_cached_features(tmp_path, name):
    from facesketch.metrics.evaluate import cpu_metrics

    jobs, _, _ = _set_rows(tmp_path, 2)
    cache = tmp_path / "cache"
    cpu_metrics(jobs, (name,), workers=1, cache=cache)
    assert len(list(cache.rglob("*.npz"))) == 2
    cpu_metrics(jobs, ("SSIM", "MS-SSIM"), workers=1, cache=tmp_path / "other")
    assert not (tmp_path / "other").exists()  # the other metrics need no ground-truth features


def test_a_missing_network_is_named_by_its_file_in_the_reason_and_how_to_get_it_in_the_log(tmp_path, caplog):
    from facesketch.metrics.evaluate import _network
    from facesketch.metrics.networks import load_fid_inception

    with caplog.at_level("WARNING"):
        net, reason = _network("FID", load_fid_inception, tmp_path, True, "cpu")
    assert net is None
    assert reason == ("FID not computed: pretrained weights 'fid_inception' (FID (Inception-v3, TF 2015-12-05 "
                      "weights, pytorch-fid)) not found: put pt_inception-2015-12-05-6726825d.pth at "
                      f"{tmp_path / 'fid' / 'pt_inception-2015-12-05-6726825d.pth'}")
    (message,) = caplog.messages
    assert message.startswith(reason) and "facesketch weights fetch fid_inception" in message


def test_score_variant_records_every_missing_ignored_and_misframed_file(tiny_prepared, tmp_path):
    import shutil

    import pandas as pd

    from facesketch.metrics.evaluate import score_variant
    from facesketch.metrics.inputs import issues_path

    manifest = pd.read_parquet(tiny_prepared / "manifest.parquet")
    test = manifest[manifest.split == "test"]
    s1 = test[test["style"] == 0].sort_values("id")
    d1, d3 = tmp_path / "samples" / "v" / "0" / "Style1", tmp_path / "samples" / "v" / "0" / "Style3"
    d1.mkdir(parents=True)
    for r in s1.itertuples():
        shutil.copy(tiny_prepared / r.sketch, d1 / f"{r.id}.png")
    (d1 / f"{s1.id.iloc[0]}.png").unlink()                                        # missing
    Image.fromarray(np.zeros((40, 30), np.uint8)).save(d1 / f"{s1.id.iloc[1]}.png")  # misframed
    (d1 / "stray.png").write_bytes(b"x")                                          # ignored
    (d1 / ".hidden").write_bytes(b"x")                                            # never reported
    out = tmp_path / "metrics" / "v.parquet"
    score_variant({"variant": "v", "metrics": {"names": ["SSIM", "FSIM"]}}, tiny_prepared / "manifest.parquet",
                  [d1, d3], out, tmp_path)  # Style3 has no folder at all; device left at auto
    issues = pd.read_parquet(issues_path(out))
    s3 = sorted(test[test["style"] == 2].id)
    want_missing = [("Style1", s1.id.iloc[0], str(d1 / f"{s1.id.iloc[0]}.png"))] + [
        ("Style3", i, str(d3 / f"{i}.png")) for i in s3]
    missing = issues[issues.issue == "missing"]
    assert sorted(zip(missing["style"], missing.image_id, missing.file)) == sorted(want_missing)
    assert set(missing.detail) == {"no result file"} and set(missing.variant) == {"v"} and set(missing.seed) == {0}
    ignored = issues[issues.issue == "ignored"].to_dict("records")
    assert ignored == [{"variant": "v", "seed": 0, "style": "Style1", "image_id": "stray",
                        "file": str(d1 / "stray.png"), "issue": "ignored", "detail": "not a Style1 test id's result"}]
    assert issues[issues.issue == "aspect"].image_id.tolist() == [s1.id.iloc[1]]
    assert list((out.parent / ".cache" / "gt_features").rglob("*.npz"))  # the cache beside the metrics


# --- metrics/inputs: every finding written out ------------------------------------------------------


def _finding_job(key, result, gt="", framing="aligned", gt_framing="aligned", orig=(0, 0)):
    from facesketch.metrics.evaluate import Job

    return Job(key, None if result is None else str(result), gt_framing, framing, str(gt), "", orig[0], orig[1],
               0, 0, 0)


def test_framing_findings_are_whole_records(tmp_path):
    from facesketch.metrics.inputs import framing_issues

    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "gt.png")
    files = {"ok": np.zeros((20, 20), np.uint8), "wide": np.zeros((20, 30), np.uint8),
             "small": np.zeros((10, 10), np.uint8), "deep": np.zeros((20, 20), np.uint16),
             "float": np.zeros((20, 20), np.float32), "photo": np.zeros((300, 400), np.uint8),
             "photo_square": np.zeros((300, 300), np.uint8)}
    for name, a in files.items():
        Image.fromarray(a).save(tmp_path / f"{name}.{'tiff' if name == 'float' else 'png'}")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    path = {n: tmp_path / f"{n}.{'tiff' if n == 'float' else 'png'}" for n in files}
    path["broken"] = tmp_path / "broken.png"
    jobs = [_finding_job(0, None, tmp_path / "gt.png"), _finding_job(1, path["broken"], tmp_path / "gt.png")] + [
        _finding_job(k, path[n], tmp_path / "gt.png") for k, n in enumerate(["ok", "wide", "small", "deep", "float"], 2)
    ] + [_finding_job(7, path["photo"], framing="original", gt_framing="native", orig=(800, 600)),
         _finding_job(8, path["photo_square"], framing="original", gt_framing="native", orig=(800, 600)),
         _finding_job(9, path["small"], tmp_path / "gt.png", gt_framing="native")]
    got = framing_issues(jobs, lambda k: (f"v{k}", k, f"S{k}", f"id{k}"))

    def rec(k, name, issue, detail):
        return {"variant": f"v{k}", "seed": k, "style": f"S{k}", "image_id": f"id{k}", "file": str(path[name]),
                "issue": issue, "detail": detail}
    assert got == [
        rec(3, "wide", "aspect",
            "30x20 (aspect 1.500) but the aligned framing has aspect 1.000: scoring would stretch it"),
        rec(4, "small", "size", "10x10 but the aligned ground truth is 20x20: scoring would resize it"),
        rec(5, "deep", "converted", "16-bit (I;16) brought to 8 bits as im2uint8"),
        rec(6, "float", "refused", "image mode F: no defined 0..255 range"),
        rec(8, "photo_square", "aspect",
            "300x300 (aspect 1.000) but the original framing has aspect 1.333: scoring would stretch it"),
    ]  # the 800x600 photo's 400x300 result fits; a native ground truth has no aligned size to match


def test_a_non_square_ground_truth_size_is_named_width_first(tmp_path):
    from facesketch.metrics.inputs import framing_issues

    Image.fromarray(np.zeros((20, 21), np.uint8)).save(tmp_path / "gt.png")  # 21 wide, 20 high
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "r.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "r2.png")
    (tmp_path / "bad_gt.png").write_bytes(b"x")
    jobs = [_finding_job(k, tmp_path / r, tmp_path / g) for k, (r, g) in enumerate(
        [("r.png", "gt.png"), ("r2.png", "gt.png"), ("r.png", "bad_gt.png"), ("r2.png", "bad_gt.png")])]
    got = framing_issues(jobs, lambda k: ("v", 0, "S", f"i{k}"))
    assert [(g["image_id"], g["detail"]) for g in got] == [
        ("i0", "20x20 but the aligned ground truth is 21x20: scoring would resize it"),
        ("i1", "20x20 but the aligned ground truth is 21x20: scoring would resize it")]  # unreadable gt: nothing


def test_enforce_names_the_first_ten_and_counts_the_rest():
    from facesketch.metrics.inputs import enforce

    bad = [{"file": f"f{i}.png", "issue": "aspect" if i % 2 else "size", "detail": f"d{i}"} for i in range(12)]
    other = [{"file": "x.png", "issue": "converted", "detail": "16-bit"}]
    enforce(bad + other, "warn")  # warned about elsewhere, scored
    enforce(other, "error")       # nothing of the framing: nothing to refuse
    with pytest.raises(DataError) as e:
        enforce(bad + other, "error")
    shown = ", ".join(f"f{i}.png (d{i})" for i in range(10))
    assert str(e.value) == (f"12 result(s) do not match the protocol's framing: {shown} and 2 more "
                            "(metrics.framing_mismatch: error; set it to warn to score them anyway)")
    with pytest.raises(DataError) as e:
        enforce(bad[:10], "error")
    assert str(e.value) == (f"10 result(s) do not match the protocol's framing: {shown} "
                            "(metrics.framing_mismatch: error; set it to warn to score them anyway)")
    with pytest.raises(DataError, match=r"^1 result\(s\) do not match the protocol's framing: f0.png \(d0\) \("):
        enforce(bad[:1], "error")  # a size finding alone is refused too


def test_report_logs_each_kind_once_in_order_with_names_and_writes_them_all(tmp_path, caplog):
    import pandas as pd

    from facesketch.metrics.inputs import issues_path, report

    issues = [{"variant": "v", "seed": 0, "style": "S", "image_id": f"id{i}", "file": f"/r/f{i}.png", "issue": "size",
               "detail": "20x20 but ..."} for i in range(12)]
    issues += [{"variant": "v", "seed": 0, "style": "S", "image_id": "gone", "file": "", "issue": "missing",
                "detail": "no result file"},
               {"variant": "v", "seed": 0, "style": "S", "image_id": "d", "file": "/r/d.png", "issue": "converted",
                "detail": "16-bit"},
               {"variant": "v", "seed": 0, "style": "S", "image_id": "w", "file": "/r/w.png", "issue": "weird",
                "detail": "?"}]
    out = tmp_path / "m.parquet"
    with caplog.at_level("INFO", logger="facesketch.metrics.inputs"):
        assert report(issues, out) == issues_path(out) == tmp_path / "m.issues.parquet"
    where = tmp_path / "m.issues.parquet"
    shown = ", ".join(f"f{i}.png" for i in range(10))
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"12 results of another size: {shown} and 2 more (20x20 but ...; all in {where})"),
        ("WARNING", f"1 test images have no result: gone (no result file; all in {where})"),
        ("INFO", f"1 16-bit results converted: d.png (16-bit; all in {where})"),
        ("WARNING", f"1 weird: w.png (?; all in {where})")]
    assert pd.read_parquet(where).to_dict("records") == issues
    caplog.clear()
    with caplog.at_level("INFO", logger="facesketch.metrics.inputs"):
        report(issues[:10], out)  # exactly ten: all named, no "and 0 more"
    assert caplog.messages == [f"10 results of another size: {shown} (20x20 but ...; all in {where})"]


def test_ms_ssim_runs_in_float32_as_piq_does():
    from facesketch.metrics.similarity import ms_ssim

    rng = np.random.default_rng(5)
    a, b = (rng.integers(0, 256, (2, 170, 170)).astype(np.uint8) for _ in range(2))
    assert ms_ssim(a, b).dtype == np.float32 and ms_ssim(a.astype(np.float64), b).dtype == np.float32


# --- report/tables: the LaTeX table is the Markdown table, escaped ---------------------------------


def test_latex_escapes_every_special_character():
    from facesketch.report.tables import SIGNIFICANT, _latex_escape

    assert _latex_escape("a\\b&c%d_e#f±g" + SIGNIFICANT + "h—i−j↓k↑l*m") == (
        r"a\textbackslash{}b\&c\%d\_e\#f$\pm$g$^\dagger$h--i-j$\downarrow$k$\uparrow$lm")


def test_latex_table_is_the_all_styles_markdown_table_in_latex(tmp_path):
    """Each LaTeX row is the Markdown row of the all-styles block with LaTeX's marks: bold and
    underline for best and second, $\\pm$, -- for a dash, $^\\dagger$; arrows in the header."""
    import pandas as pd

    from facesketch.config import load_config
    from facesketch.report.tables import LOWER_IS_BETTER, SIGNIFICANT, build_tables, table_spec

    from .conftest import REPO

    spec = table_spec(load_config(REPO / "config.yaml", overrides={"paths": {"weights": str(tmp_path / "w")}}), {})
    rng = np.random.default_rng(0)
    rows = []
    for v, base in (("pix2pix", 0.4), ("hida_full", 0.5), ("hida_D", 0.45)):
        for i in range(12):
            style = f"Style{i % 3 + 1}"
            rows.append(dict(variant=v, seed=0, style_asked=style, style_gt=style, image_id=f"photo1_image{i:04d}",
                             metric="SCOOT", value=base + rng.normal(0, 0.01), scope="image", n_images=1, reason=""))
    pd.DataFrame(rows).to_parquet(tmp_path / "m.parquet")
    build_tables(spec, [tmp_path / "m.parquet"], tmp_path / "t")
    md = (tmp_path / "t" / "hida_table2.md").read_text().split("### ")[1]  # the all-styles block
    tex = (tmp_path / "t" / "hida_table2.tex").read_text().splitlines()
    table = spec["tables"]["hida_table2"]
    cols = table["metrics"]
    head = " & ".join(c + (r" $\downarrow$" if c in LOWER_IS_BETTER else r" $\uparrow$") for c in cols)
    assert tex[:7] == [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{l" + "c" * len(cols) + "}",
                       r"\toprule", f"Method & {head} \\\\", r"\midrule"]
    md_rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert len(md_rows) == len(table["rows"])

    def latex(cell: str) -> str:
        cell = re.sub(r"\*\*(.+?)\*\*", r"\\textbf{\1}", cell)
        cell = re.sub(r"(?<![\w])_(.+?)_(?![\w])", r"\\underline{\1}", cell)
        return cell.replace("±", r"$\pm$").replace("—", "--").replace(SIGNIFICANT, r"$^\dagger$")

    want = []
    for line in md_rows:
        label, *cells = [c.strip() for c in line.strip("|").split("|")]
        want.append(label.replace("_", r"\_") + " & " + " & ".join(latex(c) for c in cells) + r" \\")
    assert tex[7:7 + len(want)] == want
    assert any(r"\textbf{" in w for w in want) and any(r"\underline{" in w for w in want)
    assert tex[7 + len(want):7 + len(want) + 2] == [r"\bottomrule", r"\end{tabular}"]
    assert tex[7 + len(want) + 3:] == [r"\label{tab:hida_table2}", r"\end{table}"]
    cap = tex[7 + len(want) + 2]
    assert cap.startswith(r"\caption{" + table["title"].replace("_", r"\_") + " -- all styles. Source: ")


def test_no_metrics_files_give_an_empty_frame_with_the_columns_and_files_are_concatenated(tmp_path):
    import pandas as pd

    from facesketch.metrics.evaluate import COLUMNS
    from facesketch.report.tables import load_metrics

    empty = load_metrics([tmp_path / "none.parquet"])
    assert empty.empty and set(empty.columns) == set(COLUMNS) - {"replicate"} and empty.value.dtype == float
    a = pd.DataFrame({"variant": ["a", "a"], "value": [1.0, 2.0]})
    b = pd.DataFrame({"variant": ["b"], "value": [3.0]})
    a.to_parquet(tmp_path / "a.parquet")
    b.to_parquet(tmp_path / "b.parquet")
    both = load_metrics([tmp_path / "a.parquet", tmp_path / "none.parquet", tmp_path / "b.parquet"])
    assert both.variant.tolist() == ["a", "a", "b"] and list(both.index) == [0, 1, 2]


def test_the_process_pool_gives_the_values_of_one_process(tmp_path):
    """More than two chunks of results: cpu_metrics spreads them over spawned workers; every
    value is the one process's, each under its own key."""
    from facesketch.metrics.evaluate import cpu_metrics

    jobs, _, _ = _set_rows(tmp_path, 40)
    names = ("SCOOT", "SSIM", "FSIM")
    alone = cpu_metrics(jobs, names, workers=1)
    pooled = cpu_metrics(jobs, names, workers=2, cache=tmp_path / "cache")
    assert len(pooled) == len(alone) == 120 and sorted(pooled) == sorted(alone)
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 40  # the workers were given the cache


def test_fid_and_kid_of_two_images_are_scored_and_of_none_named(tmp_path, monkeypatch):
    from facesketch.metrics import networks
    from facesketch.metrics.evaluate import network_metrics

    monkeypatch.setattr(networks, "load_fid_inception", lambda d: _Pooled(seed=5))
    jobs, _, _ = _set_rows(tmp_path, 3)
    jobs[2] = _job(2, None, jobs[2].gt_aligned)  # no result
    groups = {("v", 0, "Style1", "Style1"): [0, 1], ("v", 0, "Style2", "Style2"): [2]}
    _, rows = network_metrics(jobs, groups, ("FID", "KID"), tmp_path, False, "cpu", 2, None, n_boot=2)
    two = [r for r in rows if r["group"][2] == "Style1"]
    assert {(r["metric"], r.get("replicate", -1)) for r in two} == {(m, b) for m in ("FID", "KID") for b in (-1, 0, 1)}
    assert all(np.isfinite(r["value"]) and r["reason"] == "" and r["n"] == 2 for r in two)
    none = [r for r in rows if r["group"][2] == "Style2"]
    assert sorted((r["metric"], r["n"], r["expected"], r["reason"]) for r in none) == [
        ("FID", 0, 1, "FID needs at least 2 images, the set has 0"),
        ("KID", 0, 1, "KID needs at least 2 images, the set has 0")]
    assert all(np.isnan(r["value"]) for r in none)



def test_result_bit_depths_and_palettes_are_read_as_the_protocol_defines(tmp_path):
    from facesketch.metrics.inputs import read_result_grey

    deep = np.array([[0, 128, 100 * 257 + 128, 65535]], np.uint16)  # round(x / 257): 0, 0, 100, 255
    Image.fromarray(deep).save(tmp_path / "deep.png")
    got = read_result_grey(tmp_path / "deep.png")
    assert got.dtype == np.uint8 and got.tolist() == [[0, 0, 100, 255]]
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    pal.putdata([0, 1])
    pal.save(tmp_path / "pal.png")
    # MATLAB rgb2gray of (200, 100, 50): 0.298936021293775 R + 0.587043074451121 G + 0.114020904255103 B
    assert read_result_grey(tmp_path / "pal.png").tolist() == [[0, round(0.298936021293775 * 200 + 58.7043074451121
                                                                          + 0.114020904255103 * 50)]]
    Image.fromarray(np.zeros((2, 2), np.float32)).save(tmp_path / "f.tiff")
    with pytest.raises(DataError) as e:
        read_result_grey(tmp_path / "f.tiff")
    assert str(e.value) == (f"{tmp_path / 'f.tiff'}: image mode F (32-bit integer or floating point) has no defined "
                            "0..255 range; save results as 8- or 16-bit PNG")
