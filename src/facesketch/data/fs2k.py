"""FS2K ingestion: annotations, stratified subsets, pixel-aligned crops and the manifest.

Alignment (``fs2k.align.method: box``), one transform per pair, applied to photo and sketch
alike so they stay pixel-aligned:

* photo1 (250x250 CASIA-WebFace crops): kept as they are.
* photo3 (475x340, landscape): the centred 340x340 square; faces are centred in these photos.
* photo2 (223x318, portrait): the 223x223 square whose top sits ``portrait_top`` (0.12) of the
  way down the free height; the faces sit above the middle, shoulders below.

then resized to ``size`` (250) with Pillow's antialiased bicubic. Sketches become one grey
channel; transparent pixels of the RGBA sketch2 files are paper (white). The models see
250x250 padded to 256x256, as the papers do (see facesketch.data.datasets).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from facesketch import STYLES
from facesketch.errors import DataError
from facesketch.fileio import read_image, save_pil, write_parquet, write_text
from facesketch.progress import progress

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
OFFICIAL_COUNTS = {"train": {0: 357, 1: 350, 2: 351}, "test": {0: 619, 1: 381, 2: 46}}
ATTRIBUTES = ("skin_color", "lip_color", "eye_color", "hair", "hair_color", "gender",
              "earring", "smile", "frontal_face")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Item:
    split: str
    image_name: str  # "photo1/image0110", as in the JSON
    style: int
    attributes: dict

    @property
    def subset(self) -> str:
        return self.image_name.split("/")[0]

    @property
    def number(self) -> str:
        return self.image_name.split("/")[1].removeprefix("image")

    @property
    def id(self) -> str:
        return self.image_name.replace("/", "_")


def fs2k_id(image_name: str) -> str:
    return image_name.replace("/", "_")


def read_annotations(root: Path) -> list[Item]:
    """Both JSON files, one Item per entry; a malformed entry raises DataError naming it."""
    items = []
    for split in SPLITS:
        path = root / f"anno_{split}.json"
        if not path.is_file():
            raise DataError(f"annotation file missing: {path}")
        try:
            entries = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON: {e}") from e
        for i, entry in enumerate(entries):
            try:
                name, style = entry["image_name"], int(entry["style"])
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"{path}: entry {i} lacks a usable image_name/style ({e})") from e
            if style not in (0, 1, 2) or name.count("/") != 1:
                raise DataError(f"{path}: entry {i} ({name!r}) has style {style} or a bad image_name")
            attributes = {k: entry.get(k) for k in ATTRIBUTES}
            items.append(Item(split, name, style, attributes))
    ids = Counter(item.id for item in items)
    dupes = [k for k, n in ids.items() if n > 1]
    if dupes:
        raise DataError(f"FS2K annotations list {len(dupes)} images twice, e.g. {dupes[:3]}")
    return items


def style_counts(items: Iterable[Item]) -> dict[str, dict[int, int]]:
    counts = {split: {0: 0, 1: 0, 2: 0} for split in SPLITS}
    for item in items:
        counts[item.split][item.style] += 1
    return counts


def check_official_counts(items: list[Item]) -> None:
    counts = style_counts(items)
    for split in SPLITS:
        if counts[split] != OFFICIAL_COUNTS[split]:
            got = "/".join(str(counts[split][s]) for s in range(3))
            want = "/".join(str(OFFICIAL_COUNTS[split][s]) for s in range(3))
            raise DataError(
                f"anno_{split}.json lists {sum(counts[split].values())} entries by style {got}; the "
                f"official FS2K has {sum(OFFICIAL_COUNTS[split].values())} ({want}). Is this the "
                "official archive?"
            )


def select_subset(items: list[Item], per_group: int, seed: int) -> list[Item]:
    """``per_group`` items from every (split, style, photo subset) group, reproducibly."""
    rng = np.random.default_rng(seed)
    groups: dict[tuple, list[Item]] = {}
    for item in sorted(items, key=lambda it: it.id):
        groups.setdefault((item.split, item.style, item.subset), []).append(item)
    chosen = []
    for key in sorted(groups):
        members = groups[key]
        picks = rng.choice(len(members), size=min(per_group, len(members)), replace=False)
        chosen += [members[i] for i in sorted(picks)]
    return chosen


def locate(root: Path, kind: str, item: Item) -> Path:
    """photo/photoK/imageNNNN.<ext> or sketch/sketchK/sketchNNNN.<ext>, any extension case."""
    k = item.subset.removeprefix("photo")
    folder = root / kind / f"{kind}{k}"
    stem = ("image" if kind == "photo" else "sketch") + item.number
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / (stem + suffix), folder / (stem + suffix.upper())):
            if candidate.is_file():
                return candidate
    raise DataError(f"{kind} for {item.image_name} not found: {folder / stem}.(jpg|png)")


def crop_box(width: int, height: int, portrait_top: float) -> tuple[int, int, int]:
    """(x0, y0, side) of the square crop in the original image (see the module docstring)."""
    if width >= height:
        side = height
        return (width - side) // 2, 0, side
    side = width
    return 0, int(round((height - side) * portrait_top)), side


def align_pair(photo: Image.Image, sketch: Image.Image, size: int, portrait_top: float):
    """Crop both images with the same square box and resize to size x size."""
    if photo.size != sketch.size:
        raise DataError(f"photo {photo.size} and sketch {sketch.size} differ in size")
    x0, y0, side = crop_box(*photo.size, portrait_top)
    box = (x0, y0, x0 + side, y0 + side)
    out = []
    for im in (photo, sketch):
        im = im.crop(box)
        if side != size:
            im = im.resize((size, size), Image.Resampling.BICUBIC)
        out.append(im)
    return out[0], out[1], (x0, y0, side)


def _process(item: Item, raw: Path, out_dir: Path, size: int, portrait_top: float) -> dict:
    photo_src = locate(raw, "photo", item)
    sketch_src = locate(raw, "sketch", item)
    photo = read_image(photo_src, "RGB")
    sketch = read_image(sketch_src, "L")
    width, height = photo.size
    try:
        photo_a, sketch_a, (x0, y0, side) = align_pair(photo, sketch, size, portrait_top)
    except DataError as e:
        raise DataError(f"{item.image_name}: {e} ({photo_src}, {sketch_src})") from e
    rel_photo = Path("aligned") / item.split / "photo" / f"{item.id}.png"
    rel_sketch = Path("aligned") / item.split / "sketch" / f"{item.id}.png"
    save_pil(out_dir / rel_photo, photo_a)
    save_pil(out_dir / rel_sketch, sketch_a)
    row = {
        "id": item.id, "split": item.split, "style": item.style, "style_name": STYLES[item.style],
        "subset": item.subset, "image_name": item.image_name,
        "orig_width": width, "orig_height": height, "crop_x": x0, "crop_y": y0, "crop_size": side,
        "photo": rel_photo.as_posix(), "sketch": rel_sketch.as_posix(),
        "photo_source": str(photo_src), "sketch_source": str(sketch_src),
    }
    for key, value in item.attributes.items():
        row[key] = value if not isinstance(value, list) else [float(v) for v in value]
    return row


def prepare(raw_root: Path, out_dir: Path, spec: dict, check_counts: bool = True,
            workers: int | None = None) -> pd.DataFrame:
    """Align every (selected) pair into ``out_dir/aligned`` and write ``out_dir/manifest.parquet``.

    ``spec`` is the config's ``fs2k`` block. With ``skip_bad`` a missing or unreadable image is
    listed in ``out_dir/skipped.csv`` and the log instead of stopping the run.
    """
    raw = Path(raw_root) / "FS2K" if (Path(raw_root) / "FS2K").is_dir() else Path(raw_root)
    items = read_annotations(raw)
    if check_counts:
        check_official_counts(items)
    subset = spec.get("subset")
    if subset:
        items = select_subset(items, subset["per_group"], subset.get("seed", 0))
    align = spec.get("align", {})
    size, portrait_top = align.get("size", 250), align.get("portrait_top", 0.12)
    rows, skipped = [], []
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(_process, it, raw, out_dir, size, portrait_top): it for it in items}
        for future in progress(futures, desc="align FS2K", unit="pair"):
            item = futures[future]
            try:
                rows.append(future.result())
            except DataError as e:
                if not spec.get("skip_bad", False):
                    raise
                log.warning("skipping %s: %s", item.image_name, e)
                skipped.append({"id": item.id, "split": item.split, "reason": str(e)})
    manifest = pd.DataFrame(rows).sort_values(["split", "id"]).reset_index(drop=True)
    _check_manifest(manifest, items, skipped)
    write_text(out_dir / "skipped.csv", pd.DataFrame(skipped, columns=["id", "split", "reason"]).to_csv(index=False))
    write_parquet(out_dir / "manifest.parquet", manifest)
    log.info("manifest: %d pairs (%s), %d skipped", len(manifest),
             ", ".join(f"{s} {int((manifest.split == s).sum())}" for s in SPLITS), len(skipped))
    return manifest


def _check_manifest(manifest: pd.DataFrame, items: list[Item], skipped: list[dict]) -> None:
    """The manifest holds exactly the selected entries minus the listed skips, per split and style."""
    expected = style_counts(items)
    for row in skipped:
        style = next(it.style for it in items if it.id == row["id"])
        expected[row["split"]][style] -= 1
    got = {split: {s: 0 for s in range(3)} for split in SPLITS}
    for (split, style), n in manifest.groupby(["split", "style"]).size().items():
        got[split][int(style)] = int(n)
    if got != expected:
        raise DataError(f"manifest counts {got} differ from the annotation files {expected}")


def load_manifest(path: Path, split: str | None = None) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path} (run the align step first)")
    df = pd.read_parquet(path)
    df.attrs["root"] = str(path.parent)
    if split is not None:
        df = df[df.split == split].reset_index(drop=True)
        df.attrs["root"] = str(path.parent)
    return df
