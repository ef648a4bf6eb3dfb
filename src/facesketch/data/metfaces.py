"""MetFaces (Karras et al. 2020, the NVlabs release) for HIDA Table 4's exemplar-based translation.

The official release (https://github.com/NVlabs/metfaces-dataset, hosted on Google Drive) is a
folder ``metfaces-dataset/`` holding ``metfaces.json`` and ``images/*.png`` (1336 aligned faces,
1024x1024; ``unprocessed/`` is not needed). The user gives that folder, or a zip of it rooted at
``metfaces-dataset/``. Every image named by ``metfaces.json`` must be there (and match its
``image_md5`` when ``check_md5``).

The task, as CoCosNet's follow-ups run it on MetFaces. None of CoCosNet, CoCosNet v2 or DynaST
publishes a MetFaces loader; MATEBIT (AiArt-Gao/MATEBIT, CVPR 2023, the HIDA authors' group, whose
MetFaces comparison lists the same five methods as HIDA's Table 4) does, in data/metfaces_dataset.py:
- input domain: an edge map of the painting, read from a folder of pre-computed edge images (how they
  were made is not published), and an exemplar painting whose style is carried over; the painting is
  the ground truth. Here the edges are CoCosNet's own edge-to-face edges (celebahqedge_dataset.py):
  ``skimage.feature.canny`` on the grey image at the loading size (``edges.sigma``, skimage's defaults).
- exemplars: retrieval lists (``metfaces_ref.txt``: an image, then its ranked exemplars; MATEBIT's
  ref.txt shows a few lines); training uses the first two (CoCosNet: the first and the last), testing
  the first. The full lists are not published; here each image's exemplars are the training images
  whose grey thumbnails correlate best with its own (``exemplars.k``, 2: MATEBIT's pair; never itself).
- split: MATEBIT's train.txt/test.txt are not published; here a seeded random ``split.test`` fraction,
  or the user's own list of test ids (``split.test_list``).
- resolution: MATEBIT loads 1024 and crops 512 (and evaluates at 256); CoCosNet's faces load 286 and
  crop 256. Images are stored at ``size`` (256 by default); the training crop is the variant's
  (``load``, then a random ``size`` crop).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from facesketch import STYLES
from facesketch.data import archive as archive_mod
from facesketch.errors import ConfigError, DataError
from facesketch.fileio import read_image, save_pil, write_parquet
from facesketch.progress import progress

log = logging.getLogger(__name__)

ROOT = "metfaces-dataset"
URL = "https://github.com/NVlabs/metfaces-dataset"
HINT = (f"Download the metfaces-dataset folder (metfaces.json and images/) linked from {URL} and give its "
        "path, or a zip of it, in config (metfaces.archive) or in the environment variable METFACES_ARCHIVE.")


def archive_path(cfg: dict) -> str | None:
    """The user's MetFaces release (folder or zip): config first, then $METFACES_ARCHIVE."""
    path = (cfg.get("metfaces") or {}).get("archive") or os.environ.get("METFACES_ARCHIVE") or None
    return str(Path(path).expanduser()) if path else None


def extract(archive: Path, dest: Path) -> Path:
    """Safe, all-or-nothing extraction of a zip rooted at metfaces-dataset/ (facesketch.data.archive)."""
    archive = Path(archive)
    if not archive.is_file():
        raise DataError(f"MetFaces archive not found: {archive}. {HINT}")
    return archive_mod.extract(archive, Path(dest), root=ROOT)


def release_root(raw: Path) -> Path:
    """The folder holding metfaces.json: ``raw`` itself or ``raw/metfaces-dataset``."""
    raw = Path(raw)
    for cand in (raw, raw / ROOT):
        if (cand / "metfaces.json").is_file():
            return cand
    raise DataError(f"{raw}: no metfaces.json (nor {ROOT}/metfaces.json): not the official MetFaces release. {HINT}")


