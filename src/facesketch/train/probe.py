"""Engines and batches for probing a variant without a data set: ``facesketch gpu-check``, the
GPU-recipe and fake-CUDA tests, the throughput benchmark.

Loss networks with pretrained weights (VGG19 for Pix2PixHD, HED + LPIPS for the edge loss,
DSINE for the normal loss) come from the weights folder when installed; otherwise the same
architectures with random weights stand in, which cost the same per step but give meaningless
loss values (said in the returned note).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from facesketch.train.data import Batch

PRETRAINED_LOSSES = ("vgg", "edge", "normal")
_STAND_INS: dict[str, torch.nn.Module] = {}  # built once per process: the four attention CycleGANs share them


def _stand_in(kind: str) -> torch.nn.Module:
    from facesketch.train import losses as L

    if kind not in _STAND_INS:
        if kind == "vgg":
            import torchvision

            _STAND_INS[kind] = L.VGGLoss(torchvision.models.vgg19(weights=None).state_dict())
        elif kind == "edge":
            import lpips

            from facesketch.maps.hed import HED

            _STAND_INS[kind] = L.EdgeLoss(HED().eval(), lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval())
        else:
            from facesketch.maps.dsine import DSINE, NormalPredictor

            _STAND_INS[kind] = L.NormalLoss(NormalPredictor(DSINE().eval()).eval())
    return _STAND_INS[kind]


def scaled(spec: dict, size: int, ngf: int | None = None, batch: int | None = None) -> dict:
    """``spec`` at input ``size`` (and optionally a narrower generator/discriminator and another
    batch size): what a test or a CPU check can afford."""
    s = copy.deepcopy(spec)
    s["input"] = dict(s["input"], image=size - 2 * max(1, size // 32), pad=max(1, size // 32), crop=size)
    if batch is not None:
        s["batch_size"] = batch
    if ngf is not None:
        s["generator"] = dict(s["generator"], ngf=ngf)
        if "n_blocks" in s["generator"]:
            s["generator"]["n_blocks"] = min(s["generator"]["n_blocks"], 2)
        s["discriminator"] = dict(s.get("discriminator", {}), ndf=ngf)
    return s


def loss_networks(spec: dict, weights_dir: Path | None, device: torch.device) -> tuple[dict, str]:
    """{loss: network} for the variant's pretrained-network losses, loaded as training loads them
    (facesketch.train.engine.loss_networks), each replaced by a stand-in when its weights are not
    installed; and a note naming the stand-ins."""
    from facesketch.errors import WeightsError
    from facesketch.train.engine import loss_networks as load
    from facesketch.train.engine import loss_weights

    names = {"vgg": "VGG19", "edge": "HED+LPIPS", "normal": "DSINE"}
    weights = loss_weights(spec["losses"])
    nets, stand_ins = {}, []
    for kind in PRETRAINED_LOSSES:
        if not weights[kind]:
            continue
        only = {"losses": {k: v for k, v in spec["losses"].items() if k in (kind, "edge_hed")}}
        try:
            nets.update(load(only, weights_dir or Path("weights"), device))
        except WeightsError:
            nets[kind] = _stand_in(kind).to(device)
            stand_ins.append(names[kind])
    for m in nets.values():
        for p in m.parameters():
            p.requires_grad_(False)
    note = f"random-weight stand-ins for {', '.join(stand_ins)}" if stand_ins else ""
    return nets, note


def build_engine(spec: dict, device: torch.device, weights_dir: Path | None = None, recipe: bool = False,
                 fast_optimizers: bool = True):
    """An Engine for ``spec``, its pretrained loss networks real or stand-ins; ``recipe`` runs the
    GPU recipe (bf16 autocast, channels_last, fused optimisers) on the CPU too. Returns
    (engine, note)."""
    from facesketch.train.engine import Engine

    nets, note = loss_networks(spec, weights_dir, device)
    engine = Engine(copy.deepcopy(spec), device, nets, fast_optimizers=fast_optimizers, gpu_recipe_on_cpu=recipe)
    return engine, note


def synthetic_batch(spec: dict, device: torch.device, seed: int = 0, batch: int | None = None) -> Batch:
    """A batch of the variant's shapes with smooth random content (photos, sketches in [-1, 1],
    depth in [0, 1], one-hot styles), made on the CPU from ``seed`` and moved to ``device``."""
    g = torch.Generator().manual_seed(seed)
    b, size = batch or spec["batch_size"], spec["input"]["crop"]

    def smooth(c):
        coarse = torch.rand(b, c, max(2, size // 8), max(2, size // 8), generator=g)
        return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    style = torch.randint(0, 3, (b,), generator=g)
    t = Batch(photo=smooth(3) * 2 - 1, sketch=smooth(1) * 2 - 1, depth=smooth(1),
              style=torch.nn.functional.one_hot(style, 3).float(), index=torch.arange(b))
    return Batch(*(x.to(device) for x in (t.photo, t.sketch, t.depth, t.style, t.index)))
