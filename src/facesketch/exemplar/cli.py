"""The MetFaces subcommands of ``facesketch`` (HIDA Table 4, exemplar-based translation)."""

from __future__ import annotations

import json
from pathlib import Path


def _spec(text: str) -> dict:
    from facesketch.cli import _parse_spec

    return _parse_spec(text)


def cmd_extract(args) -> int:
    from facesketch.data.metfaces import extract

    extract(Path(args.archive), Path(args.out))
    return 0


def cmd_prepare(args) -> int:
    from facesketch.data.metfaces import prepare

    prepare(Path(args.raw), Path(args.out), _spec(args.spec))
    return 0


def cmd_train(args) -> int:
    from facesketch.exemplar.train import train

    model = train(_spec(args.spec), Path(args.manifest), Path(args.maps) if args.maps else None, Path(args.out),
                  seed=args.seed, weights_dir=Path(args.weights), device=args.device)
    print(model)
    return 0


def cmd_infer(args) -> int:
    from facesketch.exemplar.train import infer

    n = infer(Path(args.checkpoint), Path(args.manifest), Path(args.maps) if args.maps else None, Path(args.out),
              device=args.device, batch_size=args.batch_size)
    print(f"{n} paintings -> {args.out}")
    return 0


def cmd_score(args) -> int:
    from facesketch.exemplar.score import score_samples

    spec = _spec(args.spec) if args.spec else {}
    score_samples(args.variant, Path(args.manifest), [Path(s) for s in args.samples], Path(args.out),
                  Path(args.weights), device=args.device, allow_missing=bool(spec.get("allow_missing", False)),
                  semantic=spec.get("semantic"))
    return 0


def cmd_grid(args) -> int:
    from facesketch.exemplar.grid import metfaces_grid

    metfaces_grid(Path(args.manifest), json.loads(args.samples), Path(args.out), rows=args.rows)
    return 0


def add_parsers(sub, out_folders: dict, out_files: dict) -> None:
    p = sub.add_parser("metfaces-extract", help="extract a zip of the MetFaces release (metfaces-dataset/) safely")
    p.add_argument("archive")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_extract)
    out_files["metfaces-extract"] = ("out",)

    p = sub.add_parser("metfaces-prepare", help="resize MetFaces, edge maps, split, exemplars, manifest")
    p.add_argument("--raw", required=True, help="the metfaces-dataset folder, or a folder holding it")
    p.add_argument("--out", required=True, help="folder for aligned/ and manifest.parquet")
    p.add_argument("--spec", required=True, help="the config's metfaces block as JSON")
    p.set_defaults(func=cmd_prepare)
    out_folders["metfaces-prepare"] = ("out",)

    p = sub.add_parser("exemplar-train", help="train CoCosNet (or CoCosNet + HIDA) on the MetFaces manifest")
    p.add_argument("--spec", required=True, help="the variant (metfaces.variants.NAME, size filled) as JSON")
    p.add_argument("--manifest", required=True)
    p.add_argument("--maps", help="maps folder (depth/<split>/<id>.png) for depth-using variants")
    p.add_argument("--weights", required=True, help="pretrained weights folder (CoCosNet's vgg19_conv.pth)")
    p.add_argument("--out", required=True, help="run folder (model.pt, losses.csv)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_train)
    out_folders["exemplar-train"] = ("out",)

    p = sub.add_parser("exemplar-infer", help="paint every MetFaces test edge map in its exemplar's style")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--maps")
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_infer)
    out_folders["exemplar-infer"] = ("out",)

    p = sub.add_parser("exemplar-score", help="FID, LPIPS and Sem. of MetFaces paintings (HIDA Table 4)")
    p.add_argument("--variant", required=True, help="the metfaces.variants name the values are stored under")
    p.add_argument("--manifest", required=True)
    p.add_argument("--samples", nargs="+", required=True, help="results/metfaces/samples/<variant>/<seed> folders")
    p.add_argument("--weights", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--spec", help='{"allow_missing": bool, "semantic": metfaces.semantic} as JSON')
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_score)
    out_files["exemplar-score"] = ("out",)

    p = sub.add_parser("metfaces-grid", help="Figure 12's grid: edge, exemplar, each variant's painting, truth")
    p.add_argument("--manifest", required=True)
    p.add_argument("--samples", required=True, help='JSON {"label": "samples folder", ...}')
    p.add_argument("--rows", type=int, default=6, help="test paintings shown (the first by id)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_grid)
    out_files["metfaces-grid"] = ("out",)
