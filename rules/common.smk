# Shared by every rules file: the validated config, paths, and input functions.
import copy
import os
import shlex
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

from facesketch import STYLES
from facesketch.config import (archive_source, finalize, run_released, run_variants, spec_json,
                               style_aware, weights_dir)
from facesketch.models.registry import needs_depth
from facesketch.report.plots import plot_files

CFG = finalize(copy.deepcopy(config))  # raises a ConfigError naming the key before anything runs

# Rules call the `facesketch` CLI. Without --sdm conda, jobs find it beside the Python that
# runs Snakemake (the project's virtual environment), even when that is not on PATH. Inside
# conda environments the package is not installed, so there the command runs the CLI from src/.
if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
shell.prefix(
    "set -euo pipefail; "
    # (braces doubled: Snakemake formats shell commands)
    "command -v facesketch >/dev/null 2>&1 || facesketch() {{ PYTHONPATH=src${{PYTHONPATH:+:$PYTHONPATH}} python -m facesketch \"$@\"; }}; "
)

DATA = CFG["paths"]["data"]
RES = CFG["paths"]["results"]
WEIGHTS = str(weights_dir(CFG))
LOGS = f"{RES}/logs"
VARIANTS = run_variants(CFG)
FS2K = f"{DATA}/fs2k"
MAPS = f"{DATA}/maps"
MAP_KINDS = ("depth", "normal", "edge")
# released results are scored when their folder exists; the tables say when it does not
RELEASED_AVAILABLE = {n: Path(CFG["released"][n]["path"]).is_dir() for n in run_released(CFG)}
RELEASED = [n for n, ok in RELEASED_AVAILABLE.items() if ok]

wildcard_constraints:
    variant="|".join(VARIANTS) or "NONE",
    seed=r"\d+",
    style="|".join(STYLES),
    kind="|".join(MAP_KINDS),
    released="|".join(RELEASED) or "NONE",


def q(obj):
    """A config block as one shell-quoted JSON argument: rules rerun exactly when it changes."""
    return shlex.quote(spec_json(obj))


def spec(variant):
    return CFG["resolved"][variant]


def seeds(variant):
    return spec(variant)["seeds"]


def run_dir(w):
    return f"{RES}/checkpoints/{w.variant}/{w.seed}"


def model_inputs(w):
    """What training and inference read: aligned data, and depth maps where the variant uses them."""
    inputs = {"manifest": f"{FS2K}/manifest.parquet", "aligned": f"{FS2K}/aligned"}
    if needs_depth(spec(w.variant)):
        inputs["depth"] = f"{MAPS}/depth"
    return inputs


STYLES_RUN = CFG["infer"]["styles"]


def samples(variant):
    return [f"{RES}/samples/{variant}/{s}/{style}" for s in seeds(variant) for style in STYLES_RUN]


def metric_files():
    return [f"{RES}/metrics/{v}.parquet" for v in VARIANTS] + [f"{RES}/metrics/released_{r}.parquet" for r in RELEASED]
