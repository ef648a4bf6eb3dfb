"""APDrawing (Yi et al., CVPR 2019): the user's APDrawingDB.zip into a manifest the engine reads.

The official archive (https://cg.cs.tsinghua.edu.cn/people/~Yongjin/APDrawingDB.zip) unpacks to
``APDrawingDB/data/{train,test}/*.png`` (plus ``landmark/`` and ``mask/``, unused here). Each PNG
holds one pair side by side, as APDrawingGAN's ``data/aligned_dataset.py`` reads it: the photo in
the left half, the artist's drawing in the right half, each 512x512 and already aligned. The
official README: 140 pairs, 70 for training (stored augmented in ``train/``) and 70 for testing.

The manifest has the FS2K manifest's columns (id, split, style, photo, sketch, ...), so training,
depth maps, inference and scoring read it unchanged. APDrawing has one drawing style: every row
is style 0, and the variants trained on it take no style input.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd
from PIL import Image

from facesketch import STYLES
from facesketch.data import archive as archive_mod
from facesketch.errors import DataError
from facesketch.fileio import read_image, save_pil, write_parquet
from facesketch.progress import progress

log = logging.getLogger(__name__)

ROOT = "APDrawingDB"
SPLITS = ("train", "test")
URL = "https://cg.cs.tsinghua.edu.cn/people/~Yongjin/APDrawingDB.zip"
HINT = (f"Download APDrawingDB.zip from {URL} (linked from the yiranran/APDrawingGAN README) and give its "
        "path in config (apdrawing.archive) or in the environment variable APDRAWING_ARCHIVE.")


def archive_path(cfg: dict) -> str | None:
    """The user's APDrawingDB.zip: config first, then $APDRAWING_ARCHIVE; None when neither is set."""
    return (cfg.get("apdrawing") or {}).get("archive") or os.environ.get("APDRAWING_ARCHIVE") or None


def extract(archive: Path, dest: Path) -> Path:
    """Safe, all-or-nothing extraction (facesketch.data.archive) of an archive rooted at APDrawingDB/."""
    archive = Path(archive)
    if not archive.is_file():
        raise DataError(f"APDrawing archive not found: {archive}. {HINT}")
    return archive_mod.extract(archive, Path(dest), root=ROOT)


def pair_files(raw: Path, split: str) -> list[Path]:
    folder = raw / "data" / split
    if not folder.is_dir():
        raise DataError(f"{folder} is missing: not the official APDrawingDB layout (data/train, data/test). {HINT}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg") and p.is_file())
    if not files:
        raise DataError(f"{folder} holds no images")
    return files


def split_pair(path: Path, size: int) -> tuple[Image.Image, Image.Image, int]:
    """The photo (left half, RGB) and drawing (right half, grey) of one side-by-side pair, at ``size``,
    and the side of each half in the archive."""
    ab = read_image(path, "RGB")
    w, h = ab.size
    if w != 2 * h:
        raise DataError(f"{path}: {w}x{h} is not a photo|drawing pair side by side (width must be twice the height)")
    photo, drawing = ab.crop((0, 0, h, h)), ab.crop((h, 0, w, h)).convert("L")
    if h != size:  # the reference loader resizes each half to loadSize with bicubic filtering
        photo = photo.resize((size, size), Image.Resampling.BICUBIC)
        drawing = drawing.resize((size, size), Image.Resampling.BICUBIC)
    return photo, drawing, h


def check_counts(counts: dict[str, int], expected: dict | None) -> None:
    if not expected:
        return
    wrong = {s: (counts.get(s, 0), n) for s, n in expected.items() if n is not None and counts.get(s, 0) != n}
    if wrong:
        got = ", ".join(f"{s}: {g} pairs, expected {n}" for s, (g, n) in wrong.items())
        raise DataError(f"APDrawing split sizes differ from the official release ({got}); the archive is "
                        "incomplete or not APDrawingDB.zip (set apdrawing.expected to null to accept it)")


