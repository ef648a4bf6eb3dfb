"""SSIM as MATLAB's ``ssim(A, ref)`` computes it, MS-SSIM and FSIM as piq computes them (facesketch.metrics.fsim).

SSIM (the FS2K toolbox calls MATLAB's on uint8 grey images): an 11x11 Gaussian window with
sigma 1.5, replicate padding so the map keeps the image's size, C1 = (0.01 * 255)^2,
C2 = (0.03 * 255)^2, the mean of the whole map. skimage's defaults (7x7 uniform window) and
'valid' cropping (piq, pytorch-msssim) give other numbers, hence this implementation.

MS-SSIM: piq's definition (five scales, weights 0.0448, 0.2856, 0.3001, 0.2363, 0.1333, data range
255), computed faster.
FSIM: luminance only for grey sketches; the same numbers as piq's port, computed faster.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _batch(images, dtype=torch.float64) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(images), dtype=dtype)
    if t.ndim == 2:
        t = t[None]
    return t[:, None]


def ssim_matlab(a, b) -> np.ndarray:
    """Per-image SSIM of uint8 grey images (N, H, W) or one (H, W) pair, MATLAB's way.

    In float64 like MATLAB; the 2-D Gaussian is separable, so each blur is two 1-D passes
    (scipy's 'nearest' mode is MATLAB's replicate padding).
    """
    from scipy.ndimage import correlate1d

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    g = gaussian_1d().numpy()

    def blur(t):
        return correlate1d(correlate1d(t, g, axis=-1, mode="nearest"), g, axis=-2, mode="nearest")

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    m = ((2 * mx * my + C1) * (2 * sxy + C2)) / ((mx * mx + my * my + C1) * (sxx + syy + C2))
    return np.atleast_1d(m.mean(axis=(-2, -1)))


def ms_ssim(a, b) -> np.ndarray:
    """Per-image MS-SSIM of grey images (N, H, W) in [0, 255], piq's definition.

    piq.multi_scale_ssim's numbers (tests compare them to 1e-5): 11x11 Gaussian, sigma 1.5, 'valid'
    windows, contrast-structure at the first four scales and SSIM at the fifth, negative terms
    clipped to 0, a 2x2 mean between scales after replicating the first row/column of odd sizes.
    Computed here with the Gaussian's two 1-D passes over the five maps stacked in one batch: piq
    convolves each map with the 2-D kernel separately, which takes several times as long
    (bench/metrics_speed.py).
    """
    x, y = (_batch(v, torch.float32) / 255.0 for v in (a, b))
    weights = torch.tensor(MS_SSIM_WEIGHTS)
    weights = weights / weights.sum()  # piq normalises them (they sum to 1.0001)
    min_size = 10 * 2 ** (len(weights) - 1) + 1
    if min(x.shape[-2:]) < min_size:
        raise ValueError(f"MS-SSIM needs images of at least {min_size}x{min_size}, got {tuple(x.shape[-2:])}")
    g = gaussian_1d().float().tolist()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    terms = []
    for level in range(len(weights)):
        if level:
            odd = max(x.shape[-2] % 2, x.shape[-1] % 2)
            x, y = (F.avg_pool2d(F.pad(t, [odd, 0, odd, 0], mode="replicate"), 2) for t in (x, y))
        n = x.shape[0]
        mx, my, sxx, syy, sxy = _blur_valid(_blur_valid(torch.cat([x, y, x * x, y * y, x * y]), g, -1), g, -2).split(n)
        mxx, myy, mxy = mx * mx, my * my, mx * my
        cs = (2 * (sxy - mxy) + c2) / ((sxx - mxx) + (syy - myy) + c2)
        if level == len(weights) - 1:
            cs = (2 * mxy + c1) / (mxx + myy + c1) * cs  # SSIM at the coarsest scale
        terms.append(cs.mean(dim=(-2, -1))[:, 0])
    return torch.prod(torch.relu(torch.stack(terms)) ** weights[:, None], dim=0).numpy()


def _blur_valid(t: torch.Tensor, g: list[float], dim: int) -> torch.Tensor:
    """'valid' correlation with the 1-D kernel ``g`` along ``dim``, as shifted multiply-adds:
    three times faster than conv2d with a 1x11 kernel on one core for these sizes."""
    n = t.shape[dim] - len(g) + 1
    out = t.narrow(dim, 0, n) * g[0]
    for k in range(1, len(g)):
        out.add_(t.narrow(dim, k, n), alpha=g[k])
    return out


def fsim(a, b) -> np.ndarray:
    from facesketch.metrics import fsim as fsim_module

    return fsim_module.fsim(_batch(a).float(), _batch(b).float()).numpy()
