"""``facesketch draw``: photos (files or folders) and a trained checkpoint in, sketches out.

Faces (default): the largest face MediaPipe finds is framed as FS2K's aligned photos are
(facesketch.draw.faces), depth comes from the configured predictor (3DDFA_V2, else the MediaPipe
face mesh) on that aligned photo exactly as the training maps were made, and the model draws it at
the aligned size (250x250), in each requested style (a model without style input draws once).
Scenes (``scene=True``): the whole image, resized without distortion (facesketch.draw.scene),
depth from MiDaS v2.1.

Photos are processed in batches with every model loaded once. A photo that cannot be drawn (not
an image, no face, ...) gets one line naming it and is listed in ``OUT/failures.csv``; the others
are still drawn. Layout of OUT::

    photo/<name>.png            what the model saw (the aligned face, or the resized scene)
    <Style>/<name>.png          one sketch per style (``sketch/<name>.png`` for style-less models)
    pasted/<Style>/<name>.png   with paste_back: the sketch put back into the whole photo
    sheet/<name>.png            the photo beside its sketches
    drawn.csv, failures.csv     what was drawn (face box, notes) and what was not
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from facesketch import STYLES
from facesketch.config import style_aware, style_index
from facesketch.device import pick
from facesketch.draw import faces, scene
from facesketch.draw.photos import Photo, list_photos, read_photo
from facesketch.errors import DataError, FacesketchError
from facesketch.fileio import save_pil, write_text
from facesketch.models import registry
from facesketch.progress import progress
from facesketch.train.infer import load_model, network_inputs, network_outputs, to_uint8

log = logging.getLogger(__name__)

TDDFA_FILES = ("3ddfa_mb1", "3ddfa_bfm", "3ddfa_param_stats", "3ddfa_tri")


@dataclass
class DrawOptions:
    styles: list[str] = field(default_factory=lambda: list(STYLES))
    scene: bool = False
    paste_back: bool = False
    depth: str = "auto"          # auto | 3ddfa_v2 | mediapipe (faces); scenes always use MiDaS
    framing: str = "photo1"      # which FS2K subset's face framing (facesketch.maps.run.CANONICAL_BOXES)
    weights_dir: Path = Path("weights")
    batch_size: int = 16
    scene_size: int | None = None  # longer side of a scene; None = 2 x the model's input.image
    max_side: int = 2048
    sheet: bool = True
    device: str = "auto"
    limit: int | None = None     # only the first N photos


@dataclass
class Prepared:
    photo: Photo
    name: str
    image: np.ndarray                  # what the model draws (aligned face or resized scene), uint8 RGB
    square: faces.Square | None = None
    box: tuple | None = None
    depth: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def parse_styles(text: str) -> list[str]:
    if text == "all":
        return list(STYLES)
    names = [s.strip() for s in text.split(",") if s.strip()]
    for s in names:
        style_index(s)  # ConfigError naming it
    return names


def unique_names(paths: list[Path]) -> list[str]:
    """File stems, made unique with the parent folder's name where two photos share a stem."""
    stems = [p.stem for p in paths]
    out = []
    for p, s in zip(paths, stems):
        out.append(s if stems.count(s) == 1 else f"{p.parent.name}_{s}")
    seen: dict[str, int] = {}
    for i, n in enumerate(out):
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            out[i] = f"{n}_{seen[n]}"
    return out


