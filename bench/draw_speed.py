"""Photos per second of ``facesketch draw`` on this machine: a folder of N photos drawn with a
checkpoint in every style, models loaded once, detection, depth and the generator batched.

The photos are the folder's images repeated (and mirrored on every other pass, so no two
inputs are the same bytes) up to N. Reading, detection, framing, depth, drawing and writing
all count; loading the models is timed apart.

    FACESKETCH_WILD=/path/to/portraits python bench/draw_speed.py \\
        --checkpoint results/demo/checkpoints/hida_full/0/model.pt [--n 100] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageOps


def make_folder(src: Path, n: int, work: Path) -> Path:
    from facesketch.draw.photos import SUFFIXES

    files = sorted(f for f in src.iterdir() if f.suffix.lower() in SUFFIXES)
    if not files:
        raise SystemExit(f"no images in {src}")
    out = work / "photos"
    out.mkdir(parents=True)
    for i in range(n):
        im = Image.open(files[i % len(files)]).convert("RGB")
        if (i // len(files)) % 2:
            im = ImageOps.mirror(im)
        im.save(out / f"{i:04d}.png")
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--photos", default=os.environ.get("FACESKETCH_WILD"),
                    help="folder of portrait photos (default: $FACESKETCH_WILD)")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--style", default="all")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workdir", help="scratch folder (default: a new temporary one)")
    args = ap.parse_args(argv)
    if not args.photos or not Path(args.photos).is_dir():
        raise SystemExit("give --photos FOLDER or set FACESKETCH_WILD")
    from facesketch.draw import run

    work = Path(args.workdir or tempfile.mkdtemp(prefix="facesketch-draw-bench-"))
    folder = make_folder(Path(args.photos), args.n, work)
    opts = run.DrawOptions(styles=run.parse_styles(args.style), batch_size=args.batch_size, device=args.device,
                           weights_dir=Path(os.environ.get("FACESKETCH_WEIGHTS") or "weights"))
    t0 = time.perf_counter()
    drawer = run.Drawer(Path(args.checkpoint), opts)
    drawer.finder  # noqa: B018 - load the detector now, not inside the timed loop
    drawer.face_depth_predictor() if drawer.with_depth else None
    load_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    drawn, failed = run.draw([folder], Path(args.checkpoint), work / "out", opts, drawer=drawer)
    wall, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    cpu = os.cpu_count()
    row = {"photos": drawn, "failed": failed, "styles": len(drawer.labels), "seconds": wall,
           "photos_per_s": drawn / wall, "cpu_s": cpu_s, "load_s": load_s, "threads": torch.get_num_threads(),
           "cpus": cpu,
           "device": str(drawer.device)}
    print(f"{drawn} photos ({failed} failed) x {len(drawer.labels)} style(s) in {wall:.1f} s: "
          f"{drawn / wall:.2f} photos/s on {drawer.device} ({torch.get_num_threads()} threads, {cpu} CPUs); "
          f"models loaded in {load_s:.1f} s; {cpu_s:.1f} CPU-seconds used (with other load on the machine, "
          f"wall time exceeds CPU time / cores)")
    return row


if __name__ == "__main__":
    main()
