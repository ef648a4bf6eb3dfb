"""The authors' trained HIDA (AiArt-HDU/HIDA, ``_ckpt_epoch_749.ckpt``) mapped onto our generator.

The release is a PyTorch Lightning 0.7 checkpoint of ``SAND_pix_Gen_Parsing``: its
``state_dict`` holds ``Generator.*`` (``SPADEUNet_YPar``) and ``Discrimanator.*``. The mapping is
strict: every key of our generator comes from exactly one released key of the same shape, and
every released generator key is either mapped or dropped by name because the released forward
never reads it:

* each ``SPADEUp`` holds both a transposed conv (``layers``) and a deformable conv (``dcn``);
  up0/up1 run ``dcn``, the others ``layers``;
* up0 (no skip) uses ``fc2`` (depth + style), the others ``fc1`` (+ appearance); up0's ``en_conv``
  and ``metaAcon_en`` are unused;
* ``norm.mlp_shared`` and ``norm.metaAcon`` inside every ``SPADE_Shoutcut`` are unused (gamma and
  beta are computed from the up layer's own shared branch);
* every ``MetaAconC`` carries ``bn1``/``bn2`` that its forward skips.

The released code writes the one-hot style into the condition channels [2, 0, 1] for
Style1/2/3 (``onehot_style_FS2K``); our condition is [depth, Style1, Style2, Style3, A], so the
first conv of every condition branch has its input channels permuted on import.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from facesketch.errors import WeightsError

log = logging.getLogger(__name__)

PREFIX = "Generator."
# released condition channel of Style1, Style2, Style3 (after the depth channel)
STYLE_CHANNELS = (2, 0, 1)
# what the released network is, in our generator's switches (follow: code, hida_full)
RELEASED_SWITCHES = {"arch": "hida", "depth_input": True, "decoder_norm": "dyspade", "encoder_activation": "metaacon",
                     "decoder_activation": "infoacon", "dog": "top2", "depth_head": True, "residual": "code",
                     "depth_pyramid": "nearest", "appearance": True, "style_input": "condition"}
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _acon(ours: str, rel: str, pairs: dict, dropped: list) -> None:
    for k in ("p1", "p2", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):
        pairs[f"{ours}.{k}"] = f"{rel}.{k}"
    dropped += [f"{rel}.{bn}.{k}" for bn in ("bn1", "bn2") for k in _BN]


def _unused_acon(rel: str) -> list[str]:
    """Every key of a MetaAconC the released forward never calls."""
    pairs: dict = {}
    dropped: list = []
    _acon("_", rel, pairs, dropped)
    return list(pairs.values()) + dropped


def _wb(ours: str, rel: str, pairs: dict) -> None:
    pairs[f"{ours}.weight"], pairs[f"{ours}.bias"] = f"{rel}.weight", f"{rel}.bias"


def key_map(n_up: int = 7, dog_layers=(0, 1)) -> tuple[dict[str, str], list[str], set[str]]:
    """(ours -> released key, released keys dropped, our keys whose input channels are permuted)."""
    pairs: dict[str, str] = {}
    dropped: list[str] = []
    permuted: set[str] = set()
    _wb("first_photo", "down_rgb", pairs)
    _wb("first_depth", "down_par", pairs)
    for i in range(n_up):
        _acon(f"downs.{i}.0", f"down{i + 2}.model.0", pairs, dropped)
        _wb(f"downs.{i}.1", f"down{i + 2}.model.1", pairs)
    for k in range(n_up):
        o, r = f"ups.{k}", f"up{k}"
        if k in dog_layers:
            _wb(f"{o}.up", f"{r}.dcn", pairs)
            _wb(f"{o}.up.offset", f"{r}.dcn.conv_offset_mask", pairs)
            dropped += [f"{r}.layers.weight", f"{r}.layers.bias"]
        else:
            _wb(f"{o}.up", f"{r}.layers", pairs)
            dropped += [f"{r}.dcn.{x}" for x in ("weight", "bias", "conv_offset_mask.weight", "conv_offset_mask.bias")]
        used_fc, unused_fc = ("fc2", "fc1") if k == 0 else ("fc1", "fc2")
        _wb(f"{o}.condition.shared", f"{r}.{used_fc}", pairs)
        permuted.add(f"{o}.condition.shared.weight")
        dropped += [f"{r}.{unused_fc}.weight", f"{r}.{unused_fc}.bias"]
        _acon(f"{o}.condition.act", f"{r}.metaAcon", pairs, dropped)
        _wb(f"{o}.condition.heads.theta", f"{r}.fc3", pairs)
        _wb(f"{o}.condition.heads.gamma", f"{r}.norm.mlp_gamma", pairs)
        _wb(f"{o}.condition.heads.beta", f"{r}.norm.mlp_beta", pairs)
        pairs[f"{o}.f_act.p1"], pairs[f"{o}.f_act.p2"] = f"{r}.p1", f"{r}.p2"
        if k == 0:
            dropped += [f"{r}.en_conv.weight", f"{r}.en_conv.bias", *_unused_acon(f"{r}.metaAcon_en")]
        else:
            _wb(f"{o}.appearance.0", f"{r}.en_conv", pairs)
            _acon(f"{o}.appearance.1", f"{r}.metaAcon_en", pairs, dropped)
        dropped += [f"{r}.norm.mlp_shared.0.weight", f"{r}.norm.mlp_shared.0.bias",
                    *_unused_acon(f"{r}.norm.mlp_shared.1"), *_unused_acon(f"{r}.norm.metaAcon")]
    for ours, rel in (("sketch_head", "final_rgb"), ("depth_head", "final_par")):
        _acon(f"{ours}.0", f"{rel}.0", pairs, dropped)
        _wb(f"{ours}.1", f"{rel}.1", pairs)
    return pairs, dropped, permuted


def style_permutation(cin: int) -> list[int]:
    """Released input channel for each of our condition channels [depth, S1, S2, S3, (A)]."""
    return [0] + [1 + c for c in STYLE_CHANNELS] + list(range(4, cin))


def check_spec(spec: dict) -> None:
    g = spec["generator"]
    wrong = {k: g.get(k) for k, v in RELEASED_SWITCHES.items() if g.get(k) != v}
    if wrong:
        raise WeightsError(f"variants.{spec.get('name', '?')}: the released HIDA checkpoint is the full model as the "
                           f"released code builds it ({RELEASED_SWITCHES}); this variant differs in {wrong}")


def convert(released: dict[str, torch.Tensor], generator: nn.Module, where: str = "checkpoint") -> dict:
    """Our generator's state dict from the released ``state_dict`` (``Generator.`` keys; others ignored)."""
    src = {k[len(PREFIX):]: v for k, v in released.items() if k.startswith(PREFIX)}
    if not src:
        raise WeightsError(f"{where}: no '{PREFIX}*' keys: not a checkpoint of the released HIDA "
                           "(SAND_pix_Gen_Parsing)")
    n_up = len(generator.ups)
    dog = tuple(k for k, up in enumerate(generator.ups) if not isinstance(up.up, nn.ConvTranspose2d))
    pairs, dropped, permuted = key_map(n_up, dog)
    target = generator.state_dict()
    if set(pairs) != set(target):
        raise WeightsError(f"{where}: our generator's keys and the mapping differ: "
                           f"{sorted(set(pairs) ^ set(target))[:5]} (has the generator changed?)")
    missing = sorted(r for r in pairs.values() if r not in src)
    unknown = sorted(set(src) - set(pairs.values()) - set(dropped))
    if missing or unknown:
        raise WeightsError(f"{where}: not the released HIDA layout: missing {missing[:5]} ({len(missing)}), "
                           f"unexpected {unknown[:5]} ({len(unknown)})")
    out = {}
    for ours, rel in pairs.items():
        v = src[rel]
        if ours in permuted:
            v = v[:, style_permutation(v.shape[1])]
        if tuple(v.shape) != tuple(target[ours].shape):
            raise WeightsError(f"{where}: {PREFIX}{rel} has shape {tuple(v.shape)}, {ours} needs "
                               f"{tuple(target[ours].shape)}")
        out[ours] = v.to(target[ours].dtype).clone()
    log.info("released HIDA: %d tensors mapped, %d unused ones dropped by name", len(out),
             sum(1 for k in src if k in set(dropped)))
    return out


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a Lightning checkpoint, read with ``weights_only=True``.

    Lightning 0.7 also pickles the run's hyper-parameters (an ``argparse.Namespace``); only that
    class is allowed beside tensors, so the file can still run no code.
    """
    import argparse

    path = Path(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        raise WeightsError(f"{path}: not a readable checkpoint ({e})") from e
    sd = state.get("state_dict", state) if isinstance(state, dict) else None
    if not isinstance(sd, dict):
        raise WeightsError(f"{path}: no state_dict inside")
    return sd


def pretrained_missing(cfg: dict, weights_dir: Path) -> dict[str, str]:
    """{variant: what to do} for the run's variants built from published weights whose file is
    absent: they leave the run and their table rows say where the file goes."""
    from facesketch.config import run_variants
    from facesketch.maps import weights

    return {v: weights.instructions(cfg["resolved"][v]["pretrained"], weights_dir)
            for v in run_variants(cfg)
            if cfg["resolved"][v].get("pretrained")
            and not weights.available(cfg["resolved"][v]["pretrained"], weights_dir)}


def import_released(checkpoint: Path, spec: dict, out: Path) -> Path:
    """Write a facesketch model file (what ``facesketch infer`` loads) from the released checkpoint."""
    import json

    from facesketch.models import registry
    from facesketch.train import checkpoint as ckpt

    check_spec(spec)
    generator = registry.build_generator(spec)
    sd = convert(load_checkpoint(checkpoint), generator, str(checkpoint))
    generator.load_state_dict(sd, strict=True)
    ckpt.save(Path(out), {"spec": json.dumps(spec, sort_keys=True), "spec_hash": ckpt.spec_hash(spec),
                          "epochs": 750, "generators": {"G": generator.state_dict()},
                          "source": f"released HIDA checkpoint {Path(checkpoint).name}"})
    log.info("released HIDA %s -> %s", checkpoint, out)
    return Path(out)
