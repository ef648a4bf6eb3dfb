"""Training throughput: the reference code's way against ours, side by side in one run.

Reference way (pix2pix/CycleGAN/HIDA repositories): a CPU DataLoader decoding PNGs and
augmenting them with PIL for every batch, eager fp32, NCHW, per-parameter optimisers, and the
losses read back to the host every step. Ours (facesketch.train): the training set on the
device, augmented there, bf16 autocast, channels_last, fused optimisers, torch.compile, no host
synchronisation inside the step. Both run the same networks and losses (facesketch.train.engine).

For Pix2Pix, HIDA (full) and the attention CycleGAN (edge and normal losses) it prints images per
second of each loop, the ratio, peak GPU memory and the model FLOP utilisation (training FLOPs per
image from the architecture summary, against the GPU's dense bf16 peak). Without a GPU it runs the
same comparison on the CPU at a smaller size.

    python bench/train_throughput.py                    # GPU: 256x256, batch 4 (the papers' settings)
    python bench/train_throughput.py --size 64 --steps 3   # what the tests run on the CPU
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.0}


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def make_data(root: Path, n: int) -> Path:
    """A small FS2K-layout data set: real aligned pairs when FS2K_ARCHIVE is set, else synthetic."""
    from facesketch.data.fs2k import prepare
    from facesketch.maps import encoding

    if (root / "data" / "manifest.parquet").is_file():
        return root / "data"
    archive = os.environ.get("FS2K_ARCHIVE")
    if archive and Path(archive).is_file():
        from facesketch.data.archive import extract

        raw = extract(Path(archive), root / "raw")
        manifest = prepare(raw, root / "data", {"subset": {"per_group": max(2, n // 4), "seed": 0},
                                                "align": {"size": 250, "portrait_top": 0.12}})
    else:
        import sys

        sys.path.insert(0, str(REPO / "tests"))
        from conftest import make_fs2k_tree

        tree = make_fs2k_tree(root / "raw", per_subset=max(2, n // 3))
        manifest = prepare(tree.parent, root / "data", {"align": {"size": 250}}, check_counts=False)
    yy, xx = np.mgrid[0:250, 0:250]
    for r in manifest.itertuples():
        d = np.clip(1 - ((xx - 125) ** 2 + (yy - 120) ** 2) / 9000.0, 0, 1)
        encoding.save_map(root / "data" / "maps", "depth", r.split, r.id, encoding.encode_depth(d))
    return root / "data"


class ReferenceDataset(torch.utils.data.Dataset):
    """What the reference code does per item: open PNGs, PIL resize/pad/crop/flip, to tensors."""

    def __init__(self, data: Path, spec: dict):
        import pandas as pd

        self.data, self.spec = data, spec
        m = pd.read_parquet(data / "manifest.parquet")
        self.rows = m[m.split == "train"].reset_index(drop=True)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        import random

        from facesketch.maps import encoding

        r = self.rows.iloc[i]
        inp = self.spec["input"]
        image, pad, crop = inp["image"], inp["pad"], inp["crop"]
        photo = Image.open(self.data / r.photo).convert("RGB").resize((image, image), Image.Resampling.BICUBIC)
        sketch = Image.open(self.data / r.sketch).convert("L").resize((image, image), Image.Resampling.BICUBIC)
        depth = encoding.decode_depth(Image.open(self.data / "maps" / "depth" / r.split / f"{r.id}.png"))
        depth = Image.fromarray(depth).resize((image, image), Image.Resampling.BILINEAR)
        ox, oy, flip = random.randint(0, 2 * pad + image - crop), random.randint(0, 2 * pad + image - crop), \
            random.random() < 0.5

        def aug(im, fill):
            canvas = Image.new(im.mode, (image + 2 * pad, image + 2 * pad), fill)
            canvas.paste(im, (pad, pad))
            im = canvas.crop((ox, oy, ox + crop, oy + crop))
            return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else im

        p = torch.from_numpy(np.asarray(aug(photo, (0, 0, 0)), dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1
        s = torch.from_numpy(np.asarray(aug(sketch, 0), dtype=np.float32))[None] / 127.5 - 1
        d = torch.from_numpy(np.asarray(aug(depth, 0.0), dtype=np.float32))[None]
        return p, s, d, int(r["style"])


def stand_in_losses(spec: dict, device) -> tuple[dict, str]:
    """The edge and normal losses with random weights of the official networks, when the real
    weights are not installed: the cost per step is the same."""
    import lpips

    from facesketch.maps.dsine import DSINE, NormalPredictor
    from facesketch.maps.hed import HED
    from facesketch.train import losses as L

    nets, notes = {}, []
    if spec["losses"].get("edge"):
        lp = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
        nets["edge"] = L.EdgeLoss(HED().eval(), lp.eval()).to(device)
        notes.append("HED+LPIPS")
    if spec["losses"].get("normal"):
        nets["normal"] = L.NormalLoss(NormalPredictor(DSINE().eval())).to(device)
        notes.append("DSINE")
    for m in nets.values():
        for p in m.parameters():
            p.requires_grad_(False)
    return nets, (f"stand-in weights for {', '.join(notes)}" if notes else "")


def build_engine(spec: dict, device, fast: bool):
    from facesketch.train.engine import Engine, loss_networks

    s = copy.deepcopy(spec)
    try:
        nets, note = loss_networks(s, Path("weights"), device), ""
    except Exception:  # noqa: BLE001 - weights missing: stand-ins of the same cost
        nets, note = stand_in_losses(s, device)
    engine = Engine(s, device, nets, fast_optimizers=fast)
    if fast:
        engine.compile(s["compile"], s["cuda_graphs"])
    return engine, note


def reference_loop(spec, data, device, steps, warmup) -> dict:
    from facesketch.train.data import Batch

    engine, note = build_engine(spec, device, fast=False)
    ds = ReferenceDataset(data, spec)
    loaders = [torch.utils.data.DataLoader(ds, batch_size=spec["batch_size"], shuffle=True, drop_last=True,
                                           num_workers=2, persistent_workers=True) for _ in range(2)]
    iters = [iter(x) for x in loaders]

    def next_batch(k):
        try:
            p, s, d, st = next(iters[k])
        except StopIteration:
            iters[k] = iter(loaders[k])
            p, s, d, st = next(iters[k])
        to = lambda t: t.to(device, non_blocking=False)  # noqa: E731
        return Batch(to(p), to(s), to(d), torch.nn.functional.one_hot(st, 3).float().to(device), st)

    def step():
        losses = engine.step(next_batch(0), next_batch(1))
        return {k: v.item() for k, v in losses.items()}  # the reference logs every step

    return measure(step, engine, spec, device, steps, warmup, note)


def our_loop(spec, data, device, steps, warmup) -> dict:
    from facesketch.train.data import DeviceDataset, load_split

    engine, note = build_engine(spec, device, fast=True)
    _, tensors = load_split(data / "manifest.parquet", data / "maps", "train", spec["input"]["image"], True)
    ds = DeviceDataset(tensors, device, spec["input"]["pad"], spec["input"]["crop"], True, 0)
    engine.pool_generator = ds.generator  # the data set is made after the engine here
    bs = spec["batch_size"]
    state = {"order": ds.permutation(), "i": 0}

    def batch():
        if state["i"] + bs > len(ds):
            state["order"], state["i"] = ds.permutation(), 0
        idx = state["order"][state["i"]:state["i"] + bs]
        state["i"] += bs
        return ds.batch(idx)

    def step():
        return engine.step(batch(), batch())

    return measure(step, engine, spec, device, steps, warmup, note)


def measure(step, engine, spec, device, steps, warmup, note) -> dict:
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        out = step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = time.perf_counter() - t0
    _ = out
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"img_s": steps * spec["batch_size"] / dt, "peak_gib": mem, "note": note}


def main(argv=None) -> list[dict]:
    from facesketch.config import load_config
    from facesketch.models.summary import training_flops_per_image

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cuda = torch.cuda.is_available()
    p.add_argument("--size", type=int, default=256 if cuda else 64)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=50 if cuda else 5)
    p.add_argument("--warmup", type=int, default=10 if cuda else 1)
    p.add_argument("--models", nargs="+", default=["pix2pix", "hida_full", "cyclegan_attn"])
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "facesketch-train-bench")
    args = p.parse_args(argv)
    device = torch.device("cuda" if cuda else "cpu")
    cfg = load_config(REPO / "config.yaml")
    data = make_data(args.workdir, 16)
    peak = peak_tflops(device)
    print(f"device: {torch.cuda.get_device_name(device) if cuda else f'CPU ({os.cpu_count()} cores)'}; "
          f"input {args.size}x{args.size}, batch {args.batch}, {args.steps} timed steps after {args.warmup}")
    rows = []
    for name in args.models:
        spec = copy.deepcopy(cfg["resolved"][name])
        spec["batch_size"] = args.batch
        spec["input"] = {"image": args.size - 6, "pad": max(args.size // 14, 3), "crop": args.size}  # 250/18/256
        ref_spec = dict(spec, precision="fp32", compile=False, channels_last=False)
        ref = reference_loop(ref_spec, data, device, args.steps, args.warmup)
        ours = our_loop(spec, data, device, args.steps, args.warmup)
        flops = training_flops_per_image(spec, args.size)
        row = {"model": name, "reference": ref["img_s"], "ours": ours["img_s"], "ratio": ours["img_s"] / ref["img_s"],
               "ref_mem": ref["peak_gib"], "our_mem": ours["peak_gib"],
               "mfu": ours["img_s"] * flops / (peak * 1e12) if peak else float("nan"), "note": ours["note"]}
        rows.append(row)
        print(f"{name:14s} reference {row['reference']:8.2f} img/s | ours {row['ours']:8.2f} img/s | "
              f"x{row['ratio']:.2f} | peak mem {row['ref_mem']:.1f} / {row['our_mem']:.1f} GiB | "
              f"MFU {row['mfu']:.1%} ({flops / 1e9:.0f} GFLOP/img) {row['note']}")
    return rows


if __name__ == "__main__":
    main()
