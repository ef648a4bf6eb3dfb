"""A z-buffer triangle rasteriser in plain PyTorch (CPU or GPU, no compiled extension).

Coordinates: x right and y down in pixels, pixel (row i, column j) centred at (x=j, y=i);
z is nearness (larger = closer to the camera), so each pixel keeps the largest z.

Triangles are grouped by the size of their pixel bounding box; every triangle of a group
tests the same K x K block of candidate pixels, so the whole mesh is a few batched tensor
operations instead of a Python loop over triangles.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Raster:
    zbuf: torch.Tensor      # (H, W) interpolated z, -inf where no triangle covers the pixel
    face: torch.Tensor      # (H, W) index of the visible triangle, -1 for background
    bary: torch.Tensor      # (H, W, 3) barycentric weights of the visible triangle's vertices

    @property
    def mask(self) -> torch.Tensor:
        return self.face >= 0


def rasterize(vertices: torch.Tensor, triangles: torch.Tensor, height: int, width: int,
              eps: float = 1e-6) -> Raster:
    vertices = torch.as_tensor(vertices, dtype=torch.float64)
    triangles = torch.as_tensor(triangles, dtype=torch.long, device=vertices.device)
    device = vertices.device
    tri = vertices[triangles]  # (T, 3, 3)
    xs, ys = tri[..., 0], tri[..., 1]
    x0 = torch.ceil(xs.min(1).values - eps).clamp(min=0)
    x1 = torch.floor(xs.max(1).values + eps).clamp(max=width - 1)
    y0 = torch.ceil(ys.min(1).values - eps).clamp(min=0)
    y1 = torch.floor(ys.max(1).values + eps).clamp(max=height - 1)
    keep = (x1 >= x0) & (y1 >= y0) & torch.isfinite(tri).all(dim=(1, 2))
    ids = torch.nonzero(keep).squeeze(1)
    span = torch.maximum(x1 - x0, y1 - y0)[ids] + 1

    pix, zs, tids, bs = [], [], [], []
    k = 1
    remaining = torch.ones_like(ids, dtype=torch.bool)
    while remaining.any():
        group = remaining & (span <= k)
        remaining &= ~group
        if group.any():
            g = ids[group]
            out = _candidates(tri[g], x0[g], y0[g], x1[g], y1[g], k, width, eps)
            if out is not None:
                p, z, local, b = out
                pix.append(p)
                zs.append(z)
                tids.append(g[local])
                bs.append(b)
        k *= 2

    zbuf = torch.full((height * width,), -torch.inf, dtype=torch.float64, device=device)
    face = torch.full((height * width,), -1, dtype=torch.long, device=device)
    bary = torch.zeros((height * width, 3), dtype=torch.float64, device=device)
    if pix:
        p, z, t, b = torch.cat(pix), torch.cat(zs), torch.cat(tids), torch.cat(bs)
        zbuf.scatter_reduce_(0, p, z, reduce="amax")
        win = z == zbuf[p]
        face[p[win]] = t[win]
        bary[p[win]] = b[win]
    return Raster(zbuf.view(height, width), face.view(height, width), bary.view(height, width, 3))


def _candidates(tri, x0, y0, x1, y1, k, width, eps):
    """Pixels of a k x k block per triangle that fall inside it: (pixel, z, triangle, bary)."""
    device = tri.device
    offs = torch.arange(k, device=device, dtype=tri.dtype)
    dy, dx = torch.meshgrid(offs, offs, indexing="ij")
    px = x0[:, None] + dx.reshape(1, -1)
    py = y0[:, None] + dy.reshape(1, -1)
    valid = (px <= x1[:, None]) & (py <= y1[:, None])
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    denom = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    ok = denom.abs() > 1e-12
    denom = torch.where(ok, denom, torch.ones_like(denom))[:, None]
    dx, dy = px - c[:, 0, None], py - c[:, 1, None]
    w0 = ((b[:, 1] - c[:, 1])[:, None] * dx + (c[:, 0] - b[:, 0])[:, None] * dy) / denom
    w1 = ((c[:, 1] - a[:, 1])[:, None] * dx + (a[:, 0] - c[:, 0])[:, None] * dy) / denom
    w2 = 1.0 - w0 - w1
    inside = valid & ok[:, None] & (w0 >= -eps) & (w1 >= -eps) & (w2 >= -eps)
    if not inside.any():
        return None
    rows, cols = torch.nonzero(inside, as_tuple=True)
    bw = torch.stack([w0[rows, cols], w1[rows, cols], w2[rows, cols]], dim=1)
    z = (bw * tri[rows, :, 2]).sum(1)
    pixel = (py[rows, cols] * width + px[rows, cols]).long()
    return pixel, z, rows, bw


def interpolate(raster: Raster, attributes: torch.Tensor, triangles: torch.Tensor,
                background: float = 0.0) -> torch.Tensor:
    """Per-pixel barycentric interpolation of per-vertex ``attributes`` (N, C) -> (H, W, C)."""
    attributes = torch.as_tensor(attributes, dtype=torch.float64, device=raster.face.device)
    triangles = torch.as_tensor(triangles, dtype=torch.long, device=raster.face.device)
    h, w = raster.face.shape
    out = torch.full((h, w, attributes.shape[1]), background, dtype=torch.float64, device=attributes.device)
    m = raster.mask
    corners = attributes[triangles[raster.face[m]]]  # (P, 3, C)
    out[m] = (raster.bary[m].unsqueeze(-1) * corners).sum(1)
    return out
