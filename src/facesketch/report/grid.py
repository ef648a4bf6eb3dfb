"""Labelled image grids (PIL): training samples and the report's comparison figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from facesketch.fileio import save_pil


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def to_pil(image) -> Image.Image:
    """uint8 HxW / HxWx3 arrays, [-1, 1] CHW tensors, or PIL images -> RGB PIL."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if hasattr(image, "detach"):
        a = image.detach().float().cpu().numpy()
        if a.ndim == 3:
            a = a.transpose(1, 2, 0)
        a = np.clip((a + 1) * 127.5, 0, 255).round().astype(np.uint8)
        image = a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a
    return Image.fromarray(np.asarray(image)).convert("RGB")


def grid(rows: list[list], col_titles: list[str] | None = None, row_titles: list[str] | None = None,
         cell: int = 160, title: str | None = None) -> Image.Image:
    """Rows of images (None = empty cell) with column titles on top and row titles on the left."""
    import textwrap

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    font = _font(max(11, cell // 12))
    left = cell // 2 if row_titles else 0
    width = left + n_cols * cell
    title_font = _font(max(12, cell // 10))
    line_h = max(12, cell // 10) + 4
    # wrap the title to the canvas (about 0.55 em per character)
    lines = textwrap.wrap(title, max(20, int(width / (0.55 * max(12, cell // 10))))) if title else []
    head = len(lines) * line_h + (4 if lines else 0)
    top = (cell // 6 if col_titles else 0) + head
    canvas = Image.new("RGB", (width, top + n_rows * cell), "white")
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((4, 2 + i * line_h), line, fill="black", font=title_font)
    if col_titles:
        y = head + 2
        for c, t in enumerate(col_titles):
            draw.text((left + c * cell + 4, y), str(t)[: max(4, cell // 7)], fill="black", font=font)
    for r, row in enumerate(rows):
        if row_titles:
            draw.text((3, top + r * cell + cell // 2 - 6), str(row_titles[r])[:10], fill="black", font=font)
        for c, im in enumerate(row):
            if im is None:
                continue
            tile = to_pil(im).resize((cell - 4, cell - 4), Image.Resampling.BICUBIC)
            canvas.paste(tile, (left + c * cell + 2, top + r * cell + 2))
    return canvas


def save_grid(path: Path, rows, **kwargs) -> Path:
    save_pil(path, grid(rows, **kwargs))
    return Path(path)
