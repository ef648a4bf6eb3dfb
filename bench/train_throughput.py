"""Training throughput: the reference code's way against ours, side by side in one run.

Reference way (pix2pix/CycleGAN/HIDA repositories): a CPU DataLoader decoding PNGs and
augmenting them with PIL for every batch, eager fp32 (torch's default TF32 settings), NCHW,
per-parameter optimisers, and the losses read back to the host every step. Ours
(facesketch.train): the training set on the device, augmented there, channels_last, fused
optimisers, torch.compile, no host synchronisation inside the step; once in fp32 (with TF32
matmuls and convolutions, as training sets them) and once in bf16 autocast. All three run the
same networks and losses (facesketch.train.engine).

For Pix2Pix, HIDA (full) and the attention CycleGAN (edge and normal losses) it prints images per
second of each loop, the ratios to the reference, peak GPU memory and the model FLOP utilisation
of the bf16 loop (training FLOPs per image from the architecture summary, against the GPU's
dense bf16 peak); then a short bf16-vs-fp32 loss-curve comparison (same initial weights, same
batches) so a user sees what bf16 changes. Without a GPU it runs the same comparison on the CPU at
a smaller size (in fp32 unless --cpu-recipe).

    python bench/train_throughput.py                    # GPU: 256x256, batch 4 (the papers' settings)
    python bench/train_throughput.py --size 32 --steps 1 --cpu-recipe --no-compile   # the CPU test
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


def peak_tflops(device: torch.device, precision: str) -> float | None:
    from facesketch.gpu_check import peak_tflops as peak

    return peak(device, precision)


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


def build_engine(spec: dict, device, fast: bool, recipe_on_cpu: bool = False):
    """Real loss-network weights when installed, random-weight stand-ins of the same cost otherwise."""
    from facesketch.train.probe import build_engine as build

    engine, note = build(spec, device, Path("weights"), recipe=fast and recipe_on_cpu, fast_optimizers=fast)
    if fast:
        engine.compile(spec.get("compile", False), spec.get("cuda_graphs", False))
    return engine, note


def set_tf32(device, on: bool) -> None:
    """Ours: TF32 matmuls and convolutions and cuDNN autotuning, as facesketch.train.run sets them;
    the reference: torch's defaults (TF32 convolutions, fp32 matmuls, no autotuning)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = on


def reference_loop(spec, data, device, steps, warmup) -> dict:
    from facesketch.train.data import Batch

    set_tf32(device, False)
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


def device_batches(spec, data, device):
    from facesketch.train.data import DeviceDataset, load_split

    _, tensors = load_split(data / "manifest.parquet", data / "maps", "train", spec["input"]["image"], True)
    ds = DeviceDataset(tensors, device, spec["input"]["pad"], spec["input"]["crop"], True, 0)
    bs = spec["batch_size"]
    state = {"order": ds.permutation(), "i": 0}

    def batch():
        if state["i"] + bs > len(ds):
            state["order"], state["i"] = ds.permutation(), 0
        idx = state["order"][state["i"]:state["i"] + bs]
        state["i"] += bs
        return ds.batch(idx)

    return ds, batch


def our_loop(spec, data, device, steps, warmup, recipe_on_cpu=False) -> dict:
    set_tf32(device, True)
    engine, note = build_engine(spec, device, fast=True, recipe_on_cpu=recipe_on_cpu)
    ds, batch = device_batches(spec, data, device)
    engine.pool_generator = ds.generator
    if engine.compiled:
        engine.warm_up(batch(), batch())

    def step():
        return engine.step(batch(), batch())

    out = measure(step, engine, spec, device, steps, warmup, note)
    out["precision"], out["compiled"] = engine.precision.kind, engine.compiled
    return out


def loss_curves(spec, data, device, steps, recipe_on_cpu=False) -> dict[str, np.ndarray]:
    """Per-step losses of ``steps`` training steps in fp32 and in bf16, from the same initial
    weights and the same batches: {loss: (steps, 2) array}."""
    curves = {}
    init = None
    for col, precision in enumerate(("fp32", "bf16")):
        s = dict(spec, precision=precision)
        set_tf32(device, True)
        torch.manual_seed(0)
        engine, _ = build_engine(s, device, fast=True, recipe_on_cpu=recipe_on_cpu)
        if init is None:
            init = {k: copy.deepcopy(v.state_dict()) for k, v in engine.nets.items()}
        for k, v in engine.nets.items():
            v.load_state_dict(init[k])
        ds, batch = device_batches(s, data, device)
        engine.pool_generator = ds.generator
        rows = [engine.step(batch(), batch()) for _ in range(steps)]
        for k in rows[0]:
            curves.setdefault(k, np.zeros((steps, 2)))[:, col] = [float(r[k]) for r in rows]
    return curves