class Drawer:
    """A checkpoint and its helpers (face detector, depth predictor), loaded once."""

    def __init__(self, checkpoint: Path, options: DrawOptions):
        self.opt = options
        self.device = pick(options.device)
        self.spec, gens = load_model(Path(checkpoint), self.device)
        self.generator = gens["G"] if "G" in gens else gens["G_A"]  # unpaired: photo -> sketch
        self.with_depth = registry.generator_reads(self.spec)[0]
        self.styled = style_aware(self.spec)
        self.labels = list(options.styles) if self.styled else ["sketch"]
        self._finder = self._face_depth = self._scene_depth = None
        self.depth_name = None
        log.info("%s (%s family)%s%s: drawing %s", checkpoint, self.spec.get("family"),
                 ", uses depth" if self.with_depth else "", ", style-aware" if self.styled else "",
                 "scenes" if options.scene else "faces")

    # --- helpers, created on first use ---------------------------------------------------------
    @property
    def finder(self) -> faces.FaceFinder:
        if self._finder is None:
            self._finder = faces.FaceFinder()
        return self._finder

    def face_depth_predictor(self):
        if self._face_depth is None:
            from facesketch.maps import weights
            from facesketch.maps.run import make_predictor

            name = self.opt.depth
            if name == "auto":
                have = all(weights.available(n, self.opt.weights_dir) for n in TDDFA_FILES)
                name = "3ddfa_v2" if have else "mediapipe"
                if not have:
                    log.info("3DDFA_V2 weights not in %s: depth from the MediaPipe face mesh", self.opt.weights_dir)
            self.depth_name = name
            self._face_depth = make_predictor("depth", {"depth": {"predictor": name, "fallback": "mediapipe"}},
                                              self.opt.weights_dir, self.device)
        return self._face_depth

    def scene_depth_predictor(self):
        if self._scene_depth is None:
            from facesketch.maps import midas

            self.depth_name = "midas_v21"
            self._scene_depth = midas.MidasDepth(midas.load(self.opt.weights_dir), self.device)
        return self._scene_depth

    # --- preparation ----------------------------------------------------------------------------
    def prepare(self, photo: Photo, name: str) -> Prepared:
        if self.opt.scene:
            long_side = self.opt.scene_size or 2 * self.spec["input"]["image"]
            return Prepared(photo, name, scene.fit(photo.image, long_side), notes=list(photo.notes))
        boxes = self.finder.boxes(photo.image)
        if not boxes:
            raise DataError(f"{photo.path}: no face found (draw the whole image with --scene)")
        notes = list(photo.notes)
        if len(boxes) > 1:
            notes.append(f"{len(boxes)} faces found, the largest drawn")
        sq = faces.framing_square(boxes[0], self.opt.framing)
        aligned = faces.crop_square(photo.image, sq)
        # Second pass: the canonical boxes were measured by this detector on 250x250 aligned
        # photos, and its boxes are not exactly scale-invariant; detecting again on the first
        # crop and re-framing makes the result agree with that measurement.
        again = self.finder.boxes(aligned)
        if again:
            k = sq.side / faces.ALIGN_SIZE
            box = tuple(sq.x0 + v * k if i % 2 == 0 else sq.y0 + v * k for i, v in enumerate(again[0]))
            sq = faces.framing_square(box, self.opt.framing)
        if sq.side / photo.scale < faces.ALIGN_SIZE / 2:
            notes.append(f"small face: its {sq.side / photo.scale:.0f} px square is upsampled to {faces.ALIGN_SIZE}")
        return Prepared(photo, name, faces.crop_square(photo.image, sq), square=sq, box=boxes[0], notes=notes)

    def add_depth(self, items: list[Prepared]) -> None:
        if not self.with_depth or not items:
            return
        if self.opt.scene:
            for it, d in zip(items, self.scene_depth_predictor()([it.image for it in items])):
                it.depth = d
            return
        from facesketch.maps import encoding
        from facesketch.maps.run import MediaPipeDepth

        predictor = self.face_depth_predictor()
        size = self.spec["input"]["image"]
        if isinstance(predictor, MediaPipeDepth) and size < faces.ALIGN_SIZE:
            # The model sees depth at input.image only: fit the mesh on the aligned photo as the
            # training maps were, but rasterise it at that size (the rasteriser is the slow part).
            from facesketch.maps.mesh import render_depth

            r = size / faces.ALIGN_SIZE
            for it in items:
                v = predictor.mesh(it.image)
                if v is None:
                    it.depth = np.zeros((size, size), np.float32)
                    it.notes.append("depth: MediaPipe found no face (fallback: black)")
                    continue
                v = v.copy()
                v[:, :2] = (v[:, :2] + 0.5) * r - 0.5  # pixel centres at the new scale
                it.depth = render_depth(v, predictor.tri, size, size)[0].astype(np.float32)
            return
        results = predictor([it.image for it in items], [{"subset": self.opt.framing} for _ in items])
        for it, res in zip(items, results):
            it.depth = encoding.decode_depth(res.image)
            if res.problem:
                it.notes.append(f"depth: {res.problem} (fallback: {res.fallback})")

    # --- drawing ----------------------------------------------------------------------------------
    def _styles(self) -> list[int]:
        return [style_index(s) for s in self.labels] if self.styled else [0]

    @torch.no_grad()
    def draw_faces(self, items: list[Prepared]) -> dict[str, np.ndarray]:
        """{label: (B, 250, 250) uint8} for aligned faces, one generator pass per style."""
        photo = torch.from_numpy(np.stack([it.image for it in items])).permute(0, 3, 1, 2).to(self.device)
        depth = None
        if self.with_depth:
            depth = torch.from_numpy(np.stack([it.depth for it in items]))[:, None].float().to(self.device)
        x, d = network_inputs(photo, depth, self.spec)
        out = {}
        for label, s in zip(self.labels, self._styles()):
            style = F.one_hot(torch.full((len(items),), s, dtype=torch.long), 3).float().to(self.device)
            out[label] = to_uint8(network_outputs(self.generator(x, d, style), self.spec, faces.ALIGN_SIZE))
        return out

    @torch.no_grad()
    def draw_scene(self, item: Prepared) -> dict[str, np.ndarray]:
        """{label: (H, W) uint8} for one scene, padded to the model's multiple and cut back."""
        h, w = item.image.shape[:2]
        ph, pw = scene.padded_size(h, w, self.spec["input"]["crop"])
        x = torch.from_numpy(item.image.copy()).permute(2, 0, 1)[None].float().to(self.device) / 127.5 - 1
        x = F.pad(x, (0, pw - w, 0, ph - h), value=-1.0)  # black, as training's zero-padded photos
        d = None
        if self.with_depth:
            d = F.pad(torch.from_numpy(item.depth)[None, None].float().to(self.device), (0, pw - w, 0, ph - h))
        out = {}
        for label, s in zip(self.labels, self._styles()):
            style = F.one_hot(torch.tensor([s]), 3).float().to(self.device)
            y = self.generator(x, d, style).float()[..., :h, :w]
            out[label] = to_uint8(_grey(y).clamp(-1, 1))[0]
        return out

    def close(self) -> None:
        if self._finder is not None:
            self._finder.close()


