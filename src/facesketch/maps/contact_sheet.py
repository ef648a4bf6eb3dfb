"""A contact sheet per map kind: a few photos of each style beside their maps, to check at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facesketch import STYLES
from facesketch.data.fs2k import load_manifest
from facesketch.fileio import atomic_path, read_image
from facesketch.maps import encoding


def _display(kind: str, path: Path) -> np.ndarray:
    image = read_image(path)
    if kind == "depth":
        return encoding.decode_depth(image)
    return np.asarray(image.convert("RGB" if kind == "normal" else "L"))


def pick_rows(manifest, failed, per_style: int, seed: int) -> list:
    """(style, rows) per style: a seeded sample that, when the style has faces the depth predictor
    could not fit, shows one of them, so the sheet shows what the fallback draws."""
    import pandas as pd

    rows = []
    for style in range(3):
        pool = manifest[manifest["style"] == style]
        if len(pool):
            picks = pool.sample(min(per_style, len(pool)), random_state=seed)
            fallback = pool[pool.id.isin(list(failed)) & ~pool.id.isin(picks.id)]
            if len(fallback) and not picks.id.isin(list(failed)).any():
                picks = pd.concat([picks.iloc[:-1], fallback.iloc[:1]])
            rows.append((style, picks))
    return rows


def contact_sheet(manifest_path: Path, maps_root: Path, kind: str, out: Path, per_style: int = 3,
                  seed: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    manifest = load_manifest(manifest_path)
    root = Path(manifest.attrs["root"])
    failures_path = Path(maps_root) / kind / "failures.csv"
    failed: dict[str, str] = {}  # id -> what the face got instead (mediapipe: the hole-filled mesh)
    if failures_path.is_file() and failures_path.stat().st_size > 0:
        import pandas as pd

        listed = pd.read_csv(failures_path)
        failed = dict(zip(listed.get("id", []), listed.get("fallback", [""] * len(listed))))
    rows = pick_rows(manifest, failed, per_style, seed)
    cols = 2 * per_style
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.9 * cols, 2.1 * len(rows)), squeeze=False)
    for r, (style, picks) in enumerate(rows):
        for c in range(per_style):
            ax_p, ax_m = axes[r][2 * c], axes[r][2 * c + 1]
            for ax in (ax_p, ax_m):
                ax.set_xticks([])
                ax.set_yticks([])
            if c >= len(picks):
                ax_p.axis("off")
                ax_m.axis("off")
                continue
            row = picks.iloc[c]
            ax_p.imshow(np.asarray(read_image(root / row.photo, "RGB")))
            ax_p.set_title(row.id, fontsize=6)
            m = _display(kind, encoding.map_path(maps_root, kind, row.split, row.id))
            ax_m.imshow(m, cmap="gray" if m.ndim == 2 else None, vmin=0, vmax=1 if kind == "depth" else 255)
            why = failed.get(row.id)
            ax_m.set_title(kind + (f" ({why} fallback)" if isinstance(why, str) and why else
                                   " (fallback)" if row.id in failed else ""), fontsize=7)
        axes[r][0].set_ylabel(STYLES[style], fontsize=10)
    fig.suptitle(f"{kind} maps: photo | map, {per_style} per style", fontsize=11)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return out
