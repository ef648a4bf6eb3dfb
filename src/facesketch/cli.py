"""The ``facesketch`` command line: the only thing the Snakemake rules call.

Each subcommand takes explicit paths plus, where it needs part of the configuration, either
``--spec JSON`` (what the rules pass: the resolved block, so that Snakemake reruns a job
exactly when its block changes) or ``--config FILE [--config FILE ...]`` with a name (what a
person types). Errors in the user's input print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from facesketch.errors import ConfigError, FacesketchError

log = logging.getLogger("facesketch")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def _parse_spec(text: str) -> dict:
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--spec is not valid JSON: {e}") from e


def _config(args) -> dict:
    from facesketch.config import load_config

    return load_config(args.config or None)


def _variant_spec(args) -> dict:
    if args.spec:
        return _parse_spec(args.spec)
    if not args.variant:
        raise ConfigError("give --spec JSON, or --config FILE with --variant NAME")
    from facesketch.config import resolve_variant

    return resolve_variant(_config(args), args.variant)


def _add_config_args(p: argparse.ArgumentParser, variant: bool = False) -> None:
    p.add_argument("--config", action="append", metavar="FILE",
                   help="config file(s), merged in order (default: ./config.yaml)")
    if variant:
        p.add_argument("--variant", help="variant name in the config")
        p.add_argument("--spec", help="resolved variant as JSON (or @file.json); what the rules pass")


# --- commands -------------------------------------------------------------------------------

def cmd_validate(args) -> int:
    from facesketch.config import load_config

    cfg = load_config(args.config or None)
    print(f"ok: {len(cfg['variants'])} variants, {len(cfg['tables'])} tables")
    return 0


def cmd_fetch(args) -> int:
    from facesketch.data.archive import fetch

    fetch(Path(args.out), args.source or None, args.gdrive_id, args.sha256 or None)
    return 0


def cmd_extract(args) -> int:
    from facesketch.data.archive import extract

    extract(Path(args.archive), Path(args.out))
    return 0


def cmd_align(args) -> int:
    from facesketch.data.fs2k import prepare

    spec = _parse_spec(args.spec) if args.spec else _config(args)["fs2k"]
    prepare(Path(args.raw), Path(args.out), spec, check_counts=not args.no_official_counts)
    return 0


def cmd_maps(args) -> int:
    from facesketch.maps.run import run_maps

    spec = _parse_spec(args.spec) if args.spec else _config(args)["maps"]
    run_maps(args.kind, Path(args.manifest), Path(args.out), spec, Path(args.weights),
             device=args.device)
    return 0


def cmd_contact_sheet(args) -> int:
    from facesketch.maps.contact_sheet import contact_sheet

    contact_sheet(Path(args.manifest), Path(args.maps), args.kind, Path(args.out), args.per_style)
    return 0


def cmd_weights(args) -> int:
    from facesketch.maps import weights

    return weights.main(args)


def cmd_summary(args) -> int:
    from facesketch.models.summary import print_summary

    print_summary(_variant_spec(args), size=args.size)
    return 0


def cmd_train(args) -> int:
    from facesketch.train.run import train

    train(_variant_spec(args), Path(args.manifest), Path(args.maps), Path(args.out), seed=args.seed,
          weights_dir=Path(args.weights), device=args.device, done=Path(args.done) if args.done else None)
    return 0


def cmd_infer(args) -> int:
    from facesketch.train.infer import infer

    infer(_variant_spec(args), Path(args.checkpoint), Path(args.manifest), Path(args.maps), Path(args.out),
          style=args.style, cross_style=args.cross_style, batch_size=args.batch_size, device=args.device)
    return 0


def cmd_score(args) -> int:
    from facesketch.metrics.evaluate import score_variant

    spec = _parse_spec(args.spec)
    score_variant(spec, Path(args.manifest), [Path(s) for s in args.samples], Path(args.out),
                  Path(args.weights), device=args.device)
    return 0


def cmd_evaluate(args) -> int:
    from facesketch.metrics.evaluate import evaluate_folder

    if args.spec:
        metrics, weights = _parse_spec(args.spec), Path(args.weights or "weights")
    else:
        cfg = _config(args)
        metrics, weights = cfg["metrics"], _weights_dir(args, cfg)
    evaluate_folder(Path(args.folder), Path(args.manifest), Path(args.out), metrics, weights,
                    framing=args.framing, label=args.label or Path(args.folder).name, device=args.device)
    return 0


def cmd_tables(args) -> int:
    from facesketch.report.tables import build_tables

    spec = _parse_spec(args.spec)
    optional = [Path(p) if p else None for p in (args.metrics_json, args.plots_csv, args.manifest)]
    build_tables(spec, [Path(m) for m in args.metrics], Path(args.out), *optional)
    return 0


def cmd_plots(args) -> int:
    from facesketch.report.plots import make_plots

    make_plots(_parse_spec(args.spec), Path(args.results), Path(args.manifest), Path(args.out))
    return 0


def _weights_dir(args, cfg=None) -> Path:
    if getattr(args, "weights", None):
        return Path(args.weights)
    from facesketch.config import weights_dir

    return weights_dir(cfg or _config(args))


# --- parser ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facesketch", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate-config", help="validate config file(s) against the schema")
    _add_config_args(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("fetch", help="copy a local FS2K archive or download it, and check it")
    p.add_argument("--out", required=True)
    p.add_argument("--source", help="local FS2K.zip (empty = download)")
    p.add_argument("--gdrive-id", default="1saIMhQ3dc5_ftkfGmBPbCluRn_zy7QQp", help="Google Drive id of FS2K.zip")
    p.add_argument("--sha256", help="expected SHA-256 (empty = do not check)")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("extract", help="extract an FS2K archive safely")
    p.add_argument("archive")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("align", help="align FS2K pairs and write the manifest")
    p.add_argument("--raw", required=True, help="folder holding FS2K/")
    p.add_argument("--out", required=True, help="folder for aligned/ and manifest.parquet")
    p.add_argument("--spec", help="the config's fs2k block as JSON")
    p.add_argument("--no-official-counts", action="store_true",
                   help="accept annotation files whose counts differ from the official FS2K")
    _add_config_args(p)
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("maps", help="depth, normal or edge maps for every aligned photo")
    p.add_argument("kind", choices=["depth", "normal", "edge"])
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--weights", required=True, help="pretrained weights folder")
    p.add_argument("--spec", help="the config's maps block as JSON")
    p.add_argument("--device", default="auto")
    _add_config_args(p)
    p.set_defaults(func=cmd_maps)

    p = sub.add_parser("contact-sheet", help="photos beside their maps, a few per style")
    p.add_argument("kind", choices=["depth", "normal", "edge"])
    p.add_argument("--manifest", required=True)
    p.add_argument("--maps", required=True, help="folder holding depth/, normal/, edge/")
    p.add_argument("--out", required=True)
    p.add_argument("--per-style", type=int, default=3)
    p.set_defaults(func=cmd_contact_sheet)

    p = sub.add_parser("weights", help="list, fetch or check the pretrained weights")
    p.add_argument("action", choices=["list", "fetch", "check", "path"])
    p.add_argument("names", nargs="*", help="registry names (default: all)")
    p.add_argument("--dir", help="weights folder (default: config paths.weights, $FACESKETCH_WEIGHTS, ./weights)")
    p.add_argument("--required", action="store_true", help="only the files the config's run needs")
    _add_config_args(p)
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("summary", help="a variant's parameters and multiply-accumulates per image")
    _add_config_args(p, variant=True)
    p.add_argument("--size", type=int, help="input size (default: the variant's crop)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("train", help="train one variant with one seed (resumes from its last checkpoint)")
    _add_config_args(p, variant=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--maps", required=True)
    p.add_argument("--weights", default="weights")
    p.add_argument("--out", required=True, help="run folder: checkpoints, losses, samples")
    p.add_argument("--done", help="file written when training has finished (the rule's output)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("infer", help="draw the test photos of one style with a trained checkpoint")
    _add_config_args(p, variant=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--maps", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--style", required=True, help="Style1, Style2 or Style3")
    p.add_argument("--cross-style", type=int, default=0, help="also draw N photos in every style")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("score", help="metrics of one variant's samples (what the rules call)")
    p.add_argument("--spec", required=True, help="JSON: variant, seeds, styles, metrics block")
    p.add_argument("--manifest", required=True)
    p.add_argument("--samples", nargs="+", required=True, help="sample folders <seed>/<style>")
    p.add_argument("--weights", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("evaluate", help="score any folder of sketches named by FS2K id")
    p.add_argument("folder")
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True, help="Parquet of per-image values")
    p.add_argument("--framing", choices=["original", "aligned"], default="original")
    p.add_argument("--label")
    p.add_argument("--weights")
    p.add_argument("--spec", help="the config's metrics block as JSON (instead of --config)")
    p.add_argument("--device", default="auto")
    _add_config_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("tables", help="paper tables from per-image metrics")
    p.add_argument("--spec", required=True, help="JSON: tables, variants, metrics block")
    p.add_argument("--metrics", nargs="*", default=[])
    p.add_argument("--out", required=True)
    p.add_argument("--metrics-json", help="DVC metrics file (default: OUT/../metrics.json)")
    p.add_argument("--plots-csv", help="DVC plots file (default: OUT/../per_style.csv)")
    p.add_argument("--manifest", help="with it, also the metrics by FS2K annotation (attributes.*)")
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser("plots", help="per-style plots, training curves and image grids")
    p.add_argument("--spec", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_plots)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args) or 0
    except FacesketchError as e:
        log.error("%s", e)
        print(f"facesketch: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
