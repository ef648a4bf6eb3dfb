"""Networks picked by name from a variant's config: the only place that maps config to modules.

Each architecture name maps to a class (as detectron2's registry does) that is built by keyword
from the variant's ``generator`` / ``discriminator`` block. The switches a block may set are the
class's keyword-only constructor arguments, read from its signature, and their defaults live
there only; a switch the class does not have is a configuration error naming it, so that a
variant cannot silently differ from what its config says.
"""

from __future__ import annotations

import inspect
import json
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from facesketch.errors import ConfigError
from facesketch.models import discriminators as D
from facesketch.models import generators as G

GENERATORS: dict[str, type[nn.Module]] = {
    "unet": G.UNet,
    "hida": G.HIDAGenerator,
    "pix2pixhd_global": G.GlobalGenerator,
    "resnet": G.ResnetGenerator,
    "attention_resnet": G.AttentionResnetGenerator,
}
DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "patchgan": D.PatchGAN,
    "hida": D.HIDADiscriminator,
    "multiscale": D.MultiScale,
}
# keys of a block that the variant (not the class) uses: which class, and what it connects to
GENERATOR_VARIANT_KEYS = {"arch", "out_channels"}
DISCRIMINATOR_VARIANT_KEYS = {"arch", "inputs"}
DEFAULT_DISCRIMINATOR = {"arch": "patchgan", "inputs": ["photo", "sketch"]}
CHANNELS = {"photo": 3, "depth": 1}


def switches(cls: type) -> dict[str, Any]:
    """The switches of a network class (its keyword-only constructor arguments) and their defaults."""
    return {n: p.default for n, p in inspect.signature(cls).parameters.items() if p.kind is p.KEYWORD_ONLY}


def _construct(kind: str, table: dict, block: dict, own: set[str], where: str, **context) -> nn.Module:
    """``table[block.arch](**context it takes, **switches of block)``; errors name ``where``."""
    arch = block.get("arch")
    if arch not in table:
        raise ConfigError(f"{where}.arch: {arch!r} is not one of {', '.join(table)}")
    cls = table[arch]
    allowed = switches(cls)
    extra = set(block) - set(allowed) - own
    if extra:
        raise ConfigError(f"{where}: {', '.join(sorted(extra))} not a switch of {kind} {arch!r} "
                          f"(it has: {', '.join(sorted(allowed))})")
    params = inspect.signature(cls).parameters
    given = {k: v for k, v in context.items() if k in params}
    try:
        return cls(**given, **{k: v for k, v in block.items() if k in allowed})
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from e


def sketch_channels(variant: dict) -> int:
    """Channels of a drawn sketch: generator.out_channels, else 1 (paired) or 3 (unpaired, as CycleGAN)."""
    default = 3 if variant["family"] == "unpaired" else 1
    return variant["generator"].get("out_channels", default)


def discriminator_block(variant: dict) -> dict:
    return {**DEFAULT_DISCRIMINATOR, **(variant.get("discriminator") or {})}


def discriminator_inputs(variant: dict) -> list[str]:
    """What a paired variant's discriminator sees, concatenated in this order (the sketch last)."""
    return list(discriminator_block(variant)["inputs"])


def build_generator(variant: dict, cin: int | None = None, cout: int | None = None) -> nn.Module:
    name = variant.get("name", "?")
    cin = 3 if cin is None else cin
    cout = sketch_channels(variant) if cout is None else cout
    return _construct("generator", GENERATORS, variant["generator"], GENERATOR_VARIANT_KEYS,
                      f"variants.{name}.generator", cin=cin, cout=cout, crop=variant["input"]["crop"])


def discriminator_channels(variant: dict) -> int:
    return sum(CHANNELS.get(i, sketch_channels(variant)) for i in discriminator_inputs(variant))


def build_discriminator(variant: dict, cin: int | None = None) -> nn.Module:
    name = variant.get("name", "?")
    cin = discriminator_channels(variant) if cin is None else cin
    return _construct("discriminator", DISCRIMINATORS, discriminator_block(variant), DISCRIMINATOR_VARIANT_KEYS,
                      f"variants.{name}.discriminator", cin=cin)


def generator_reads(variant: dict) -> tuple[bool, bool]:
    """(reads depth, reads style) of a variant's photo-to-sketch generator, asked of the network
    itself (built without memory on the meta device), so no switch is interpreted twice."""
    keys = ("name", "family", "generator", "input")
    return _generator_reads(json.dumps({k: variant[k] for k in keys if k in variant}, sort_keys=True))


@lru_cache(maxsize=256)
def _generator_reads(variant_json: str) -> tuple[bool, bool]:
    with torch.device("meta"):
        g = build_generator(json.loads(variant_json))
    return g.reads_depth, g.reads_style


def needs_depth(variant: dict) -> bool:
    """Whether training or drawing with this variant reads depth maps: its generator takes depth,
    its discriminator sees it, or the geometric loss compares against it."""
    return (generator_reads(variant)[0] or "depth" in discriminator_inputs(variant)
            or bool(variant["losses"].get("geometric", {}).get("weight")))


def style_aware(variant: dict) -> bool:
    """Whether the variant draws in a style it is asked for (else one style for every request)."""
    return generator_reads(variant)[1]


def build(variant: dict) -> dict[str, nn.Module]:
    """All networks of a variant: {G, D} (paired) or {G_A, G_B, D_A, D_B} (unpaired)."""
    if variant["family"] == "paired":
        return {"G": build_generator(variant), "D": build_discriminator(variant)}
    sc = sketch_channels(variant)
    if variant["generator"].get("arch") in ("hida", "unet"):
        raise ConfigError(f"variants.{variant.get('name')}: unpaired variants use resnet or attention_resnet")
    return {
        "G_A": build_generator(variant, 3, sc),
        "G_B": build_generator(variant, sc, 3),
        "D_A": build_discriminator(variant, 3),
        "D_B": build_discriminator(variant, sc),
    }


def init_weights(net: nn.Module, gain: float = 0.02) -> None:
    """pix2pix's normal(0, 0.02) init for convs, N(1, 0.02) for norm scales; layers that define
    their own start (zero-initialised DOG offsets, ACON's p1/p2) are left alone."""
    from facesketch.models.layers import DOGUpsample

    skip = set()
    for m in net.modules():
        if isinstance(m, DOGUpsample):
            skip.add(id(m.offset))
    for m in net.modules():
        if id(m) in skip:
            continue
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(getattr(m, "weight_orig", m.weight), 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