def _grey(y: torch.Tensor) -> torch.Tensor:
    from facesketch.train.losses import to_grey

    return to_grey(y)


def _png(path: Path, array: np.ndarray) -> None:
    """Lossless PNG at zlib level 1: encoding at the default level took a third of the CPU time."""
    from PIL import Image

    save_pil(path, Image.fromarray(array), compress_level=1)


def _write(out: Path, item: Prepared, sketches: dict[str, np.ndarray], paste_back: bool, sheet: bool) -> None:
    from facesketch.report.grid import grid

    _png(out / "photo" / f"{item.name}.png", item.image)
    for label, img in sketches.items():
        _png(out / label / f"{item.name}.png", img)
        if paste_back and item.square is not None:
            pasted = faces.paste_back(item.photo.image, img, item.square)
            _png(out / "pasted" / label / f"{item.name}.png", pasted)
    if sheet:
        cell = 256 if item.square is not None else None
        tiles = [item.image] + list(sketches.values())
        if cell is None:  # scenes keep their aspect ratio: a strip of equal-height tiles
            sheet_img = _strip(tiles, ["photo", *sketches])
        else:
            sheet_img = grid([tiles], col_titles=["photo", *sketches], cell=cell, title=item.name)
        save_pil(out / "sheet" / f"{item.name}.png", sheet_img, compress_level=1)


