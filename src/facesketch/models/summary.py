"""Architecture summary: parameters and multiply-accumulates per image of a variant's networks.

MACs are counted with forward hooks on the layers that do the arithmetic (convolutions,
transposed and deformable convolutions, linear layers), at a given input size; normalisation
and activations are left out, as is usual. The throughput benchmark turns these into model
FLOP utilisation (training step ~ 3x the forward pass, 2 FLOPs per MAC).
"""

from __future__ import annotations

import torch
from torch import nn

from facesketch.models.layers import DOGUpsample
from facesketch.models.registry import build, discriminator_channels, sketch_channels


def _conv_macs(module: nn.Module, inputs, output) -> int:
    if isinstance(module, nn.ConvTranspose2d):
        x = inputs[0]
        k = module.kernel_size[0] * module.kernel_size[1]
        return x.numel() // x.shape[0] * module.out_channels * k // module.groups
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0] * module.kernel_size[1]
        return output.numel() // output.shape[0] * (module.in_channels // module.groups) * k
    if isinstance(module, nn.Linear):
        return output.numel() // output.shape[0] * module.in_features
    if isinstance(module, DOGUpsample):  # the deformable conv itself (its offset conv is a Conv2d)
        return output.numel() // output.shape[0] * module.weight.shape[1] * module.k * module.k
    return 0


@torch.no_grad()
def count_macs(net: nn.Module, *args, **kwargs) -> int:
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        total += _conv_macs(module, inputs, output)

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, DOGUpsample))]
    try:
        was_training = net.training
        net.eval()
        net(*args, **kwargs)
        net.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return total


def params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def summarize(variant: dict, size: int | None = None) -> dict[str, dict[str, int]]:
    """{network: {"params": n, "macs": per-image MACs at size x size}} for all of a variant's nets."""
    size = size or variant["input"]["crop"]
    v = dict(variant)
    v["input"] = dict(variant["input"], crop=size)
    nets = build(v)
    x3 = torch.zeros(1, 3, size, size)
    depth = torch.zeros(1, 1, size, size)
    style = torch.eye(3)[:1]
    sc = sketch_channels(variant)
    sketch = torch.zeros(1, sc, size, size)
    out = {}
    for name, net in nets.items():
        if name == "G" or name == "G_A":
            macs = count_macs(net, x3, depth, style)
        elif name == "G_B":
            macs = count_macs(net, sketch, None, None)
        elif name == "D":
            macs = count_macs(net, torch.zeros(1, discriminator_channels(variant), size, size))
        elif name == "D_A":
            macs = count_macs(net, x3)
        else:
            macs = count_macs(net, sketch)
        out[name] = {"params": params(net), "macs": macs}
    return out


def training_flops_per_image(variant: dict, size: int | None = None) -> float:
    """Approximate FLOPs of one training step per image: 2 FLOPs/MAC x 3 (forward + backward)
    for every network run in the step (unpaired: both generators run twice, for the cycle)."""
    s = summarize(variant, size)
    if variant["family"] == "paired":
        macs = s["G"]["macs"] + 2 * s["D"]["macs"]  # D sees the real and the fake pair
    else:
        macs = 2 * (s["G_A"]["macs"] + s["G_B"]["macs"]) + 2 * (s["D_A"]["macs"] + s["D_B"]["macs"])
    return 6.0 * macs


def print_summary(variant: dict, size: int | None = None) -> None:
    size = size or variant["input"]["crop"]
    s = summarize(variant, size)
    print(f"variant {variant.get('name', '?')} ({variant['family']}), input {size}x{size}")
    for name, row in s.items():
        print(f"  {name:4s} params {row['params'] / 1e6:8.2f} M   MACs/image {row['macs'] / 1e9:8.2f} G")
    print(f"  training step ~{training_flops_per_image(variant, size) / 1e9:.1f} GFLOP per image")
