"""Networks picked by name from a variant's config: the only place that maps config to modules.

A switch that an architecture does not have is a configuration error naming it, so that a
variant cannot silently differ from what its config says.
"""

from __future__ import annotations

import math

from torch import nn

from facesketch.errors import ConfigError
from facesketch.models import discriminators as D
from facesketch.models import generators as G

GENERATOR_KEYS = {
    "unet": {"ngf", "num_downs", "norm", "dropout", "style_input", "out_channels"},
    "hida": {"ngf", "num_downs", "depth_input", "decoder_norm", "encoder_activation", "decoder_activation",
             "dog", "depth_head", "residual", "depth_pyramid", "appearance", "style_input", "out_channels"},
    "pix2pixhd_global": {"ngf", "n_downsampling", "n_blocks", "norm", "style_input", "out_channels"},
    "resnet": {"ngf", "n_downsampling", "n_blocks", "norm", "style_input", "out_channels"},
    "attention_resnet": {"ngf", "n_blocks", "n_content", "norm", "out_channels"},
}
DISCRIMINATOR_KEYS = {
    "patchgan": {"ndf", "n_layers", "norm", "inputs"},
    "hida": {"ndf", "n_layers", "norm", "inputs"},
    "multiscale": {"ndf", "n_layers", "num_d", "norm", "inputs"},
}
CHANNELS = {"photo": 3, "depth": 1}


def _check_keys(kind: str, spec: dict, allowed: dict, where: str) -> str:
    arch = spec.get("arch")
    if arch not in allowed:
        raise ConfigError(f"{where}.arch: {arch!r} is not one of {', '.join(allowed)}")
    extra = set(spec) - allowed[arch] - {"arch"}
    if extra:
        raise ConfigError(f"{where}: {', '.join(sorted(extra))} not a switch of {kind} {arch!r} "
                          f"(it has: {', '.join(sorted(allowed[arch]))})")
    return arch


def num_downs(spec: dict, crop: int) -> int:
    n = spec.get("num_downs")
    if n is not None:
        if crop % (2 ** n):
            raise ConfigError(f"generator.num_downs {n} does not divide input.crop {crop}")
        return n
    n = int(round(math.log2(crop)))
    if 2 ** n != crop:
        raise ConfigError(f"input.crop {crop} is not a power of two; set generator.num_downs")
    return n


def sketch_channels(variant: dict) -> int:
    g = variant["generator"]
    default = 3 if variant["family"] == "unpaired" else 1
    return g.get("out_channels", default)


def uses_depth(variant: dict) -> bool:
    g, d = variant["generator"], variant.get("discriminator", {})
    return bool(g.get("depth_input")) or "depth" in d.get("inputs", [])


def style_channels(variant: dict) -> int:
    return 3 if variant["generator"].get("style_input", "none") == "channels" else 0


def build_generator(variant: dict, cin: int | None = None, cout: int | None = None) -> nn.Module:
    g = dict(variant["generator"])
    name = variant.get("name", "?")
    arch = _check_keys("generator", g, GENERATOR_KEYS, f"variants.{name}.generator")
    cin = 3 if cin is None else cin
    cout = sketch_channels(variant) if cout is None else cout
    ngf = g.get("ngf", 64)
    crop = variant["input"]["crop"]
    try:
        if arch == "unet":
            return G.UNet(cin, cout, ngf, num_downs(g, crop), g.get("norm", "batch"), g.get("dropout", True),
                          style_channels(variant))
        if arch == "hida":
            if cin != 3:
                raise ConfigError(f"variants.{name}: HIDA generators draw sketches from photos only")
            return G.HIDAGenerator(
                ngf, num_downs(g, crop), g.get("depth_input", True), g.get("decoder_norm", "dyspade"),
                g.get("encoder_activation", "metaacon"), g.get("decoder_activation", "infoacon"),
                g.get("dog", "top2"), g.get("depth_head", True), g.get("residual", "paper"),
                g.get("depth_pyramid", "gaussian"), g.get("appearance", True), g.get("style_input", "condition"),
                cout)
        if arch in ("resnet", "pix2pixhd_global"):
            n_down = g.get("n_downsampling", 2 if arch == "resnet" else 4)
            if crop % (2 ** n_down):
                raise ConfigError(f"variants.{name}: input.crop {crop} is not divisible by 2^{n_down}")
            return G.ResnetGenerator(cin, cout, ngf, n_down, g.get("n_blocks", 9), g.get("norm", "instance"),
                                     style_channels(variant))
        return G.AttentionResnetGenerator(cin, cout, ngf, g.get("n_blocks", 9), g.get("n_content", 9),
                                          g.get("norm", "instance"))
    except ValueError as e:
        raise ConfigError(f"variants.{name}.generator: {e}") from e


def discriminator_channels(variant: dict) -> int:
    inputs = variant.get("discriminator", {}).get("inputs", ["photo", "sketch"])
    return sum(CHANNELS.get(i, sketch_channels(variant)) for i in inputs)


def build_discriminator(variant: dict, cin: int | None = None) -> nn.Module:
    d = dict(variant.get("discriminator") or {})
    d.setdefault("arch", "patchgan")
    name = variant.get("name", "?")
    arch = _check_keys("discriminator", d, DISCRIMINATOR_KEYS, f"variants.{name}.discriminator")
    cin = discriminator_channels(variant) if cin is None else cin
    ndf, n_layers, norm = d.get("ndf", 64), d.get("n_layers", 3), d.get("norm", "batch")
    if arch == "patchgan":
        return D.PatchGAN(cin, ndf, n_layers, norm)
    if arch == "hida":
        return D.HIDADiscriminator(cin, ndf, n_layers, norm)
    return D.MultiScale(cin, ndf, n_layers, d.get("num_d", 2), norm)


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
