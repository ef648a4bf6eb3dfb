"""Shared fixtures: a tiny FS2K-layout archive made here, and the real archive when available.

Tests that need the real FS2K archive take ``fs2k_archive`` (or the session-wide
``real_subset``) and skip without ``$FS2K_ARCHIVE``; `.ci/run` points it at the real file.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

# tqdm under mutmut, which forks a process per mutant from one that has run the tests: no monitor
# thread (a fork taken while it holds tqdm's lock deadlocks the child's first bar), and a lock of
# this process only, not tqdm's default semaphore shared by every fork (a child killed at its
# time limit while holding it would hang every later child's first bar).
import threading  # noqa: E402

import tqdm  # noqa: E402

tqdm.tqdm.monitor_interval = 0
tqdm.tqdm.set_lock(threading.RLock())

# (subset, size (w, h), styles by split) of the synthetic archive
SUBSETS = {"photo1": (250, 250), "photo2": (223, 318), "photo3": (475, 340)}


def _face_like(w: int, h: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A photo and its 'sketch': smooth shading plus a dark marker square at a seeded place."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / 17.0 + seed) * np.cos(yy / 23.0)
    photo = np.stack([base, base * 0.9, base * 0.8], -1)
    sketch = np.full((h, w), 245.0)
    s = min(w, h) // 8
    x0 = int(rng.integers(w // 4, w // 2))
    y0 = int(rng.integers(h // 4, h // 2))
    photo[y0:y0 + s, x0:x0 + s] = 10
    sketch[y0:y0 + s, x0:x0 + s] = 0
    return np.clip(photo, 0, 255).astype(np.uint8), np.clip(sketch, 0, 255).astype(np.uint8)


def make_fs2k_tree(root: Path, per_subset: int = 4, styles=(0, 1, 2)) -> Path:
    """FS2K/ with photo/photoK, sketch/sketchK and anno_{train,test}.json, official layout.

    Each subset gets ``per_subset`` pairs in each split; photo3's first photo has an
    upper-case .JPG; one photo2 sketch is RGBA. Returns the FS2K folder.
    """
    fs2k = root / "FS2K"
    anno = {"train": [], "test": []}
    n = 0
    for k, (sub, (w, h)) in enumerate(SUBSETS.items(), start=1):
        (fs2k / "photo" / sub).mkdir(parents=True, exist_ok=True)
        (fs2k / "sketch" / f"sketch{k}").mkdir(parents=True, exist_ok=True)
        for i in range(2 * per_subset):
            n += 1
            number = f"{i + 1:04d}"
            photo, sketch = _face_like(w, h, seed=n)
            suffix = ".JPG" if (sub == "photo3" and i == 0) else (".png" if i % 2 else ".jpg")
            Image.fromarray(photo).save(fs2k / "photo" / sub / f"image{number}{suffix}")
            s_img = Image.fromarray(sketch)
            if sub == "photo2" and i == 1:
                rgba = np.zeros((h, w, 4), np.uint8)
                rgba[..., 3] = 255 - sketch  # ink opaque, paper transparent
                s_img = Image.fromarray(rgba, "RGBA")
            s_img.save(fs2k / "sketch" / f"sketch{k}" / f"sketch{number}{'.png' if i % 2 else '.jpg'}")
            split = "train" if i < per_subset else "test"
            anno[split].append({
                "image_name": f"{sub}/image{number}", "style": styles[i % len(styles)], "skin_color": [1, 2],
                "lip_color": [1.0, 2.0, 3.0], "eye_color": [4.0, 5.0, 6.0], "hair": 0, "hair_color": 1,
                "gender": i % 2, "earring": 1, "smile": 0, "frontal_face": 1})
    for split, entries in anno.items():
        (fs2k / f"anno_{split}.json").write_text(json.dumps(entries))
    (fs2k / "README.pdf").write_bytes(b"%PDF-1.4 stand-in\n")
    return fs2k


def zip_tree(src_root: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src_root.rglob("*")):
            zf.write(p, p.relative_to(src_root).as_posix())
    return archive


@pytest.fixture
def tiny_fs2k(tmp_path) -> Path:
    """A small FS2K.zip in the official layout (not the real data)."""
    make_fs2k_tree(tmp_path / "src")
    return zip_tree(tmp_path / "src", tmp_path / "FS2K.zip")


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> Path:
    """The tiny archive extracted and aligned: folder with manifest.parquet and aligned/."""
    from facesketch.data.fs2k import prepare

    root = tmp_path_factory.mktemp("tiny_prepared")
    tree = make_fs2k_tree(root / "raw")
    prepare(tree.parent, root / "data", {"align": {"size": 64, "portrait_top": 0.12}}, check_counts=False)
    return root / "data"


def real_archive() -> Path | None:
    path = os.environ.get("FS2K_ARCHIVE")
    return Path(path) if path and Path(path).is_file() else None


@pytest.fixture(scope="session")
def fs2k_archive() -> Path:
    path = real_archive()
    if path is None:
        pytest.skip("needs the real FS2K archive: set FS2K_ARCHIVE=/path/to/FS2K.zip")
    return path


@pytest.fixture(scope="session")
def real_raw(fs2k_archive, tmp_path_factory) -> Path:
    """The real archive extracted once per test session."""
    from facesketch.data.archive import extract

    root = tmp_path_factory.mktemp("real_raw")
    return extract(fs2k_archive, root / "raw")


@pytest.fixture(scope="session")
def real_subset(real_raw, tmp_path_factory) -> Path:
    """A stratified subset of the real FS2K (2 pairs per group), aligned: its data folder."""
    from facesketch.data.fs2k import prepare

    out = tmp_path_factory.mktemp("real_subset")
    prepare(real_raw, out, {"subset": {"per_group": 2, "seed": 0}, "align": {"size": 250, "portrait_top": 0.12}})
    return out


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    """A copy of the repository's tracked files (for workflow runs that write results)."""
    import subprocess

    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    dst = tmp_path / "repo"
    for f in files:
        src = REPO / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    return dst


