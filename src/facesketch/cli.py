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

from facesketch import __version__
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
    """FS2K's archive (extract) or APDrawing's (apdrawing-extract): the same safe extraction."""
    from facesketch.data import apdrawing, archive

    (apdrawing if args.command == "apdrawing-extract" else archive).extract(Path(args.archive), Path(args.out))
    return 0


def cmd_checksums(args) -> int:
    from facesketch.checksums import write_checksums

    write_checksums(Path(args.target), Path(args.out) if args.out else None)
    return 0


def cmd_align(args) -> int:
    from facesketch.data.fs2k import prepare

    spec = _parse_spec(args.spec) if args.spec else _config(args)["fs2k"]
    prepare(Path(args.raw), Path(args.out), spec, check_counts=not args.no_official_counts)
    return 0


def cmd_apdrawing_prepare(args) -> int:
    from facesketch.data.apdrawing import prepare

    spec = _parse_spec(args.spec) if args.spec else _config(args)["apdrawing"]
    prepare(Path(args.raw), Path(args.out), spec)
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


def cmd_gpu_check(args) -> int:
    from facesketch.gpu_check import run

    gpus = []
    for r in args.resources or ["gpu=1"]:
        key, _, n = r.partition("=")
        if key != "gpu" or not n.isdigit() or int(n) < 1:
            raise ConfigError(f"--resources {r}: expected gpu=N with N >= 1")
        gpus.append(int(n))
    run(_config(args), variants=args.variants, device=args.device, size=args.size, ngf=args.ngf, batch=args.batch,
        steps=args.steps, gpus=gpus, train_pairs=args.train_pairs, out=Path(args.out) if args.out else None,
        weights_dir=Path(args.weights) if args.weights else None, recipe_on_cpu=args.cpu_recipe)
    return 0


def cmd_train(args) -> int:
    from facesketch.train.run import train

    train(_variant_spec(args), Path(args.manifest), Path(args.maps), Path(args.out), seed=args.seed,
          weights_dir=Path(args.weights), device=args.device, done=Path(args.done) if args.done else None)
    return 0


def cmd_import_hida(args) -> int:
    from facesketch.models.released_hida import import_released

    if not (args.spec or args.variant):
        args.variant = "hida_released_weights"
    import_released(Path(args.checkpoint), _variant_spec(args), Path(args.out))
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
    index = None
    if args.ids == "stem":
        from facesketch.data.apdrawing import index_by_stem as index
    evaluate_folder(Path(args.folder), Path(args.manifest), Path(args.out), metrics, weights,
                    framing=args.framing, label=args.label or Path(args.folder).name, device=args.device, index=index)
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


def cmd_draw(args) -> int:
    from facesketch.draw.run import DrawOptions, draw, parse_styles

    opts = DrawOptions(styles=parse_styles(args.style), scene=args.scene, paste_back=args.paste_back,
                       depth=args.depth, framing=args.framing, weights_dir=Path(args.weights or _default_weights()),
                       batch_size=args.batch_size, scene_size=args.scene_size, sheet=not args.no_sheet,
                       device=args.device)
    opts.limit = args.limit
    _, failed = draw(args.photos, Path(args.checkpoint), Path(args.out), opts)
    return 1 if failed and not args.exit_zero else 0


def cmd_draw_figure(args) -> int:
    from facesketch.draw.figure import make_figure

    methods = []
    for item in args.methods:
        label, sep, folder = item.partition("=")
        if not sep:
            raise ConfigError(f"--methods wants LABEL=FOLDER, got {item!r}")
        methods.append((label, Path(folder)))
    make_figure(methods, Path(args.out), args.rows, args.title)
    return 0


def _default_weights() -> str:
    import os

    return os.environ.get("FACESKETCH_WEIGHTS") or "weights"


def _weights_dir(args, cfg=None) -> Path:
    if getattr(args, "weights", None):
        return Path(args.weights)
    from facesketch.config import weights_dir

    return weights_dir(cfg or _config(args))


# --- parser ---------------------------------------------------------------------------------

