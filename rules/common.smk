# Shared by every rules file: the validated config, paths, and input functions.
import copy
import os
import shlex
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

from facesketch import STYLES
from facesketch.checksums import checksums_path as sums
from facesketch.checksums import target_of
from facesketch.config import archive_source, finalize, run_released, run_variants, spec_json, style_aware, weights_dir
from facesketch.errors import ConfigError
from facesketch.models.registry import needs_depth
from facesketch.models.released_hida import pretrained_missing
from facesketch.report.plots import plot_files, plot_spec
from facesketch.report.tables import table_spec
from facesketch.workflow import (
    SHELL_PREFIX,
    code_fingerprint,
    figure_caption,
    figure_subcategory,
    put_interpreter_on_path,
)

try:
    CFG = finalize(copy.deepcopy(config))  # raises a ConfigError naming the key before anything runs
except ConfigError as _e:
    # the message names the key; Snakemake's stack frames would only point at this line
    sys.exit(f"facesketch: configuration error: {_e}")

# Rules call the `facesketch` CLI. Without --sdm conda, jobs find it beside the Python that
# runs Snakemake (the project's virtual environment), even when that is not on PATH. Inside
# conda environments the package is not installed, so there the command runs the CLI from src/
# (SHELL_PREFIX).
if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    put_interpreter_on_path()
shell.prefix(SHELL_PREFIX)

DATA = CFG["paths"]["data"]
RES = CFG["paths"]["results"]
WEIGHTS = str(weights_dir(CFG))
LOGS = f"{RES}/logs"
# variants built from published weights (the released HIDA) leave the run while their file is
# missing; their table rows say where it goes
# APDrawing's variants (apdrawing.variants) train on APDrawing: rules/apdrawing.smk
VARIANTS = [
    v
    for v in run_variants(CFG)
    if v not in pretrained_missing(CFG, Path(WEIGHTS)) and v not in CFG["apdrawing"]["variants"]
]
FS2K = f"{DATA}/fs2k"
MAPS = f"{DATA}/maps"
MAP_KINDS = ("depth", "normal", "edge")
# released results are scored when their folder exists; the tables say when it does not
RELEASED_AVAILABLE = {n: Path(CFG["released"][n]["path"]).is_dir() for n in run_released(CFG)}
RELEASED = [n for n, ok in RELEASED_AVAILABLE.items() if ok]
DEVICE = CFG["device"]
TABLES = list(CFG["tables"])
PLOTS = plot_files(CFG)
STUDY = CFG["report"].get("study")  # a folder from `facesketch study create`, or None


wildcard_constraints:
    variant="|".join(VARIANTS) or "NONE",
    seed=r"\d+",
    style="|".join(STYLES),
    kind="|".join(MAP_KINDS),
    released="|".join(RELEASED) or "NONE",


def parent(path, levels=1):
    """The folder `levels` up from a declared input or output (params derived from files)."""
    return str(Path(path).parents[levels - 1])


def q(obj):
    """A config block as one shell-quoted JSON argument: rules rerun exactly when it changes."""
    return shlex.quote(spec_json(obj))


def spec(variant):
    return CFG["resolved"][variant]


def seeds(variant):
    return spec(variant)["seeds"]


def run_dir(w):
    return f"{RES}/checkpoints/{w.variant}/{w.seed}"


# Folders and checkpoints are read through their checksum lists (sums(path) = path.sha256, written
# by the job that makes them; facesketch.checksums): Snakemake compares the checksum a list had when
# a job ran, so new modification times (a DVC restore, a git checkout) rerun nothing and new content
# reruns the readers. Snakemake records no checksum of a folder, nor of a file over
# --max-checksum-file-size.


def model_inputs(w):
    """What training and inference read: aligned data, and depth maps where the variant uses them."""
    inputs = {"manifest": f"{FS2K}/manifest.parquet", "aligned": sums(f"{FS2K}/aligned")}
    if needs_depth(spec(w.variant)):
        inputs["depth"] = sums(f"{MAPS}/depth")
    return inputs


STYLES_RUN = CFG["infer"]["styles"]


def samples(variant):
    return [f"{RES}/samples/{variant}/{s}/{style}" for s in seeds(variant) for style in STYLES_RUN]


def metric_files():
    return [f"{RES}/metrics/{v}.parquet" for v in VARIANTS] + [f"{RES}/metrics/released_{r}.parquet" for r in RELEASED]


def metrics_inputs(w):
    inputs = {"manifest": f"{FS2K}/manifest.parquet", "samples": [sums(d) for d in samples(w.variant)]}
    if CFG["metrics"]["framing"] == "native":
        inputs["raw"] = sums(f"{FS2K}/raw")  # the ground truth at the archive's resolution
    return inputs


def cross_samples():
    if CFG["infer"]["cross_style"] == 0:
        return []
    return [sums(f"{RES}/samples/{v}/{s}/cross") for v in VARIANTS if style_aware(spec(v)) for s in seeds(v)]


def caption(figure):
    return figure_caption(figure)


def subcategory(figure):
    return figure_subcategory(CFG, figure)
