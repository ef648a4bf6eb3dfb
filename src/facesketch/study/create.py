"""``facesketch study create``: sample test photos and the methods' results into a study folder.

Images are copied under random ids, so the page never reveals a method or a path; study.json
maps ids back for the summary.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

import numpy as np

from facesketch import STYLES
from facesketch.data.fs2k import load_manifest
from facesketch.errors import DataError
from facesketch.fileio import write_json
from facesketch.study.store import IMAGE_DIR, STUDY_FILE

log = logging.getLogger(__name__)


def method_folders(results: Path, methods: list[str], seed: int | None) -> dict[str, Path]:
    """{method: results/samples/<method>/<seed>} (the lowest seed when not given)."""
    out = {}
    for m in methods:
        base = Path(results) / "samples" / m
        seeds = sorted(int(p.name) for p in base.glob("*") if p.is_dir() and p.name.isdigit())
        if not seeds:
            raise DataError(f"{base}: no samples of method {m} (run the workflow first)")
        out[m] = base / str(seed if seed is not None else seeds[0])
    return out


def create(results: Path, manifest_path: Path, out: Path, methods: list[str], n_items: int, seed: int = 0,
           sample_seed: int | None = None, title: str = "Choose the best sketch") -> dict:
    out = Path(out)
    if (out / STUDY_FILE).exists():
        raise DataError(f"{out}: a study already exists here (answers would no longer match); choose a new folder")
    if len(methods) < 2 or len(set(methods)) != len(methods):
        raise DataError("study: give at least two different methods")
    manifest = load_manifest(manifest_path, "test")
    root = Path(manifest.attrs["root"])
    folders = method_folders(results, methods, sample_seed)

    def result(method: str, row) -> Path:
        return folders[method] / STYLES[int(row.style)] / f"{row.id}.png"

    complete = [r for r in manifest.itertuples() if all(result(m, r).is_file() for m in methods)]
    if not complete:
        raise DataError(f"study: no test photo has a result from every method in {results}/samples")
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(complete), size=min(n_items, len(complete)), replace=False).tolist())
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)

    def copy(src: Path) -> str:
        key = uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | int(rng.integers(0, 2**63))).hex
        shutil.copyfile(src, out / IMAGE_DIR / f"{key}.png")
        return key

    items = []
    for i, k in enumerate(picked):
        r = complete[k]
        items.append({"item": i, "image_id": r.id, "style": STYLES[int(r.style)],
                      "photo": copy(root / r.photo), "sketch": copy(root / r.sketch),
                      "results": {m: copy(result(m, r)) for m in methods}})
    study = {"title": title, "methods": methods, "seed": seed, "items": items,
             "sources": {m: str(p) for m, p in folders.items()}}
    write_json(out / STUDY_FILE, study)
    if len(complete) < n_items:
        log.warning("study: only %d test photos have results from every method (asked for %d)", len(complete),
                    n_items)
    log.info("study: %d items x %d methods -> %s", len(items), len(methods), out)
    return study