def read_index(root: Path, check_md5: bool) -> list[dict]:
    """The records of metfaces.json whose image_path lies in images/, each checked to exist."""
    path = root / "metfaces.json"
    try:
        records = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and "image_path" in r for r in records):
        raise DataError(f"{path}: expected a list of records with image_path (the official metfaces.json)")
    out = []
    for r in records:
        rel = Path(r["image_path"])
        if rel.is_absolute() or ".." in rel.parts or rel.parts[:1] != ("images",):
            raise DataError(f"{path}: image_path {r['image_path']!r} does not lie in images/")
        image = root / rel
        if not image.is_file():
            raise DataError(f"{image} is missing (listed in {path}); the download is incomplete. {HINT}")
        if check_md5 and r.get("image_md5"):
            digest = hashlib.md5(image.read_bytes()).hexdigest()
            if digest != r["image_md5"]:
                raise DataError(f"{image}: MD5 {digest} does not match metfaces.json's {r['image_md5']} "
                                "(a damaged or different file; set metfaces.check_md5: false to accept it)")
        out.append({"id": rel.stem, "path": image, "record": r})
    return out


def canny_edges(painting: Image.Image, sigma: float) -> np.ndarray:
    """CoCosNet's edge input: skimage's Canny on the grey image (0/255 uint8)."""
    from skimage import feature

    return feature.canny(np.asarray(painting.convert("L")), sigma=sigma).astype(np.uint8) * 255


def split_ids(ids: list[str], spec: dict) -> dict[str, str]:
    """id -> train|test: the user's test list, else a seeded random fraction (at least one of each)."""
    test_list = spec.get("test_list")
    if test_list:
        path = Path(test_list)
        if not path.is_file():
            raise DataError(f"metfaces.split.test_list: {path} not found")
        wanted = {line.strip().rsplit(".", 1)[0] for line in path.read_text().splitlines() if line.strip()}
        unknown = wanted - set(ids)
        if unknown:
            raise DataError(f"{path}: {len(unknown)} ids are not MetFaces images, e.g. {sorted(unknown)[0]!r}")
        test = wanted
    else:
        rng = np.random.default_rng(int(spec.get("seed", 0)))
        order = sorted(ids)
        n_test = min(max(1, round(len(order) * float(spec.get("test", 0.1)))), len(order) - 1)
        test = set(np.asarray(order)[rng.permutation(len(order))[:n_test]])
    return {i: ("test" if i in test else "train") for i in ids}


def retrieve_exemplars(thumbs: dict[str, np.ndarray], split: dict[str, str], k: int) -> dict[str, list[str]]:
    """For every image, the k training images whose mean-centred grey thumbnails have the highest
    cosine similarity to its own, best first, never the image itself."""
    train = sorted(i for i, s in split.items() if s == "train")
    if len(train) < 2:
        raise DataError("MetFaces needs at least two training images for exemplar retrieval")
    def unit(ids):
        m = np.stack([thumbs[i].ravel() for i in ids]).astype(np.float64)
        m -= m.mean(axis=1, keepdims=True)
        return m / (np.linalg.norm(m, axis=1, keepdims=True) + 1e-12)
    bank = unit(train)
    out = {}
    for i in sorted(thumbs):
        sim = bank @ unit([i])[0]
        order = [train[j] for j in np.argsort(-sim, kind="stable") if train[j] != i]
        out[i] = order[:k]
    return out


