"""``facesketch train``: one variant, one seed, from config to ``model.pt``. Reads top to bottom.

The run folder holds ``last.pt`` (the resume checkpoint, every ``checkpoint_every`` epochs and
at the end), ``losses.csv`` (per-epoch means, images/s), ``samples/epoch_NNNN.png`` (photo,
ground truth and a drawing per style for fixed test photos) and, when training has finished,
``model.pt`` (the generators and the spec: what inference loads). Rerunning resumes from
``last.pt`` if it was written for the same spec.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pandas as pd
import torch

from facesketch import STYLES
from facesketch.config import style_aware
from facesketch.data.fs2k import load_manifest
from facesketch.device import pick
from facesketch.errors import DataError
from facesketch.fileio import write_text
from facesketch.models import registry
from facesketch.progress import progress
from facesketch.report.grid import save_grid
from facesketch.runlock import run_lock
from facesketch.train import checkpoint as ckpt
from facesketch.train.data import DeviceDataset, load_split
from facesketch.train.engine import Engine, loss_networks
from facesketch.train.infer import draw
from facesketch.train.select import Selector, split_val

log = logging.getLogger(__name__)
LOG_EVERY = 20  # steps between progress-bar updates (each reads the losses back from the GPU)


def _sample_ids(manifest_path: Path, k: int = 4) -> list[str]:
    test = load_manifest(manifest_path, "test")
    if test.empty:
        return []
    ids = []
    for s in range(3):
        ids += sorted(test[test["style"] == s].id)[:2]
    return ids[:k]


def _write_samples(engine: Engine, spec: dict, samples, path: Path) -> None:
    rows_meta, tensors = samples
    gen = engine.nets["G"] if "G" in engine.nets else engine.nets["G_A"]
    was = gen.training
    gen.eval()
    size = tensors["photo"].shape[-1]
    styles = range(3) if style_aware(spec) else [None]
    rows = []
    for i in range(len(rows_meta)):
        row = [tensors["photo"][i].permute(1, 2, 0).numpy(), tensors["sketch"][i, 0].numpy()]
        for s in styles:
            st = torch.tensor([rows_meta["style"].iloc[i] if s is None else s])
            depth = tensors["depth"][i:i + 1] if "depth" in tensors else None
            row.append(draw(gen, spec, tensors["photo"][i:i + 1], depth, st, size)[0])
        rows.append(row)
    gen.train(was)
    cols = ["photo", "ground truth"] + ([f"as {s}" for s in STYLES] if style_aware(spec) else ["drawn"])
    save_grid(path, rows, col_titles=cols, row_titles=[STYLES[s] for s in rows_meta["style"]],
              title=path.stem.replace("_", " "))


def train(spec: dict, manifest: Path, maps: Path, out: Path, seed: int = 0, weights_dir: Path = Path("weights"),
          device: str = "auto", done: Path | None = None) -> Path:
    with run_lock(Path(out), "training run folder"):  # refuses while another trainer (even an orphan) writes here
        return _train(spec, manifest, maps, out, seed, weights_dir, device, done)


def _train(spec: dict, manifest: Path, maps: Path, out: Path, seed: int, weights_dir: Path, device: str,
           done: Path | None) -> Path:
    name = spec.get("name", "variant")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    final = done or out / "model.pt"
    if spec.get("pretrained"):  # published weights (the released HIDA): imported, not trained
        from facesketch.maps.weights import require
        from facesketch.models.released_hida import import_released

        return import_released(require(spec["pretrained"], weights_dir), spec, final)
    dev = pick(device)
    torch.manual_seed(seed)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    # --- data on the device
    inp, bs = spec["input"], spec["batch_size"]
    with_depth = registry.needs_depth(spec)
    _, tensors = load_split(manifest, maps, "train", inp["image"], with_depth)
    rule, select_set = spec["select"], None  # facesketch.train.select
    if rule == "val":
        tensors, select_set = split_val(tensors, spec["val_fraction"], seed)
    elif rule == "test":
        select_set = load_split(manifest, maps, "test", inp["image"], with_depth)[1]
    ds = DeviceDataset(tensors, dev, inp["pad"], inp["crop"], spec["augment"]["flip"], seed)
    if len(ds) < bs:
        raise DataError(f"{name}: {len(ds)} training pairs, fewer than batch_size {bs}")
    sample_ids = _sample_ids(manifest)
    samples = load_split(manifest, maps, "test", None, with_depth, ids=sample_ids) if sample_ids else None

    # --- networks, optimisers; resume if a checkpoint of this spec exists
    engine = Engine(spec, dev, loss_networks(spec, weights_dir, dev), pool_generator=ds.generator)
    selector = Selector(rule, select_set, spec, weights_dir, dev) if select_set is not None else None
    digest = ckpt.spec_hash(spec)
    last = out / "last.pt"
    start, history, step = 0, [], 0
    state = ckpt.load_resume(last, map_location=dev)
    if state is not None:
        if state.get("spec_hash") == digest:
            engine.load_state(state["engine"])
            ds.set_state(state["data_rng"].cpu())
            ckpt.set_rng_state({k: v.cpu() for k, v in state["rng"].items()}, dev)
            start, history, step = state["epoch"], list(state["history"]), state["step"]
            if selector is not None and state.get("selection"):
                selector.load(state["selection"])
            log.info("%s: resuming after epoch %d of %d from %s", name, start, spec["schedule"]["epochs"], last)
        else:
            stale = ckpt.set_aside_stale(last)
            log.warning("%s: %s belongs to another spec; kept as %s, training from scratch", name, last, stale)
    engine.compile(spec["compile"], spec["cuda_graphs"])

    epochs = spec["schedule"]["epochs"]
    max_steps = spec["max_steps_per_epoch"]
    steps_per_epoch = min(len(ds) // bs, max_steps or len(ds))
    if start < epochs and engine.compiled:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            g_state = ds.state()
            probe = ds.batch(torch.arange(bs, device=dev))
            engine.warm_up(probe, probe)
            ds.set_state(g_state)

    tb = _tensorboard(out)
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        order_b = ds.permutation() if not engine.paired else None
        bar = progress(total=steps_per_epoch, desc=f"{name} s{seed} epoch {epoch + 1}/{epochs}", unit="step")
        for i, batch in enumerate(ds.epoch(bs, max_steps)):
            batch_b = ds.batch(order_b[i * bs:(i + 1) * bs]) if order_b is not None else None
            losses = engine.step(batch, batch_b)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0) + v
            step += 1
            ckpt.kill_hook("FACESKETCH_KILL_AFTER_STEPS", step)
            bar.update()
            if (i + 1) % LOG_EVERY == 0:
                rate = (i + 1) * bs / (time.perf_counter() - t0)
                bar.set_postfix({k: f"{(v / (i + 1)).item():.3f}" for k, v in sums.items()} | {"img/s": f"{rate:.1f}"},
                                refresh=False)
        lr_g = engine.opt_g.param_groups[0]["lr"]  # the rate this epoch trained with
        for s in engine.sched:
            s.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "step": step, **{k: float((v / steps_per_epoch).item()) for k, v in sums.items()},
               "lr_g": lr_g, "images_per_s": steps_per_epoch * bs / seconds,
               "seconds": seconds}
        bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k.startswith(("G", "D"))} |
                        {"img/s": f"{row['images_per_s']:.1f}"})
        bar.close()
        history.append(row)
        write_text(out / "losses.csv", pd.DataFrame(history).to_csv(index=False))
        if tb is not None:
            for k, v in row.items():
                if k not in ("epoch", "step"):
                    tb.add_scalar(k, v, epoch + 1)
        is_last = epoch + 1 == epochs
        if samples is not None and ((epoch + 1) % spec["sample_every"] == 0 or is_last):
            _write_samples(engine, spec, samples, out / "samples" / f"epoch_{epoch + 1:04d}.png")
        if (epoch + 1) % spec["checkpoint_every"] == 0 or is_last:
            if selector is not None:
                selector.update(epoch + 1, engine.generators())
            ckpt.save(last, {"epoch": epoch + 1, "step": step, "history": history, "spec_hash": digest,
                             "engine": engine.state(), "data_rng": ds.state(), "rng": ckpt.rng_state(dev),
                             "selection": selector.state() if selector is not None else None},
                      keep_previous=True)
    generators = {k: v.state_dict() for k, v in engine.generators().items()}
    selection = {"rule": "final", "epoch": epochs}
    if selector is not None and selector.best is not None:
        generators, selection = selector.best["generators"], selector.summary()
        write_text(out / "selection.json", json.dumps(selection, indent=1))
    ckpt.save(final, {"spec": json.dumps(spec, sort_keys=True), "spec_hash": digest, "epochs": epochs,
                      "generators": generators, "selection": json.dumps(selection)})
    log.info("%s seed %d: trained %d epochs -> %s", name, seed, epochs, final)
    return final


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # noqa: BLE001 - tensorboard is optional
        return None
    return SummaryWriter(str(out / "tensorboard"))
