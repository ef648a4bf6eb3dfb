"""The semantic score "Sem." of HIDA's Table 4 (MetFaces), as the CoCosNet papers define it.

Definition (CoCosNet, Zhang et al., "Cross-domain Correspondence Learning for Exemplar-based Image
Translation", CVPR 2020, Sec. 4 "Semantic consistency"; reused by CoCosNet v2, UNITE, DynaST and
MATEBIT): the high-level VGG features relu3_2, relu4_2 and relu5_2 of the translated image and of the
ground truth, their cosine similarity per layer, averaged over the three layers.

How the vectors are formed is not in the papers. The evaluation script published with MATEBIT
(AiArt-Gao/MATEBIT, evaluation/sc_vgg_metric.py; Jiang, Gao et al., the HIDA authors' group, whose
MetFaces comparison has the same five methods as HIDA's Table 4) does, per image: both images resized
to 256x256, CoCosNet's VGG19 (``vgg19_conv.pth``, Caffe BGR input), each feature map nearest-upsampled
to 256x256; for every value of the input's label map (for MetFaces: the edge map, so edge and non-edge
pixels) the mean feature vector over that region in each image, the cosine of the two means, weighted
by the region's share of the image, summed; averaged over images, per layer. ``mode="region"`` (the
default) is that; ``mode="global"`` flattens each whole map into one vector instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LAYERS = ("r32", "r42", "r52")
SIZE = 256  # the script's Resize((256, 256)) and the size its features are upsampled to


def _region_cosine(fa: torch.Tensor, fb: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """sum over label values v of (|v| / |image|) cos(mean_v fa, mean_v fb); fa, fb (C, H, W), label (H, W)."""
    total = fa.new_zeros(())
    for v in torch.unique(label):
        mask = (label == v).to(fa.dtype)
        n = mask.sum()
        ma, mb = (fa * mask).sum((1, 2)) / n, (fb * mask).sum((1, 2)) / n
        total = total + F.cosine_similarity(ma, mb, dim=0, eps=1e-12) * n / mask.numel()
    return total


@torch.no_grad()
def semantic_similarity(vgg, result: torch.Tensor, truth: torch.Tensor, label: torch.Tensor | None = None,
                        mode: str = "region") -> torch.Tensor:
    """(B,) scores of ``result`` against ``truth`` (RGB in [-1, 1]); ``label`` (B, H, W), the input's label
    map (MetFaces: the edge map), is needed by ``mode="region"``."""
    if mode not in ("region", "global"):
        raise ValueError(f"unknown Sem. mode {mode!r}")
    if result.shape[-1] != SIZE or result.shape[-2] != SIZE:
        resize = lambda t: F.interpolate(t, size=(SIZE, SIZE), mode="bilinear", align_corners=False)  # noqa: E731
        result, truth = resize(result), resize(truth)
    keys = list(LAYERS)
    fr, ft = vgg(result, keys), vgg(truth, keys)
    if mode == "global":
        sims = [F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1) for a, b in zip(fr, ft)]
        return torch.stack(sims).mean(0)
    if label is None:
        raise ValueError("Sem. by region needs the input's label map")
    label = F.interpolate(label[:, None].float(), size=(SIZE, SIZE), mode="nearest")[:, 0]
    sims = []
    for a, b in zip(fr, ft):
        a = F.interpolate(a, size=(SIZE, SIZE), mode="nearest")
        b = F.interpolate(b, size=(SIZE, SIZE), mode="nearest")
        sims.append(torch.stack([_region_cosine(a[i], b[i], label[i]) for i in range(len(a))]))
    return torch.stack(sims).mean(0)
