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


def split_pair(path: Path, size: int) -> tuple[Image.Image, Image.Image]:
    """The photo (left half, RGB) and drawing (right half, grey) of one side-by-side pair, at ``size``."""
    ab = read_image(path, "RGB")
    w, h = ab.size
    if w != 2 * h:
        raise DataError(f"{path}: {w}x{h} is not a photo|drawing pair side by side (width must be twice the height)")
    photo, drawing = ab.crop((0, 0, h, h)), ab.crop((h, 0, w, h)).convert("L")
    if h != size:  # the reference loader resizes each half to loadSize with bicubic filtering
        photo = photo.resize((size, size), Image.Resampling.BICUBIC)
        drawing = drawing.resize((size, size), Image.Resampling.BICUBIC)
    return photo, drawing


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
            photo, drawing = split_pair(path, size)
            rel_photo = Path("aligned") / split / "photo" / f"{path.stem}.png"
            rel_sketch = Path("aligned") / split / "sketch" / f"{path.stem}.png"
            save_pil(out_dir / rel_photo, photo)
            save_pil(out_dir / rel_sketch, drawing)
            rows.append({"id": path.stem, "split": split, "style": 0, "style_name": STYLES[0],
                         "image_name": path.name, "photo": rel_photo.as_posix(), "sketch": rel_sketch.as_posix(),
                         "photo_source": str(path), "sketch_source": str(path)})
    manifest = pd.DataFrame(rows).sort_values(["split", "id"]).reset_index(drop=True)
    dup = manifest[manifest.duplicated(["split", "id"])]
    if not dup.empty:
        raise DataError(f"{raw}: two pairs share the name {dup.id.iloc[0]!r} in {dup.split.iloc[0]}/")
    write_parquet(out_dir / "manifest.parquet", manifest)
    log.info("APDrawing manifest: %s", ", ".join(f"{s} {int((manifest.split == s).sum())}" for s in SPLITS))
    return manifest
