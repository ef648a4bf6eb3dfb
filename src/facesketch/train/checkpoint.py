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
import os
from pathlib import Path

import torch

from facesketch.errors import DataError
from facesketch.fileio import atomic_path
from facesketch.torchio import safe_load

log = logging.getLogger(__name__)

# keys of a variant that change what training computes (not where it logs or how often)
_IRRELEVANT = {"description", "name", "checkpoint_every", "sample_every"}


def spec_hash(spec: dict) -> str:
    relevant = {k: v for k, v in spec.items() if k not in _IRRELEVANT}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def save(path: Path, state: dict, keep_previous: bool = False) -> None:
    """Write atomically; ``keep_previous`` first moves the old file to ``previous(path)`` (the
    fallback when the new one turns out unreadable: a bad disk, a copy cut short)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        if keep_previous and path.exists():
            os.replace(path, previous(path))


def load(path: Path, map_location="cpu") -> dict:
    return safe_load(path, DataError, "facesketch checkpoint", map_location=map_location)


def previous(path: Path) -> Path:
    return Path(path).with_name(Path(path).stem + ".prev.pt")


def load_resume(path: Path, map_location="cpu") -> dict | None:
    """The resume checkpoint, falling back to the previous one (saying so) when it is unreadable;
    None when there is neither. An unreadable one with no fallback is an error that says to delete it."""
    path, prev = Path(path), previous(path)
    if path.exists():
        try:
            return load(path, map_location)
        except DataError as e:
            if not prev.is_file():
                raise DataError(f"{e}. Delete it to train this run from scratch (rm {path})") from None
            bad = path.with_name(path.stem + ".bad.pt")
            os.replace(path, bad)
            state = _load_previous(prev, map_location, also=path)
            log.warning("%s is unreadable (%s); kept as %s. Resuming from the previous checkpoint %s (epoch %s)",
                        path, e, bad, prev, state.get("epoch"))
            return state
    if prev.is_file():  # killed between keeping the previous one and renaming the new one
        state = _load_previous(prev, map_location, also=path)
        log.warning("%s is missing; resuming from the previous checkpoint %s (epoch %s)", path, prev,
                    state.get("epoch"))
        return state
    return None


def kill_hook(variable: str, count: int) -> None:
    """Tests simulate a kill -9 when ``count`` (steps, epochs) reaches the value of the environment
    variable ``variable``: no clean-up runs, like a real kill."""
    at = os.environ.get(variable)
    if at and count == int(at):
        os._exit(137)


def set_aside_stale(path: Path) -> Path:
    """A resume checkpoint of another spec: kept as ``last.stale.pt`` (never resumed, never deleted
    unseen), its previous one dropped, so the run trains from scratch. Returns the kept file."""
    path = Path(path)
    stale = path.with_name(path.stem + ".stale.pt")
    os.replace(path if path.exists() else previous(path), stale)
    previous(path).unlink(missing_ok=True)
    return stale


def _load_previous(prev: Path, map_location, also: Path) -> dict:
    try:
        return load(prev, map_location)
    except DataError as e:
        raise DataError(f"{e}; {also.name} is unreadable too. Delete both to train this run from scratch "
                        f"(rm {also.parent}/{also.stem}*.pt)") from None


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
