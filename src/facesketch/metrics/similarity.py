"""SSIM as MATLAB's ``ssim(A, ref)`` computes it, MS-SSIM from piq, FSIM (facesketch.metrics.fsim).

SSIM (the FS2K toolbox calls MATLAB's on uint8 grey images): an 11x11 Gaussian window with
sigma 1.5, replicate padding so the map keeps the image's size, C1 = (0.01 * 255)^2,
C2 = (0.03 * 255)^2, the mean of the whole map. skimage's defaults (7x7 uniform window) and
'valid' cropping (piq, pytorch-msssim) give other numbers, hence this implementation.

MS-SSIM: piq's (five scales, weights 0.0448, 0.2856, 0.3001, 0.2363, 0.1333, data range 255).
FSIM: luminance only for grey sketches; the same numbers as piq's port, computed faster.
"""

from __future__ import annotations

import numpy as np
import torch

C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _batch(images) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(images), dtype=torch.float64)
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
    import piq

    x, y = _batch(a).float(), _batch(b).float()
    w = torch.tensor(MS_SSIM_WEIGHTS)
    return piq.multi_scale_ssim(x, y, data_range=255.0, reduction="none", scale_weights=w).numpy()


def fsim(a, b) -> np.ndarray:
    from facesketch.metrics import fsim as fsim_module

    return fsim_module.fsim(_batch(a).float(), _batch(b).float()).numpy()