def _map_kind_parser(sub, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand about one kind of geometry map of the manifest's photos."""
    p = sub.add_parser(name, help=help)
    p.add_argument("kind", choices=["depth", "normal", "edge"])
    p.add_argument("--manifest", required=True)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facesketch", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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

    for name, what in (("extract", "an FS2K archive"), ("apdrawing-extract", "the user's APDrawingDB.zip")):
        p = sub.add_parser(name, help=f"extract {what} safely")
        p.add_argument("archive")
        p.add_argument("--out", required=True)
        p.set_defaults(func=cmd_extract)

    p = sub.add_parser("checksums", help="SHA-256 of every file of a folder (or of a file), in sha256sum format")
    p.add_argument("target", help="a folder or a file")
    p.add_argument("--out", help="where the list goes (default: TARGET.sha256)")
    p.set_defaults(func=cmd_checksums)

    p = sub.add_parser("align", help="align FS2K pairs and write the manifest")
    p.add_argument("--raw", required=True, help="folder holding FS2K/")
    p.add_argument("--out", required=True, help="folder for aligned/ and manifest.parquet")
    p.add_argument("--spec", help="the config's fs2k block as JSON")
    p.add_argument("--no-official-counts", action="store_true",
                   help="accept annotation files whose counts differ from the official FS2K")
    _add_config_args(p)
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("apdrawing-prepare", help="split APDrawing's photo|drawing pairs and write the manifest")
    p.add_argument("--raw", required=True, help="folder holding APDrawingDB/")
    p.add_argument("--out", required=True, help="folder for aligned/ and manifest.parquet")
    p.add_argument("--spec", help="the config's apdrawing block as JSON")
    _add_config_args(p)
    p.set_defaults(func=cmd_apdrawing_prepare)

    p = _map_kind_parser(sub, "maps", "depth, normal or edge maps for every aligned photo")
    p.add_argument("--out", required=True)
    p.add_argument("--weights", required=True, help="pretrained weights folder")
    p.add_argument("--spec", help="the config's maps block as JSON")
    p.add_argument("--device", default="auto")
    _add_config_args(p)
    p.set_defaults(func=cmd_maps)

    p = _map_kind_parser(sub, "contact-sheet", "photos beside their maps, a few per style")
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

    p = sub.add_parser("gpu-check", help="time every variant on this GPU and project the full run's GPU-hours")
    _add_config_args(p)
    p.add_argument("--variants", nargs="+", help="variants to check (default: the config's run.variants, else all)")
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, help="input size (default: each variant's own; 32 on the CPU)")
    p.add_argument("--ngf", type=int, help="filters of the first layer (default: each variant's own; 8 on the CPU)")
    p.add_argument("--batch", type=int, help="batch size (default: each variant's own; 2 on the CPU)")
    p.add_argument("--steps", type=int, help="timed steps per variant (default: 20 on a GPU, 2 on the CPU)")
    p.add_argument("--resources", action="append", metavar="gpu=N",
                   help="GPUs to spread the projected hours over (repeatable; default gpu=1)")
    p.add_argument("--train-pairs", type=int, default=1058, help="training pairs (default: FS2K's 1058)")
    p.add_argument("--weights", help="weights folder for the loss networks (random stand-ins when missing)")
    p.add_argument("--cpu-recipe", action="store_true",
                   help="on the CPU, run the GPU recipe (compile, bf16, channels_last): minutes, for testing")
    p.add_argument("--out", help="folder for gpu_check.json and gpu_check.md")
    p.set_defaults(func=cmd_gpu_check)

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

    p = sub.add_parser("import-hida", help="map the authors' released HIDA checkpoint onto our generator (model.pt)")
    _add_config_args(p, variant=True)
    p.add_argument("--checkpoint", required=True, help="the released _ckpt_epoch_749.ckpt (Lightning)")
    p.add_argument("--out", required=True, help="model file to write (what `facesketch infer` loads)")
    p.set_defaults(func=cmd_import_hida)

    p = sub.add_parser("infer", help="draw the test photos of one style with a trained checkpoint")
    _add_config_args(p, variant=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--maps", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--style", required=True, choices=["Style1", "Style2", "Style3", "cross"],
                   help="draw the test photos whose ground truth is in this style; cross: the first "
                        "--cross-style N test photos in all three styles")
    p.add_argument("--cross-style", type=int, default=0, help="N, the photos drawn with --style cross")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("draw", help="draw your own photos (faces, or whole scenes) with a trained checkpoint")
    p.add_argument("photos", nargs="+", help="image files and/or folders of images")
    p.add_argument("--checkpoint", required=True, help="a trained model.pt (any family)")
    p.add_argument("--out", required=True, help="folder for sketches, sheets and drawn.csv / failures.csv")
    p.add_argument("--style", default="all", help="Style1, Style2, Style3, a comma list, or all (default)")
    p.add_argument("--scene", action="store_true", help="draw whole natural images (no face step; MiDaS depth)")
    p.add_argument("--paste-back", action="store_true", help="also put each sketch back into the whole photo")
    p.add_argument("--depth", choices=["auto", "3ddfa_v2", "mediapipe"], default="auto",
                   help="face depth predictor (auto: 3DDFA_V2 when its weights are there, else MediaPipe)")
    p.add_argument("--framing", default="photo1", help="FS2K framing the face is aligned to (photo1|photo2|photo3)")
    p.add_argument("--weights", help="pretrained weights folder (default: $FACESKETCH_WEIGHTS, else ./weights)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--scene-size", type=int, help="longer side of a drawn scene (default: 2x the model's input)")
    p.add_argument("--no-sheet", action="store_true", help="skip the photo-and-sketches sheets")
    p.add_argument("--limit", type=int, help="draw only the first N photos (sorted by name)")
    p.add_argument("--exit-zero", action="store_true",
                   help="exit 0 even when some photos could not be drawn (they are listed in failures.csv)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_draw)

    p = sub.add_parser("draw-figure", help="HIDA Figure 10/11-style grid from `facesketch draw` folders")
    p.add_argument("--methods", nargs="+", required=True, help="LABEL=FOLDER, in column order")
    p.add_argument("--out", required=True)
    p.add_argument("--rows", type=int, default=6, help="photos (rows) in the grid")
    p.add_argument("--title", default="", help="the figure's title")
    p.set_defaults(func=cmd_draw_figure)

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
    p.add_argument("--ids", choices=["fs2k", "stem"], default="fs2k",
                   help="how result files name test images: FS2K ids, or file stems (APDrawing)")
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
    _add_study_parser(sub)
    from facesketch.exemplar.cli import add_parsers as _add_metfaces_parsers  # HIDA Table 4, MetFaces

    _add_metfaces_parsers(sub, _OUT_FOLDERS, _OUT_FILES)
    _finish_options(parser, sub)
    return parser


# Help for the options many subcommands share (an option's own help, where given, wins).
COMMON_HELP = {
    "--manifest": "manifest.parquet written by `facesketch align`",
    "--out": "where to write the result",
    "--maps": "folder holding the depth/, normal/ and edge/ maps",
    "--weights": "pretrained weights folder (see `facesketch weights list`)",
    "--device": "auto (a free GPU, else the CPU), cpu, cuda or cuda:N",
    "--spec": "the config block the rule passes, as JSON (or @file.json)",
    "--seed": "random seed of the run",
    "--batch-size": "images per batch",
    "--per-style": "photos per style on the sheet",
    "--gdrive-id": "Google Drive id of FS2K.zip (used when --source is empty)",
    "--results": "the run's results folder (tables/, checkpoints/, samples/)",
    "--metrics": "per-image metrics Parquet files (score/evaluate output)",
    "--label": "the method's name in the tables (default: the folder's name)",
    "--checkpoint": "model.pt of a trained run",
    "kind": "depth, normal or edge",
    "archive": "FS2K.zip (or a .tar[.gz])",
    "folder": "folder of sketches named by FS2K id",
    "action": "list: every file, its place and state; fetch: download; check: verify; path: print the path",
    "--framing": "how the sketches are framed: original (as the FS2K photos) or aligned (as facesketch align)",
}


def _finish_options(parser: argparse.ArgumentParser, sub) -> None:
    """Help text on every option, and -v/--verbose accepted after the subcommand as well."""
    for p in sub.choices.values():
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="debug logging (also accepted before the subcommand)")
        for action in p._actions:
            if action.help is None:
                key = action.option_strings[0] if action.option_strings else action.dest
                action.help = COMMON_HELP.get(key)