def prepare(raw_root: Path, out_dir: Path, spec: dict) -> pd.DataFrame:
    """Resize every painting to ``size``, take its edge map, split, retrieve exemplars, write the manifest.

    ``spec`` is the config's ``metfaces`` block. Outputs ``out_dir/aligned/<split>/{photo,edge}/<id>.png``
    and ``out_dir/manifest.parquet`` (the FS2K manifest's columns where they apply; ``photo`` is the
    painting, the ground truth; ``exemplars`` the retrieved training ids, comma-separated)."""
    out_dir = Path(out_dir)
    root = release_root(Path(raw_root))
    size = int(spec.get("size", 256))
    items = read_index(root, bool(spec.get("check_md5", True)))
    expected = spec.get("expected")
    if expected is not None and len(items) != int(expected):
        raise DataError(f"{root / 'metfaces.json'} lists {len(items)} images, expected {expected} (the official "
                        "release); the download is incomplete or not MetFaces (metfaces.expected: null accepts it)")
    ids = [it["id"] for it in items]
    if len(set(ids)) != len(ids):
        raise DataError(f"{root / 'metfaces.json'}: two records name the same image")
    split = split_ids(ids, spec.get("split") or {})
    sigma = float((spec.get("edges") or {}).get("sigma", 1.0))
    rows, thumbs = [], {}
    for it in progress(items, desc="MetFaces", unit="image"):
        im = read_image(it["path"], "RGB")
        w, h = im.size
        if w != h:
            raise DataError(f"{it['path']}: {w}x{h} is not square (the release's images are aligned 1024x1024)")
        painting = im if w == size else im.resize((size, size), Image.Resampling.BICUBIC)
        s = split[it["id"]]
        rel_photo = Path("aligned") / s / "photo" / f"{it['id']}.png"
        rel_edge = Path("aligned") / s / "edge" / f"{it['id']}.png"
        save_pil(out_dir / rel_photo, painting)
        save_pil(out_dir / rel_edge, Image.fromarray(canny_edges(painting, sigma)))
        thumbs[it["id"]] = np.asarray(painting.convert("L").resize((16, 16), Image.Resampling.BOX), np.float64)
        rows.append({"id": it["id"], "split": s, "style": 0, "style_name": STYLES[0], "image_name": it["path"].name,
                     "photo": rel_photo.as_posix(), "edge": rel_edge.as_posix(), "photo_source": str(it["path"]),
                     "title": str(it["record"].get("title", "")),
                     "artist": str(it["record"].get("artist_display_name", "")),
                     "orig_width": w, "orig_height": h, "crop_x": 0, "crop_y": 0, "crop_size": w})
    refs = retrieve_exemplars(thumbs, split, int((spec.get("exemplars") or {}).get("k", 5)))
    for r in rows:
        r["exemplars"] = ",".join(refs[r["id"]])
    manifest = pd.DataFrame(rows).sort_values(["split", "id"]).reset_index(drop=True)
    write_parquet(out_dir / "manifest.parquet", manifest)
    counts = manifest.split.value_counts()
    log.info("MetFaces manifest: train %d, test %d", counts.get("train", 0), counts.get("test", 0))
    return manifest


# --- the workflow's view ------------------------------------------------------------------------

def check_config(cfg: dict) -> None:
    """MetFaces variants have names of their own (table rows name them like any variant)."""
    names = set(cfg.get("metfaces", {}).get("variants", {}))
    clash = names & set(cfg.get("variants", {}))
    if clash:
        raise ConfigError(f"metfaces.variants: {sorted(clash)[0]!r} is also under variants; use another name")


def variant_names(cfg: dict) -> list[str]:
    return list(cfg.get("metfaces", {}).get("variants", {}))


def variant_spec(cfg: dict, name: str) -> dict:
    """A MetFaces variant's settings with the block's data settings it trains on (size)."""
    spec = dict(cfg["metfaces"]["variants"][name])
    spec["name"] = name
    if spec.get("size") is None:
        spec["size"] = cfg["metfaces"]["size"]
    return spec


def missing_reason(cfg: dict) -> str:
    """Why MetFaces rows have no results, or '' when the release is configured and present."""
    path = archive_path(cfg)
    if not path:
        return (f"MetFaces is not configured: download the metfaces-dataset folder (metfaces.json, images/) from "
                f"{URL} and set metfaces.archive (or METFACES_ARCHIVE) to it or to a zip of it")
    if not Path(path).expanduser().exists():
        return (f"MetFaces not found at {path} (metfaces.archive or METFACES_ARCHIVE): put the metfaces-dataset "
                f"folder (metfaces.json, images/) from {URL}, or a zip of it, there")
    return ""


def table_spec(spec: dict, cfg: dict) -> dict:
    """facesketch.report.tables' spec with MetFaces' variants in the run, or saying which file is missing."""
    spec = dict(spec)
    why = missing_reason(cfg)
    names = variant_names(cfg)
    if why:
        spec["data_missing"] = {**spec.get("data_missing", {}), **{v: why for v in names}}
    spec["run_variants"] = list(spec.get("run_variants", [])) + names
    return spec


def model_inputs(spec: dict, data: str) -> dict[str, str]:
    """What a MetFaces variant's training and inference read: the manifest and the prepared paintings, and
    depth maps when it takes them; folders through their checksum lists (facesketch.checksums: new
    modification times rerun nothing)."""
    from facesketch.checksums import checksums_path

    inputs = {"manifest": f"{data}/manifest.parquet", "aligned": checksums_path(f"{data}/aligned")}
    if spec.get("depth_input"):
        inputs["depth"] = checksums_path(f"{data}/maps/depth")
    return inputs
