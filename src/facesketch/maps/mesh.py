"""Depth and normal maps from a triangle mesh in image space.

Vertices are (x, y, z): x right and y down in pixels of the target image, z nearness in the
same units (larger = closer). Both face-mesh predictors (3DDFA_V2, MediaPipe) produce this,
so depth and normals from either follow facesketch.maps.encoding.
"""

from __future__ import annotations

import numpy as np
import torch

from facesketch.maps.raster import interpolate, rasterize


def vertex_normals(vertices: torch.Tensor, triangles: torch.Tensor, per_face: bool = False,
                   visible: torch.Tensor | None = None) -> torch.Tensor:
    """Area-weighted unit vertex normals, oriented so the mesh faces the camera (+z).

    The frame (x right, y down, z towards the camera) is left-handed and face models wind their
    triangles their own way. A consistently wound mesh (3DDFA_V2's BFM) is flipped as a whole
    so that the triangles the camera sees (``visible``, else all) face it on average; a closed
    mesh needs the visible ones, since over all of it the normals cancel. A mesh without a
    consistent winding (MediaPipe's tessellation, whose triangles are recovered from edges) has
    each triangle turned to the camera (``per_face``): right for everything a photo can see.
    """
    v = torch.as_tensor(vertices, dtype=torch.float64)
    t = torch.as_tensor(triangles, dtype=torch.long, device=v.device)
    a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
    face_n = torch.linalg.cross(b - a, c - a, dim=1)  # length = 2 x area
    if per_face:
        face_n = torch.where(face_n[:, 2:3] < 0, -face_n, face_n)
    elif (face_n[:, 2] if visible is None else face_n[visible, 2]).sum() < 0:
        face_n = -face_n
    n = torch.zeros_like(v)
    for k in range(3):
        n.index_add_(0, t[:, k], face_n)
    return n / n.norm(dim=1, keepdim=True).clamp_min(1e-12)


def boundary_loops(triangles) -> list[list[int]]:
    """Closed loops of the edges that only one triangle uses (a mesh's outline and its holes)."""
    t = np.asarray(triangles, dtype=np.int64)
    edges = np.sort(np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    nxt: dict[int, list[int]] = {}
    for a, b in uniq[counts == 1].tolist():
        nxt.setdefault(a, []).append(b)
        nxt.setdefault(b, []).append(a)
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, prev, cur = [start], None, start
        seen.add(start)
        while True:
            step = [n for n in nxt[cur] if n != prev and (n not in seen or n == start)]
            if not step or step[0] == start:
                break
            prev, cur = cur, step[0]
            loop.append(cur)
            seen.add(cur)
        loops.append(loop)
    return loops


def fill_holes(triangles) -> np.ndarray:
    """Close every hole of an open surface (the eyes and mouth of MediaPipe's face mesh) by a fan
    of triangles over its rim, leaving the outer outline (the longest loop) open: the closed
    surface 3DDFA_V2's face model gives, which HIDA's depth maps were rendered from."""
    t = np.asarray(triangles, dtype=np.int64)
    loops = sorted(boundary_loops(t), key=len)
    fans = [[loop[0], loop[i], loop[i + 1]] for loop in loops[:-1] for i in range(1, len(loop) - 1)]
    return np.concatenate([t, np.array(fans, dtype=np.int64).reshape(-1, 3)]) if fans else t


def render_depth(vertices, triangles, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(depth in [0, 1] with 0 background, coverage mask); z min-max normalised per face."""
    v = torch.as_tensor(vertices, dtype=torch.float64).clone()
    z = v[:, 2]
    span = (z.max() - z.min()).clamp_min(1e-12)
    v[:, 2] = (z - z.min()) / span
    r = rasterize(v, triangles, height, width)
    depth = torch.where(r.mask, r.zbuf, torch.zeros_like(r.zbuf))
    return depth.cpu().numpy(), r.mask.cpu().numpy()


def render_normals(vertices, triangles, height: int, width: int,
                   per_face: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(unit normals (H, W, 3) in DSINE's convention, coverage mask)."""
    v = torch.as_tensor(vertices, dtype=torch.float64)
    r = rasterize(v, triangles, height, width)
    visible = torch.unique(r.face[r.mask])
    n = interpolate(r, vertex_normals(v, triangles, per_face, visible), triangles)
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    n[~r.mask] = 0
    return n.cpu().numpy(), r.mask.cpu().numpy()
