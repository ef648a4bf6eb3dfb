"""``facesketch gpu-check``: what this machine is, how fast it trains every variant of a config,
and what the full reproduction will cost in GPU-hours.

For each variant: the networks are built with the training recipe (compile, channels_last,
bf16 autocast, fused optimisers), one warm-up step compiles the graphs (timed: the compile
time), then timed steps at the variant's own batch size and resolution give images/s, peak
memory and the model FLOP utilisation (MFU: training FLOPs per image from the architecture's
multiply-accumulates, ``facesketch summary``, against the GPU's dense peak). The time per step
times the variant's schedule (epochs x steps per epoch x seeds) is its projected wall time.
The total GPU-hours are then spread over ``--resources gpu=N`` as Snakemake would run them:
one GPU per training job, longest jobs first.

Without a GPU it runs on the CPU at a small size (32x32, 8 filters by default): the timings
then say nothing about a GPU, and the projection scales the measured time per step by the
ratio of training FLOPs (said in the output), which is what makes the check testable here.
"""

from __future__ import annotations

import heapq
import logging
import os
import platform
import time
from pathlib import Path

import torch

from facesketch.fileio import write_json, write_text

log = logging.getLogger(__name__)

FS2K_TRAIN_PAIRS = 1058  # FS2K's official training split (anno_train.json)
# dense peak TFLOPS (no sparsity) by GPU name: bf16 tensor cores, and fp32 matmul with TF32
PEAK_TFLOPS = {
    "H200": {"bf16": 989.0, "tf32": 494.5}, "H100": {"bf16": 989.0, "tf32": 494.5},
    "A100": {"bf16": 312.0, "tf32": 156.0}, "L40S": {"bf16": 362.0, "tf32": 183.0},
    "A10": {"bf16": 125.0, "tf32": 62.5}, "RTX 4090": {"bf16": 165.2, "tf32": 82.6},
    "V100": {"bf16": None, "tf32": None},
}


def environment(device: torch.device) -> dict:
    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
           "device": str(device), "cpu_cores": os.cpu_count(),
           "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
           "float32_matmul_precision": torch.get_float32_matmul_precision()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version(),
                   bf16_supported=torch.cuda.is_bf16_supported())
    else:
        env.update(gpu=None, cudnn=None)
    return env


def peak_tflops(device: torch.device, precision: str) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    row = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    return None if row is None else row["bf16" if precision == "bf16" else "tf32"]


def _peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB: the process's peak RSS


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def schedule_steps(spec: dict, train_pairs: int) -> int:
    """Training steps of a variant's full schedule, all seeds."""
    per_epoch = train_pairs // spec["batch_size"]
    if spec.get("max_steps_per_epoch"):
        per_epoch = min(per_epoch, spec["max_steps_per_epoch"])
    return spec["schedule"]["epochs"] * per_epoch * len(spec.get("seeds", [0]))


def check_variant(spec: dict, device: torch.device, *, size: int | None = None, ngf: int | None = None,
                  batch: int | None = None, steps: int = 20, train_pairs: int = FS2K_TRAIN_PAIRS,
                  weights_dir: Path | None = None, recipe_on_cpu: bool = False) -> dict:
    from facesketch.models.summary import training_flops_per_image
    from facesketch.train import probe

    own_size, own_batch = spec["input"]["crop"], spec["batch_size"]
    run_spec = spec
    if size or ngf or batch:
        run_spec = probe.scaled(spec, size or own_size, ngf=ngf, batch=batch or own_batch)
    size, bs = run_spec["input"]["crop"], run_spec["batch_size"]
    torch.manual_seed(0)
    engine, note = probe.build_engine(run_spec, device, weights_dir, recipe=recipe_on_cpu)
    b, b2 = probe.synthetic_batch(run_spec, device, 1), probe.synthetic_batch(run_spec, device, 2)
    engine.compile(run_spec.get("compile", False), run_spec.get("cuda_graphs", False))
    t0 = time.perf_counter()
    engine.warm_up(b, b2)  # compiles (when compiled); falls back to eager on failure
    engine.step(b, b2)  # the first real step (eager: allocator and kernel warm-up)
    _sync(device)
    warm_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        losses = engine.step(b, b2)
    _sync(device)
    step_s = (time.perf_counter() - t0) / steps
    if not all(torch.isfinite(v).item() for v in losses.values()):
        raise RuntimeError(f"{spec.get('name')}: non-finite losses in the timed steps: {losses}")
    flops = training_flops_per_image(run_spec, size)
    img_s = bs / step_s
    precision = engine.precision.kind
    peak = peak_tflops(device, precision)
    # the projection: the measured time per step, scaled by training FLOPs per step when the
    # check ran smaller than the variant (the CPU check); exact when it ran at the variant's size
    full_flops_step = training_flops_per_image(spec, own_size) * own_batch
    scale = 1.0 if run_spec is spec else full_flops_step / (flops * bs)
    n_steps = schedule_steps(spec, train_pairs)
    seconds = n_steps * step_s * scale
    return {
        "variant": spec.get("name"), "size": size, "batch": bs, "own_size": own_size, "own_batch": own_batch,
        "precision": precision, "compiled": engine.compiled, "channels_last": bool(engine.recipe and
                                                                                spec.get("channels_last")),
        "warm_up_s": warm_s, "step_s": step_s, "images_per_s": img_s, "peak_memory_gib": _peak_memory_gib(device),
        "peak_memory_kind": "GPU allocated" if device.type == "cuda" else "process RSS",
        "gflop_per_image": flops / 1e9, "mfu": img_s * flops / (peak * 1e12) if peak else None,
        "schedule_steps": n_steps, "projection": "measured" if scale == 1.0 else f"scaled by FLOPs x{scale:.0f}",
        "projected_hours": seconds / 3600, "seeds": len(spec.get("seeds", [0])), "note": note,
    }


