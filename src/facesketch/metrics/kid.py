"""KID (Binkowski et al. 2018) and a fast Frechet distance for resampled feature sets.

KID is the unbiased estimate of the squared MMD between real and generated Inception features
with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3 (d = 2048), as in the KID paper,
torchmetrics, torch-fidelity and clean-fid. Those libraries average the estimate over random
subsets of at most 1,000 images; FS2K's test sets (per style 46 to 1,000 images) are at most
that size, so the estimate here is the single full-set U-statistic, which is what a subset of
the whole set gives. Unlike FID, its expectation is 0 when both sets come from one
distribution, whatever their size, so small sets (Style3's 46 images) compare fairly.

``frechet_replicates`` computes FID for many resamplings of the generated set without a
2048x2048 matrix square root each time: with X the centred generated features (n x d),
tr sqrt(S_real S_fake) equals the sum of square roots of the eigenvalues of the n x n matrix
X S_real X^T / (n - 1), because the non-zero spectrum of AB equals that of BA; the n x n
products are precomputed once per set.
"""

from __future__ import annotations

import numpy as np


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


class KernelSums:
    """Kernel matrices of one real and one generated feature set, computed once so that
    resamplings of the generated set cost only index arithmetic."""

    def __init__(self, real: np.ndarray, fake: np.ndarray):
        self.k_rr = polynomial_kernel(real, real)
        self.k_ff = polynomial_kernel(fake, fake)
        self.k_rf = polynomial_kernel(real, fake)
        m = len(real)
        self.rr_term = (self.k_rr.sum() - np.trace(self.k_rr)) / (m * (m - 1)) if m > 1 else np.nan

    def kid(self, idx: np.ndarray | None = None) -> float:
        """Unbiased MMD^2 with the generated set taken at ``idx`` (all of it by default)."""
        if idx is None:
            idx = np.arange(self.k_ff.shape[0])
        n = len(idx)
        if n < 2 or not np.isfinite(self.rr_term):
            return float("nan")
        k_ff = self.k_ff[np.ix_(idx, idx)]
        ff_term = (k_ff.sum() - np.trace(k_ff)) / (n * (n - 1))
        rf_term = self.k_rf[:, idx].mean()
        return float(self.rr_term + ff_term - 2.0 * rf_term)


def kid(real: np.ndarray, fake: np.ndarray) -> float:
    if len(real) < 2 or len(fake) < 2:
        return float("nan")
    return KernelSums(np.asarray(real, np.float64), np.asarray(fake, np.float64)).kid()


class FrechetReplicates:
    """FID of the real set against resamplings of the generated set. A resampling is a weight
    vector w over the generated rows (counts / n); with H = F F^T, G = F S_real F^T and
    r = F mu_real precomputed (F the generated features), every term of the distance is a
    quadratic form in w, so a replicate costs one eigendecomposition the size of its distinct rows."""

    def __init__(self, real: np.ndarray, fake: np.ndarray):
        real = np.asarray(real, np.float64)
        fake = np.asarray(fake, np.float64)
        mu_r = real.mean(axis=0)
        cov_r = np.cov(real, rowvar=False)
        self.mu_r2 = float(mu_r @ mu_r)
        self.tr_r = float(np.trace(cov_r))
        self.h = fake @ fake.T
        self.g = fake @ cov_r @ fake.T
        self.r = fake @ mu_r
        self.n = len(fake)

    def fid(self, idx: np.ndarray | None = None) -> float:
        idx = np.arange(self.n) if idx is None else np.asarray(idx)
        n = len(idx)
        if n < 2:
            return float("nan")
        # a resampling repeats rows: work on the distinct rows u with their counts c, so the
        # eigenproblem is u x u (about 0.63 n), S_fake = Y^T diag(c) Y / (n - 1)
        u, c = np.unique(idx, return_counts=True)
        w = np.zeros(self.n)
        w[u] = c / n
        g = self.g[np.ix_(u, u)]
        gw = self.g[u] @ w  # x_i S_r mu_f for each distinct row
        mu_f2, mu_c_mu = float(w @ self.h @ w), float(w @ self.g @ w)
        centred = g - gw[:, None] - gw[None, :] + mu_c_mu  # (x_i - mu_f) S_r (x_j - mu_f)^T
        sc = np.sqrt(c)
        small = centred * sc[:, None] * sc[None, :] / (n - 1)
        eig = np.linalg.eigvalsh((small + small.T) / 2)
        tr_sqrt = float(np.sqrt(np.clip(eig, 0, None)).sum())
        tr_f = float((c @ np.diag(self.h)[u] - n * mu_f2) / (n - 1))
        mean_term = self.mu_r2 - 2.0 * float(w @ self.r) + mu_f2
        return float(mean_term + self.tr_r + tr_f - 2.0 * tr_sqrt)


def set_replicates(real: np.ndarray, fake: np.ndarray, n_boot: int, seed: int = 0) -> dict[str, np.ndarray]:
    """{'FID': (n_boot,), 'KID': (n_boot,)} over resamplings (with replacement) of the generated
    features' rows. The indices depend only on ``seed`` and the set size, so two methods scored
    on the same test images in the same order are resampled identically (paired comparisons)."""
    real = np.asarray(real, np.float64)
    fake = np.asarray(fake, np.float64)
    n = len(fake)
    if n < 2 or len(real) < 2:
        return {"FID": np.full(n_boot, np.nan), "KID": np.full(n_boot, np.nan)}
    rng = np.random.default_rng(seed)
    fr, ks = FrechetReplicates(real, fake), KernelSums(real, fake)
    out = {"FID": np.empty(n_boot), "KID": np.empty(n_boot)}
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        out["FID"][b] = fr.fid(idx)
        out["KID"][b] = ks.kid(idx)
    return out
