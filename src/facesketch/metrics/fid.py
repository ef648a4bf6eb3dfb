"""FID with pytorch-fid's Inception features and its Frechet distance.

Sketches are grey; like pytorch-fid reading them from disk with PIL ``convert('RGB')``, the
grey channel is repeated three times, scaled to [0, 1], and the network resizes to 299x299.
"""

from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def inception_features(model, images: list[np.ndarray], device, batch_size: int = 25) -> np.ndarray:
    """(N, 2048) pool features of uint8 grey (or RGB) images of any size."""
    feats = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        batch = []
        for im in chunk:
            t = torch.from_numpy(np.ascontiguousarray(im)).float() / 255.0
            t = t[None].expand(3, -1, -1) if t.ndim == 2 else t.permute(2, 0, 1)
            batch.append(t)
        sizes = {tuple(t.shape) for t in batch}
        groups = [batch] if len(sizes) == 1 else [[t] for t in batch]  # mixed sizes: one at a time
        for group in groups:
            out = model(torch.stack(group).to(device))[0]
            feats.append(out.squeeze(-1).squeeze(-1).cpu().numpy().astype(np.float64))
    return np.concatenate(feats) if feats else np.zeros((0, 2048))


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(axis=0), np.cov(features, rowvar=False)


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """pytorch-fid's Frechet distance between the Gaussians fitted to two feature sets."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    if len(real) < 2 or len(fake) < 2:
        return float("nan")
    mu1, s1 = statistics(real)
    mu2, s2 = statistics(fake)
    return float(calculate_frechet_distance(mu1, s1, mu2, s2))