def prepare(raw_root: Path, out_dir: Path, spec: dict) -> pd.DataFrame:
    """Split every pair into ``out_dir/aligned/<split>/{photo,sketch}/<id>.png`` and write the manifest.

    ``spec`` is the config's ``apdrawing`` block (``size``, ``expected``).
    """
    raw_root, out_dir = Path(raw_root), Path(out_dir)
    raw = raw_root / ROOT if (raw_root / ROOT).is_dir() else raw_root
    size = int(spec.get("size", 512))
    files = {split: pair_files(raw, split) for split in SPLITS}
    check_counts({s: len(f) for s, f in files.items()}, spec.get("expected"))
    rows = []
    for split in SPLITS:
        for path in progress(files[split], desc=f"APDrawing {split}", unit="pair"):
            photo, drawing, side = split_pair(path, size)
            rel_photo = Path("aligned") / split / "photo" / f"{path.stem}.png"
            rel_sketch = Path("aligned") / split / "sketch" / f"{path.stem}.png"
            save_pil(out_dir / rel_photo, photo)
            save_pil(out_dir / rel_sketch, drawing)
            rows.append({"id": path.stem, "split": split, "style": 0, "style_name": STYLES[0],
                         "image_name": path.name, "photo": rel_photo.as_posix(), "sketch": rel_sketch.as_posix(),
                         "photo_source": str(path), "sketch_source": str(path),
                         # each half is the whole, already aligned picture: the "crop" is all of it
                         "orig_width": side, "orig_height": side, "crop_x": 0, "crop_y": 0, "crop_size": side})
    manifest = pd.DataFrame(rows).sort_values(["split", "id"]).reset_index(drop=True)
    dup = manifest[manifest.duplicated(["split", "id"])]
    if not dup.empty:
        raise DataError(f"{raw}: two pairs share the name {dup.id.iloc[0]!r} in {dup.split.iloc[0]}/")
    write_parquet(out_dir / "manifest.parquet", manifest)
    log.info("APDrawing manifest: %s", ", ".join(f"{s} {int((manifest.split == s).sum())}" for s in SPLITS))
    return manifest


# --- the workflow's view: which APDrawing jobs run, and why a Table 4 row has no results -----------

def check_config(cfg: dict) -> None:
    """apdrawing.variants and apdrawing.released name things that exist (a ConfigError naming the key)."""
    from facesketch.errors import ConfigError

    for name in cfg["apdrawing"]["variants"]:
        if name not in cfg["variants"]:
            raise ConfigError(f"apdrawing.variants: {name!r} is not a variant (variants.{name})")


def run_variants(cfg: dict) -> list[str]:
    """The APDrawing variants of this run (apdrawing.variants within run.variants)."""
    from facesketch.config import run_variants as chosen

    wanted = set(chosen(cfg))
    return [v for v in cfg["apdrawing"]["variants"] if v in wanted]


def missing_reason(cfg: dict) -> str:
    """Why APDrawing rows have no results, or '' when the archive is configured and present."""
    path = archive_path(cfg)
    if not path:
        return (f"APDrawingDB.zip is not configured: download it from {cfg['apdrawing']['url']} and set "
                "apdrawing.archive (or APDRAWING_ARCHIVE) to its path")
    if not Path(path).expanduser().is_file():
        return (f"APDrawingDB.zip not found at {path} (apdrawing.archive or APDRAWING_ARCHIVE): download it "
                f"from {cfg['apdrawing']['url']} and put it there")
    return ""


def released_available(cfg: dict) -> dict[str, bool]:
    return {name: Path(r["path"]).is_dir() for name, r in cfg["apdrawing"]["released"].items()}


def table_spec(spec: dict, cfg: dict) -> dict:
    """facesketch.report.tables' spec with APDrawing's rows: variants and released results that
    cannot run say which file is missing and where it goes."""
    spec = dict(spec)
    why = missing_reason(cfg)
    missing = dict(spec.get("data_missing", {}))
    for v in cfg["apdrawing"]["variants"]:
        if why:
            missing[v] = why
    spec["data_missing"] = missing
    released = dict(spec.get("released", {}))
    for name, r in cfg["apdrawing"]["released"].items():
        released[f"apdrawing_{name}"] = {"path": r["path"] if not why else f"{r['path']} ({why})",
                                         "available": bool(not why and Path(r["path"]).is_dir())}
    spec["released"] = released
    return spec


RESULT_SUFFIXES = ("_fake_B", "_fake", "_output", "_out")  # what pix2pix-style test scripts append to the id


def index_by_stem(folder: Path) -> dict[str, Path]:
    """A released-results folder by APDrawing test id: the file stem, less a test script's suffix."""
    from facesketch.metrics.evaluate import _image_files

    found: dict[str, Path] = {}
    for path in _image_files(folder):
        stem = path.stem
        for suffix in RESULT_SUFFIXES:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        found.setdefault(stem, path)
    return found


def model_inputs(spec: dict, data: str) -> dict[str, str]:
    """What an APDrawing variant's training and inference read: the manifest (and the aligned pairs
    beside it), and depth maps where the variant uses them (as FS2K's rules/common.smk model_inputs).
    Folders through their checksum lists (facesketch.checksums: new modification times rerun nothing)."""
    from facesketch.checksums import checksums_path
    from facesketch.models.registry import needs_depth

    inputs = {"manifest": f"{data}/manifest.parquet", "aligned": checksums_path(f"{data}/aligned")}
    if needs_depth(spec):
        inputs["depth"] = checksums_path(f"{data}/maps/depth")
    return inputs
