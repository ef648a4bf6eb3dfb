"""Learning-rate schedule and optimisers from a variant's config."""

from __future__ import annotations

import torch


def lr_factor(epoch: int, epochs: int, decay_epochs: int) -> float:
    """pix2pix's rule: constant for ``epochs - decay_epochs`` epochs, then linear decay that would
    reach zero at epoch ``epochs``:

        factor(e) = 1 - max(0, e + 1 - (epochs - decay_epochs)) / (decay_epochs + 1)

    for 0-based epoch e; with ``decay_epochs = 0`` the rate stays constant.
    """
    if decay_epochs <= 0:
        return 1.0
    return 1.0 - max(0, epoch + 1 - (epochs - decay_epochs)) / float(decay_epochs + 1)


def make_optimizer(params, spec: dict, lr: float, device: torch.device, fast: bool = True,
                   fused_on_cpu: bool = False) -> torch.optim.Optimizer:
    """Adam or AdamW from a variant's ``optimizer`` block (every key required by the schema)."""
    kind, betas, wd = spec["type"], tuple(spec["betas"]), spec["weight_decay"]
    # fused kernels on CUDA (one launch per step), foreach elsewhere; fused_on_cpu: the GPU recipe
    # on the CPU (torch has fused Adam/AdamW CPU kernels); fast=False is the per-parameter loop of
    # older code (the throughput benchmark's reference)
    if not fast:
        impl = {"foreach": False}
    else:
        impl = {"fused": True} if device.type == "cuda" or fused_on_cpu else {"foreach": True}
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    return cls([p for p in params if p.requires_grad], lr=lr, betas=betas, weight_decay=wd, **impl)


def make_scheduler(opt: torch.optim.Optimizer, schedule: dict) -> torch.optim.lr_scheduler.LambdaLR:
    epochs, decay = schedule["epochs"], schedule["decay_epochs"]
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(e, epochs, decay))
