"""Checkpoints: written atomically, loaded with ``weights_only=True``.

A resume checkpoint holds everything an unbroken run would have in memory at an epoch boundary:
networks, optimisers, schedulers, the gradient scaler, image pools, every random generator and
the epoch, so a killed and resumed run ends with the same weights (bitwise on the CPU). It also
holds the hash of the variant spec: a checkpoint of a different spec is never resumed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from facesketch.errors import DataError
from facesketch.fileio import atomic_path

log = logging.getLogger(__name__)

# keys of a variant that change what training computes (not where it logs or how often)
_IRRELEVANT = {"description", "name", "checkpoint_every", "sample_every"}


def spec_hash(spec: dict) -> str:
    relevant = {k: v for k, v in spec.items() if k not in _IRRELEVANT}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def save(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load(path: Path, map_location="cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        raise DataError(f"{path}: not a readable facesketch checkpoint ({e})") from e


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
