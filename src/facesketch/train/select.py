"""Which checkpoint a run keeps: ``select: final | val | test`` of a variant.

* final: the last epoch (the default);
* val: the best on a held-out part of the training set (``val_fraction``, drawn with the seed,
  excluded from training);
* test: the best on the test set, as the released HIDA code keeps its checkpoints (FID on the test
  set every 25 epochs): optimistic, and the tables say so.

Candidates are scored every ``checkpoint_every`` epochs and at the end, by FID (pytorch-fid's
Inception) or by mean SCOOT when FID's weights are missing; the metric used is written to the run's
``selection.json`` and the model file.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import torch

from facesketch.train.infer import draw

log = logging.getLogger(__name__)


def split_val(tensors: dict[str, torch.Tensor], fraction: float, seed: int):
    """(training tensors, held-out tensors): a seeded ``fraction`` of the pairs, at least one."""
    n = tensors["photo"].shape[0]
    n_val = max(1, int(round(n * fraction)))
    if n_val >= n:
        raise ValueError(f"val_fraction {fraction} leaves no training pairs out of {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    return ({k: v[train_idx] for k, v in tensors.items()}, {k: v[val_idx] for k, v in tensors.items()})


class Selector:
    """Scores the photo->sketch generator on a fixed set and keeps the best generators' weights."""

    def __init__(self, rule: str, tensors: dict[str, torch.Tensor], spec: dict, weights_dir: Path, device,
                 batch_size: int = 8):
        from facesketch.maps import weights

        self.rule, self.tensors, self.spec, self.batch_size = rule, tensors, spec, batch_size
        self.metric = "FID" if weights.available("fid_inception", weights_dir) else "SCOOT"
        self._inception = None
        if self.metric == "FID":
            from facesketch.metrics.networks import load_fid_inception

            self._inception = load_fid_inception(weights_dir).to(device).eval()
        self.device = device
        self._real = None
        self.best: dict | None = None
        self.history: list[dict] = []

    def _drawings(self, gen: torch.nn.Module) -> list[np.ndarray]:
        t = self.tensors
        size = t["photo"].shape[-1]
        out = []
        for s in range(0, t["photo"].shape[0], self.batch_size):
            sl = slice(s, s + self.batch_size)
            depth = t["depth"][sl] if "depth" in t else None
            out += list(draw(gen, self.spec, t["photo"][sl], depth, t["style"][sl], size))
        return out

    def score(self, gen: torch.nn.Module) -> float:
        was = gen.training
        gen.eval()
        fakes = self._drawings(gen)
        gen.train(was)
        reals = [a[0] for a in self.tensors["sketch"].numpy()]
        if self.metric == "SCOOT":
            from facesketch.metrics.scoot import scoot

            return float(np.mean([scoot(f, r) for f, r in zip(fakes, reals)]))
        from facesketch.metrics.fid import fid_from_features, inception_features

        if self._real is None:
            self._real = inception_features(self._inception, reals, self.device)
        return fid_from_features(self._real, inception_features(self._inception, fakes, self.device))

    def better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best["value"] if self.metric == "FID" else value > self.best["value"]

    def update(self, epoch: int, generators: dict[str, torch.nn.Module]) -> None:
        gen = generators["G"] if "G" in generators else generators["G_A"]
        value = self.score(gen)
        self.history.append({"epoch": epoch, self.metric: value})
        if self.better(value):
            self.best = {"epoch": epoch, "value": value,
                         "generators": {k: copy.deepcopy({n: p.detach().cpu() for n, p in g.state_dict().items()})
                                        for k, g in generators.items()}}
        log.info("select %s: epoch %d %s %.4f (best: epoch %d)", self.rule, epoch, self.metric, value,
                 self.best["epoch"])

    def state(self) -> dict:
        return {"best": self.best, "history": self.history}

    def load(self, state: dict) -> None:
        self.best, self.history = state["best"], list(state["history"])

    def summary(self) -> dict:
        return {"rule": self.rule, "metric": self.metric, "set_size": int(self.tensors["photo"].shape[0]),
                "epoch": self.best["epoch"] if self.best else None,
                "value": self.best["value"] if self.best else None, "history": self.history}