def _strip(tiles: list[np.ndarray], titles: list[str]):
    from PIL import Image, ImageDraw

    h, w = tiles[0].shape[:2]
    head = 18
    canvas = Image.new("RGB", (len(tiles) * (w + 4), h + head + 4), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (t, title) in enumerate(zip(tiles, titles)):
        canvas.paste(Image.fromarray(t).convert("RGB"), (i * (w + 4) + 2, head + 2))
        draw.text((i * (w + 4) + 4, 3), title, fill="black")
    return canvas


def draw(inputs: list[str | Path], checkpoint: Path, out: Path, options: DrawOptions,
         drawer: Drawer | None = None) -> tuple[int, int]:
    """Draw every photo; returns (drawn, failed). Failures are logged one line each.
    ``drawer``: models already loaded (the benchmark times loading apart)."""
    out = Path(out)
    paths, problems = list_photos(inputs)
    if options.limit:
        paths = paths[:options.limit]
    failures = [{"file": str(p), "reason": r} for p, r in problems]
    for p, r in problems:
        log.error("%s: %s", p, r)
    if not paths and not problems:
        raise DataError(f"no image files in {' '.join(map(str, inputs))}")
    drawer = drawer or Drawer(checkpoint, options)
    names = unique_names(paths)
    drawn = []
    bs = max(1, options.batch_size)
    with ThreadPoolExecutor(2) as pool, progress(total=len(paths), desc="draw", unit="photo") as bar:
        for start in range(0, len(paths), bs):
            chunk = list(zip(paths[start:start + bs], names[start:start + bs]))
            reads = pool.map(lambda pn: _try(read_photo, pn[0], options.max_side), chunk)
            items = []
            for (path, name), (photo, err) in zip(chunk, reads):
                if err is None:
                    photo_or_err = _try(drawer.prepare, photo, name)
                    item, err = photo_or_err
                if err is not None:
                    log.error("%s", err if str(path) in str(err) else f"{path}: {err}")
                    failures.append({"file": str(path), "reason": str(err)})
                    continue
                items.append(item)
            drawer.add_depth(items)
            if options.scene:
                results = [(it, drawer.draw_scene(it)) for it in items]
            elif items:
                batch = drawer.draw_faces(items)
                results = [(it, {k: v[i] for k, v in batch.items()}) for i, it in enumerate(items)]
            else:
                results = []
            list(pool.map(lambda r: _write(out, r[0], r[1], options.paste_back, options.sheet), results))
            for it, _ in results:
                for note in it.notes:
                    log.info("%s: %s", it.photo.path, note)
                drawn.append({"file": str(it.photo.path), "name": it.name,
                              "box": None if it.box is None else [round(float(v) / it.photo.scale, 1) for v in it.box],
                              "square": None if it.square is None else [round(v / it.photo.scale, 1) for v in
                                                                        (it.square.x0, it.square.y0, it.square.side)],
                              "depth": drawer.depth_name if drawer.with_depth else None, "notes": "; ".join(it.notes)})
            bar.update(len(chunk))
    drawer.close()
    write_text(out / "drawn.csv", pd.DataFrame(drawn, columns=["file", "name", "box", "square", "depth", "notes"])
               .to_csv(index=False))
    write_text(out / "failures.csv", pd.DataFrame(failures, columns=["file", "reason"]).to_csv(index=False))
    failed = f"; {len(failures)} failed, listed in {out / 'failures.csv'}" if failures else ""
    log.info("drew %d of %d photos into %s (%s)%s", len(drawn), len(drawn) + len(failures), out,
             ", ".join(drawer.labels), failed)
    return len(drawn), len(failures)


def _try(fn, *args):
    try:
        return fn(*args), None
    except FacesketchError as e:
        return None, e
