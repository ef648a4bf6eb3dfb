"""``facesketch maps KIND``: a depth, normal or edge map for every aligned photo of the manifest.

Maps go to ``OUT/<split>/<id>.png`` (formats: facesketch.maps.encoding), in batches, on the
GPU when there is one. A map already on disk is kept, so a killed run resumes where it stopped.
Faces a predictor could not fit are listed in ``OUT/failures.csv`` with the problem and the
fallback used; they are never silently black.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from facesketch.data.fs2k import load_manifest
from facesketch.device import pick
from facesketch.errors import WeightsError
from facesketch.fileio import read_array, write_text
from facesketch.maps import encoding
from facesketch.progress import progress

log = logging.getLogger(__name__)

# Median MediaPipe face boxes (l, t, r, b) on the aligned 250x250 training photos, per FS2K
# subset; used when the detector finds no face. Scaled for other sizes.
CANONICAL_BOXES = {"photo1": (48, 57, 202, 210), "photo2": (36, 86, 216, 262), "photo3": (50, 66, 196, 217)}


@dataclass
class MapResult:
    image: Image.Image
    problem: str | None = None
    fallback: str | None = None


def canonical_box(subset: str, size: int) -> tuple[float, ...]:
    box = CANONICAL_BOXES.get(subset, CANONICAL_BOXES["photo1"])
    return tuple(v * size / 250.0 for v in box)


class _Mesher:
    """Lazily created MediaPipe face mesh (shared by the predictors that need it)."""

    def __init__(self):
        self._m = None

    def get(self):
        if self._m is None:
            from facesketch.maps.mediapipe_mesh import FaceMesher

            self._m = FaceMesher()
        return self._m


class MediaPipeDepth:
    def __init__(self, mesher: _Mesher):
        from facesketch.maps.mediapipe_mesh import triangles

        self.mesher, self.tri = mesher, triangles()

    def mesh(self, image):
        return self.mesher.get().mesh(image)

    def __call__(self, images, rows):
        from facesketch.maps.mesh import render_depth

        out = []
        for image in images:
            v = self.mesh(image)
            h, w = image.shape[:2]
            if v is None:
                out.append(MapResult(encoding.encode_depth(np.zeros((h, w))), "MediaPipe found no face", "black"))
            else:
                out.append(MapResult(encoding.encode_depth(render_depth(v, self.tri, h, w)[0])))
        return out


class TDDFADepth:
    def __init__(self, weights_dir: Path, device, mesher: _Mesher, fallback: str):
        from facesketch.maps.tddfa import TDDFA

        self.tddfa = TDDFA(weights_dir, device)
        self.mesher, self.fallback = mesher, fallback
        self._mp = None

    def meshes(self, images, rows):
        boxes = []
        for image, row in zip(images, rows):
            box = None
            try:
                box = self.mesher.get().face_box(image)
            except WeightsError:
                pass  # no MediaPipe: the alignment's canonical box
            boxes.append(box or canonical_box(row.get("subset", "photo1"), image.shape[0]))
        return self.tddfa.fit(images, boxes)

    def __call__(self, images, rows):
        from facesketch.maps.mesh import render_depth

        tri = self.tddfa.model.tri
        out = []
        for image, fit, row in zip(images, self.meshes(images, rows), rows):
            h, w = image.shape[:2]
            if fit["problem"] is None:
                out.append(MapResult(encoding.encode_depth(render_depth(fit["vertices"], tri, h, w)[0])))
                continue
            if self.fallback == "mediapipe":
                self._mp = self._mp or MediaPipeDepth(self.mesher)
                res = self._mp([image], [row])[0]
                out.append(MapResult(res.image, f"3DDFA_V2: {fit['problem']}",
                                     "mediapipe" if res.problem is None else f"black ({res.problem})"))
            else:
                out.append(MapResult(encoding.encode_depth(np.zeros((h, w))), f"3DDFA_V2: {fit['problem']}", "black"))
        return out


class MeshNormals:
    """Normals of the face mesh that the configured depth predictor fits."""

    def __init__(self, source, mesher: _Mesher):
        self.source, self.mesher = source, mesher

    def __call__(self, images, rows):
        from facesketch.maps.mesh import render_normals

        out = []
        if isinstance(self.source, TDDFADepth):
            fits = self.source.meshes(images, rows)
            meshes = [(f["vertices"], f["problem"]) for f in fits]
            tri, per_face = self.source.tddfa.model.tri, False
        else:
            meshes = [(m, None if m is not None else "MediaPipe found no face") for m in map(self.source.mesh, images)]
            tri, per_face = self.source.tri, True
        for image, (verts, problem) in zip(images, meshes):
            h, w = image.shape[:2]
            if verts is None:
                out.append(MapResult(encoding.encode_normal(np.zeros((h, w, 3)), np.zeros((h, w), bool)),
                                     problem, "empty"))
            else:
                n, mask = render_normals(verts, tri, h, w, per_face=per_face)
                out.append(MapResult(encoding.encode_normal(n, mask)))
        return out


class NetworkMaps:
    """A batched image-to-map network (DSINE normals, HED edges) on the chosen device."""

    def __init__(self, net: torch.nn.Module, device, encode):
        self.net, self.device, self.encode = net.to(device).eval(), device, encode

    @torch.no_grad()
    def __call__(self, images, rows):
        x = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in images])
        y = self.net(x.to(self.device).float() / 255.0).float().cpu()
        return [MapResult(self.encode(t)) for t in y]


def make_predictor(kind: str, spec: dict, weights_dir: Path, device):
    mesher = _Mesher()
    depth_spec = spec.get("depth", {})

    def depth_predictor():
        if depth_spec.get("predictor", "3ddfa_v2") == "3ddfa_v2":
            return TDDFADepth(weights_dir, device, mesher, depth_spec.get("fallback", "mediapipe"))
        return MediaPipeDepth(mesher)

    if kind == "depth":
        return depth_predictor()
    if kind == "normal":
        if spec.get("normal", {}).get("predictor", "dsine") == "dsine":
            from facesketch.maps import dsine

            return NetworkMaps(dsine.load(weights_dir), device,
                               lambda t: encoding.encode_normal(t.permute(1, 2, 0).numpy()))
        return MeshNormals(depth_predictor(), mesher)
    if kind == "edge":
        from facesketch.maps import hed

        return NetworkMaps(hed.load(spec.get("edge", {}).get("weights", "official"), weights_dir), device,
                           lambda t: encoding.encode_edge(t[0].numpy()))
    raise ValueError(f"unknown map kind {kind!r}")


def run_maps(kind: str, manifest_path: Path, out: Path, spec: dict, weights_dir: Path,
             device: str = "auto") -> pd.DataFrame:
    manifest = load_manifest(manifest_path)
    root = Path(manifest.attrs["root"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    journal = out / ".failures.jsonl"  # survives a kill; failures.csv is written at the end
    todo = [row for _, row in manifest.iterrows()
            if not encoding.map_path(out.parent, out.name, row.split, row.id).is_file()]
    log.info("%s maps: %d of %d to make (%s)", kind, len(todo), len(manifest), out)
    if todo:
        dev = pick(device)
        predictor = make_predictor(kind, spec, weights_dir, dev)
        batch_size = spec.get("batch_size", 16)
        with progress(total=len(todo), desc=f"{kind} maps", unit="img") as bar:
            for start in range(0, len(todo), batch_size):
                rows = todo[start:start + batch_size]
                images = [read_array(root / r.photo, "RGB") for r in rows]
                for row, res in zip(rows, predictor(images, rows)):
                    encoding.save_map(out.parent, out.name, row.split, row.id, res.image)
                    if res.problem:
                        log.warning("%s %s: %s (fallback: %s)", kind, row.id, res.problem, res.fallback)
                        with open(journal, "a") as f:
                            f.write(json.dumps({"id": row.id, "split": row.split, "problem": res.problem,
                                                "fallback": res.fallback}) + "\n")
                bar.update(len(rows))
    records = [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []
    failures = pd.DataFrame(records, columns=["id", "split", "problem", "fallback"]).drop_duplicates("id", keep="last")
    write_text(out / "failures.csv", failures.to_csv(index=False))
    log.info("%s maps done: %d listed in %s", kind, len(failures), out / "failures.csv")
    return failures
