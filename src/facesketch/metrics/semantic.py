"""The semantic score "Sem." of HIDA's Table 4 (MetFaces), as the CoCosNet papers define it.

CoCosNet (Zhang et al., "Cross-domain Correspondence Learning for Exemplar-based Image
Translation", CVPR 2020, Sec. 4, "Semantic consistency"; reused by CoCosNet v2, UNITE and DynaST):
the high-level feature maps relu3_2, relu4_2 and relu5_2 of an ImageNet-pretrained VGG represent an
image's semantics; the cosine similarity between the translated image's and the ground truth's
features is computed for each of these layers and the three are averaged.

The papers do not say how a feature map becomes one vector; here each map is flattened whole
(channels x positions) before the cosine, per image, and the table averages the images. The VGG is
torchvision's VGG19 (registry ``vgg19``), fed RGB in [0, 1] with ImageNet's normalisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LAYERS = ("r32", "r42", "r52")


@torch.no_grad()
def semantic_similarity(vgg, result: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """(B,) scores of ``result`` against ``truth`` (RGB in [-1, 1], same size): the mean over
    relu3_2, relu4_2, relu5_2 of the cosine similarity of the flattened feature maps."""
    keys = list(LAYERS)
    fr, ft = vgg(result, keys), vgg(truth, keys)
    sims = [F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1) for a, b in zip(fr, ft)]
    return torch.stack(sims).mean(0)