def spread(job_hours: list[float], gpus: int) -> float:
    """Wall hours of jobs run ``gpus`` at a time, one GPU each, longest first (LPT)."""
    loads = [0.0] * max(1, gpus)
    for h in sorted(job_hours, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + h)
    return max(loads)


def to_markdown(report: dict) -> str:
    env = report["environment"]
    lines = ["# facesketch gpu-check", "", "| environment | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env.items()]
    lines += ["", f"Input {report['measured_at']}; {report['steps']} timed steps per variant after one warm-up "
              f"(compile) step; {report['train_pairs']} training pairs.", "",
              "| variant | size | batch | precision | compiled | warm-up s | ms/step | img/s | peak mem GiB | "
              "GFLOP/img | MFU | steps | projected h | projection |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["variants"]:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        lines.append(f"| {r['variant']} | {r['size']} | {r['batch']} | {r['precision']} | {r['compiled']} | "
                     f"{r['warm_up_s']:.1f} | {r['step_s'] * 1e3:.1f} | {r['images_per_s']:.1f} | "
                     f"{r['peak_memory_gib']:.2f} | {r['gflop_per_image']:.2f} | {mfu} | {r['schedule_steps']} | "
                     f"{r['projected_hours']:.2f} | {r['projection']} |")
    lines += ["", f"**Total: {report['total_gpu_hours']:.1f} GPU-hours** for {len(report['variants'])} "
              f"variants ({report['jobs']} training jobs: variants x seeds).", ""]
    lines += [f"- `--resources gpu={n}`: {h:.1f} h wall time" for n, h in report["wall_hours"].items()]
    notes = sorted({r["note"] for r in report["variants"] if r["note"]})
    if notes:
        lines += ["", "Loss networks: " + "; ".join(notes) + " (same cost per step, meaningless loss values)."]
    if report["environment"]["gpu"] is None:
        lines += ["", "No GPU: measured on the CPU at a small size; the projection scales that time by training "
                  "FLOPs and says nothing about a GPU. Run this on the GPU machine for real numbers."]
    return "\n".join(lines) + "\n"


def run(cfg: dict, *, variants: list[str] | None = None, device: str = "auto", size: int | None = None,
        ngf: int | None = None, batch: int | None = None, steps: int | None = None, gpus: list[int] = (1,),
        train_pairs: int = FS2K_TRAIN_PAIRS, out: Path | None = None, weights_dir: Path | None = None,
        recipe_on_cpu: bool = False) -> dict:
    from facesketch.device import pick
    from facesketch.progress import progress

    dev = pick(device)
    if dev.type == "cuda":  # what facesketch.train.run sets
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    elif size is None:  # the CPU check: small, in seconds
        size, ngf, batch = 32, ngf or 8, batch or 2
    steps = steps or (20 if dev.type == "cuda" else 2)
    names = variants or list((cfg.get("run") or {}).get("variants") or cfg["resolved"])
    unknown = [n for n in names if n not in cfg["resolved"]]
    if unknown:
        from facesketch.errors import ConfigError

        raise ConfigError(f"gpu-check: unknown variant(s) {', '.join(unknown)}")
    rows = []
    for name in progress(names, desc="gpu-check", unit="variant"):
        spec = dict(cfg["resolved"][name], name=name)
        rows.append(check_variant(spec, dev, size=size, ngf=ngf, batch=batch, steps=steps, train_pairs=train_pairs,
                                  weights_dir=weights_dir, recipe_on_cpu=recipe_on_cpu))
        log.info("%s: %.1f img/s, projected %.2f h", name, rows[-1]["images_per_s"], rows[-1]["projected_hours"])
    jobs = [r["projected_hours"] / r["seeds"] for r in rows for _ in range(r["seeds"])]
    report = {"environment": environment(dev), "measured_at": "each variant's own size and batch" if size is None
              else f"{size}x{size}, batch {batch or 'own'}, ngf {ngf or 'own'}", "steps": steps,
              "train_pairs": train_pairs, "variants": rows, "jobs": len(jobs), "total_gpu_hours": sum(jobs),
              "wall_hours": {int(n): spread(jobs, int(n)) for n in gpus}}
    text = to_markdown(report)
    if out:
        write_json(Path(out) / "gpu_check.json", report)
        write_text(Path(out) / "gpu_check.md", text)
    print(text, end="")
    return report