def print_curves(name: str, curves: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean of each loss over the last half of the run, fp32 against bf16, and the relative gap."""
    out = {}
    for k, c in curves.items():
        tail = c[len(c) // 2:].mean(0)
        gap = abs(tail[1] - tail[0]) / max(abs(tail[0]), 1e-8)
        out[k] = gap
        print(f"    {name:14s} {k:12s} fp32 {tail[0]:9.4f}  bf16 {tail[1]:9.4f}  gap {gap:6.1%}")
    return out


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
    p.add_argument("--curve-steps", type=int, default=200 if cuda else 6,
                   help="training steps of the bf16-vs-fp32 loss-curve comparison (0: skip)")
    p.add_argument("--models", nargs="+", default=["pix2pix", "hida_full", "cyclegan_attn"])
    p.add_argument("--cpu-recipe", action="store_true",
                   help="without a GPU, run our loops with the GPU recipe (bf16 autocast, channels_last, fused "
                        "Adam) on the CPU; otherwise the CPU trains in fp32 and both 'ours' columns are fp32")
    p.add_argument("--no-compile", action="store_true", help="our loops without torch.compile")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "facesketch-train-bench")
    args = p.parse_args(argv)
    device = torch.device("cuda" if cuda else "cpu")
    cfg = load_config(REPO / "config.yaml")
    data = make_data(args.workdir, 16)
    print(f"device: {torch.cuda.get_device_name(device) if cuda else f'CPU ({os.cpu_count()} cores)'}; "
          f"input {args.size}x{args.size}, batch {args.batch}, {args.steps} timed steps after {args.warmup}; "
          "ours in fp32 (TF32 on GPUs) and in bf16, the reference in fp32")
    rows = []
    for name in args.models:
        spec = copy.deepcopy(cfg["resolved"][name])
        spec["batch_size"] = args.batch
        spec["input"] = {"image": args.size - 6, "pad": max(args.size // 14, 3), "crop": args.size}  # 250/18/256
        if args.no_compile:
            spec["compile"] = False
        ref_spec = dict(spec, precision="fp32", compile=False, channels_last=False)
        ref = reference_loop(ref_spec, data, device, args.steps, args.warmup)
        fp32 = our_loop(dict(spec, precision="fp32"), data, device, args.steps, args.warmup, args.cpu_recipe)
        bf16 = our_loop(dict(spec, precision="bf16"), data, device, args.steps, args.warmup, args.cpu_recipe)
        flops = training_flops_per_image(spec, args.size)
        peak = {k: peak_tflops(device, k) for k in ("fp32", "bf16")}
        row = {"model": name, "reference": ref["img_s"], "ours_fp32": fp32["img_s"], "ours_bf16": bf16["img_s"],
               "ratio_fp32": fp32["img_s"] / ref["img_s"], "ratio_bf16": bf16["img_s"] / ref["img_s"],
               "ref_mem": ref["peak_gib"], "fp32_mem": fp32["peak_gib"], "bf16_mem": bf16["peak_gib"],
               "precision": (fp32["precision"], bf16["precision"]), "compiled": bf16["compiled"],
               "mfu_bf16": bf16["img_s"] * flops / (peak["bf16"] * 1e12) if peak["bf16"] else float("nan"),
               "note": bf16["note"]}
        rows.append(row)
        print(f"{name:14s} reference {row['reference']:8.2f} img/s | ours {fp32['precision']}"
              f"{'/TF32' if cuda else ''} {row['ours_fp32']:8.2f} img/s x{row['ratio_fp32']:.2f} | ours "
              f"{bf16['precision']} {row['ours_bf16']:8.2f} img/s x{row['ratio_bf16']:.2f} | peak mem "
              f"{row['ref_mem']:.1f} / {row['fp32_mem']:.1f} / {row['bf16_mem']:.1f} GiB | MFU(bf16) "
              f"{row['mfu_bf16']:.1%} ({flops / 1e9:.0f} GFLOP/img) {row['note']}")
    if args.curve_steps:
        print(f"bf16 against fp32: losses over {args.curve_steps} training steps from the same weights and "
              f"batches (mean of the last half){'' if cuda or args.cpu_recipe else '; the CPU trains in fp32 only'}")
        for row in rows:
            spec = copy.deepcopy(cfg["resolved"][row["model"]])
            spec["batch_size"] = args.batch
            spec["input"] = {"image": args.size - 6, "pad": max(args.size // 14, 3), "crop": args.size}
            spec["compile"] = False  # the curves compare numerics, not speed
            row["curve_gap"] = print_curves(row["model"], loss_curves(spec, data, device, args.curve_steps,
                                                                      args.cpu_recipe))
    return rows


if __name__ == "__main__":
    main()