def write_depth_blobs(prepared: Path, folder: str, centre: tuple[int, int], shift: tuple[int, int],
                      spread: float) -> Path:
    """Smooth depth blobs (what the depth predictors store) for every pair of a prepared tiny data
    set, under ``prepared/folder``; pair i's blob is centred at centre + (i % shift) so each differs."""
    import pandas as pd

    from facesketch.maps import encoding

    manifest = pd.read_parquet(prepared / "manifest.parquet")
    root = prepared / folder
    yy, xx = np.mgrid[0:64, 0:64]
    for i, r in enumerate(manifest.itertuples()):
        cx, cy = centre[0] + i % shift[0], centre[1] + i % shift[1]
        d = np.clip(1 - ((xx - cx) ** 2 + (yy - cy) ** 2) / spread, 0, 1)
        encoding.save_map(root, "depth", r.split, r.id, encoding.encode_depth(d))
    return root



# The two longest tests first, one on each worker of `-n 2 --dist worksteal`: otherwise the DVC demo
# (about 8 minutes) may start last and run alone while the other worker idles.
LONGEST_FIRST = ("tests/test_workflow.py::test_demo_end_to_end_with_dvc",
                 "tests/test_cluster_profiles.py::test_slurm_profile_runs_demo_jobs_through_the_plugin")


def pytest_collection_modifyitems(config, items):
    first = {nodeid: i for i, nodeid in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: first.get(item.nodeid, len(first)))


class StandInInception(torch.nn.Module):
    """A fast stand-in for FID's Inception (its weights cannot be downloaded here): a fixed random
    projection of the pooled image to 64 features (not 2048: the matrix square roots of the bootstrap
    stay fast on two cores), returned as pytorch-fid's network returns them ([(N, 64, 1, 1)])."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.nn.Parameter(torch.randn(3 * 16 * 16, 64, generator=g) / 16, requires_grad=False)

    def forward(self, x):
        y = torch.tanh(torch.nn.functional.adaptive_avg_pool2d(x, 16).flatten(1) @ self.w)
        return [y[:, :, None, None]]
