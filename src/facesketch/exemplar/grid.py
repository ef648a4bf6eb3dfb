"""HIDA's Figure 12 as a grid: per MetFaces test painting, its edge map, the exemplar, each method's
painting and the ground truth."""

from __future__ import annotations

from pathlib import Path

from facesketch.data.fs2k import load_manifest
from facesketch.fileio import read_array
from facesketch.report.grid import save_grid


def metfaces_grid(manifest_path: Path, samples: dict[str, str], out: Path, rows: int = 6) -> Path:
    """``samples``: column label -> folder of <test id>.png; a missing file leaves its cell empty."""
    manifest = load_manifest(manifest_path)
    root = Path(manifest.attrs["root"])
    by_id = {r.id: r for r in manifest.itertuples()}
    test = sorted(manifest[manifest.split == "test"].id)[:rows]
    table = []
    for i in test:
        r = by_id[i]
        ref = by_id[str(r.exemplars).split(",")[0]]
        row = [read_array(root / r.edge, "L"), read_array(root / ref.photo, "RGB")]
        for folder in samples.values():
            path = Path(folder) / f"{i}.png"
            row.append(read_array(path, "RGB") if path.is_file() else None)
        row.append(read_array(root / r.photo, "RGB"))
        table.append(row)
    return save_grid(out, table, col_titles=["edges", "exemplar", *samples, "ground truth"], row_titles=test,
                     title="MetFaces: exemplar-based translation (HIDA Figure 12)")