# Where each command writes: checked writable before it computes anything (folder, or a file's folder).
_OUT_FOLDERS = {"align": ("out",), "maps": ("out",), "train": ("out",), "infer": ("out",), "tables": ("out",),
                "plots": ("out",)}
_OUT_FILES = {"fetch": ("out",), "extract": ("out",), "contact-sheet": ("out",), "score": ("out",),
              "evaluate": ("out",), "train": ("done",), "tables": ("out", "metrics_json", "plots_csv")}

_OUT_FOLDERS["apdrawing-prepare"] = ("out",)
_OUT_FILES["apdrawing-extract"] = ("out",)


def _check_outputs(args) -> None:
    from facesketch.fileio import check_writable

    folders = [Path(getattr(args, a)) for a in _OUT_FOLDERS.get(args.command, ()) if getattr(args, a, None)]
    folders += [Path(getattr(args, a)).parent for a in _OUT_FILES.get(args.command, ()) if getattr(args, a, None)]
    for folder in dict.fromkeys(folders):
        check_writable(folder)


def cmd_study_create(args) -> None:
    from facesketch.study.create import create

    create(Path(args.results), Path(args.manifest), Path(args.out), args.methods, args.items, args.seed,
           args.sample_seed, args.title)


def cmd_study_serve(args) -> None:
    from facesketch.study.app import serve

    serve(Path(args.folder), args.host, args.port)


