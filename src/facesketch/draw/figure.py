"""The workflow's drawing of photos outside FS2K, and HIDA's Figures 10 and 11 from it.

Config ``draw`` (schemas/config.schema.yaml): a folder of faces in the wild and one of natural
images (or $FACESKETCH_WILD / $FACESKETCH_SCENES), and the variants that draw them. The figure
is one row per photo: the photo, each style-less method's sketch, then each style-aware method
in Style1, Style2 and Style3 (HIDA last, as in the paper). Scenes keep their aspect ratio.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw

from facesketch import STYLES
from facesketch.errors import DataError
from facesketch.fileio import save_pil
from facesketch.report.grid import _font

ENV = {"faces": "FACESKETCH_WILD", "scenes": "FACESKETCH_SCENES"}


def folder(cfg: dict, kind: str) -> str | None:
    """The configured folder of ``kind`` (faces|scenes), else its environment variable, else None."""
    path = cfg.get("draw", {}).get(kind) or os.environ.get(ENV[kind]) or None
    return str(Path(path).expanduser()) if path else None


def variants(cfg: dict, run: list[str]) -> list[str]:
    """The draw variants the run trains, style-aware ones (HIDA) last as in the paper's figure."""
    from facesketch.config import style_aware

    chosen = [v for v in cfg.get("draw", {}).get("variants", []) if v in run]
    return sorted(chosen, key=lambda v: style_aware(cfg["resolved"][v]))


def columns(methods: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """(title, folder of sketches) per column; a method with Style*/ folders gives three."""
    cols = []
    for label, d in methods:
        styled = [s for s in STYLES if (Path(d) / s).is_dir()]
        if styled:
            cols += [(f"{label} {s}", Path(d) / s) for s in styled]
        else:
            cols.append((label, Path(d) / "sketch"))
    return cols


def make_figure(methods: list[tuple[str, Path]], out: Path, rows: int, title: str, cell: int = 160) -> Path:
    if not methods:
        raise DataError("no drawings to put in the figure")
    photos = Path(methods[-1][1]) / "photo"
    cols = columns(methods)
    drawn = None
    for _, d in methods:  # photos every method drew
        table = Path(d) / "drawn.csv"
        if not table.is_file():
            raise DataError(f"{table} not found (run facesketch draw into {d})")
        names = set(pd.read_csv(table)["name"])
        drawn = names if drawn is None else drawn & names
    names = sorted(drawn)[:rows]
    if not names:
        raise DataError(f"no photo was drawn by all of {', '.join(m for m, _ in methods)}")
    font = _font(max(11, cell // 12))
    titles = ["photo"] + [t for t, _ in cols]
    grid = [[Image.open(photos / f"{n}.png").convert("RGB")] + [Image.open(d / f"{n}.png").convert("RGB")
                                                                 for _, d in cols] for n in names]
    widths = [max(round(cell * r[0].width / r[0].height), 1) for r in grid]
    col_w = max(widths) + 4
    head, top = 22, 40
    canvas = Image.new("RGB", (len(titles) * col_w, top + len(grid) * (cell + 4)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), title, fill="black", font=_font(max(12, cell // 10)))
    for c, t in enumerate(titles):
        draw.text((c * col_w + 4, head), t[: max(6, col_w // 7)], fill="black", font=font)
    for r, (row, w) in enumerate(zip(grid, widths)):
        for c, im in enumerate(row):
            tile = im.resize((w, cell), Image.Resampling.BICUBIC)
            canvas.paste(tile, (c * col_w + 2 + (col_w - 4 - w) // 2, top + r * (cell + 4) + 2))
    save_pil(out, canvas)
    return Path(out)