def cmd_study_summary(args) -> None:
    from facesketch.study.summary import summarize

    pref = summarize(Path(args.folder), Path(args.out or args.folder))
    print(pref.to_string(index=False))


def _add_study_parser(sub) -> None:
    """facesketch study create|serve|summary (HIDA's Figure 5 user study as a tool)."""
    study = sub.add_parser("study", help="the user study: create a study folder, serve it, summarise the answers")
    ssub = study.add_subparsers(dest="study_command", required=True, help="create, serve or summary")
    p = ssub.add_parser("create", help="sample test photos and the methods' results into a study folder")
    p.add_argument("--results", required=True, help="the results tree (with samples/<method>/<seed>/<Style>)")
    p.add_argument("--manifest", required=True, help="the FS2K manifest.parquet (photos and artists' sketches)")
    p.add_argument("--methods", nargs="+", required=True, help="variants under results/samples to compare")
    p.add_argument("--items", type=int, default=50, help="test photos to show each participant")
    p.add_argument("--seed", type=int, default=0, help="which photos are drawn")
    p.add_argument("--sample-seed", type=int, help="the training seed whose results are shown (default: lowest)")
    p.add_argument("--title", default="Choose the best sketch")
    p.add_argument("--out", required=True, help="the new study folder")
    p.set_defaults(func=cmd_study_create)
    p = ssub.add_parser("serve", help="the study's web page, recording each choice in SQLite")
    p.add_argument("folder")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=int, default=8765)
    p.set_defaults(func=cmd_study_serve)
    p = ssub.add_parser("summary", help="Figure 5 (preference per method) and a Parquet of all answers")
    p.add_argument("folder")
    p.add_argument("--out", help="default: the study folder")
    p.set_defaults(func=cmd_study_summary)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        _check_outputs(args)
        return args.func(args) or 0
    except FacesketchError as e:
        log.error("%s", e)
        print(f"facesketch: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system's errors are the user's to fix: one line naming the file
        where = e.filename or "a file"
        log.error("%s: %s", where, e.strerror or e)
        print(f"facesketch: error: {where}: {e.strerror or e} (check the path, its permissions and free space)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
