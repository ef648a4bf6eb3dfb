"""Helpers the Snakemake rules use (kept here, in tested Python, rather than in the rules files).

The code fingerprint is what makes Snakemake's provenance honest about code: each rule passes
``code_fingerprint(<module it runs>)`` among its params, so a change to that module, or to any
facesketch module it imports, changes the params and Snakemake reruns exactly those jobs.
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
from pathlib import Path

PACKAGE = "facesketch"
PACKAGE_DIR = Path(__file__).resolve().parent


# The prefix of every job's shell command (braces doubled: Snakemake formats shell commands).
# Where `facesketch` is not installed (inside `--sdm conda` environments) the command runs the
# CLI from the checkout's src/, which finds the config schema in schemas/ (facesketch.config).
SHELL_PREFIX = (
    "set -euo pipefail; "
    "command -v facesketch >/dev/null 2>&1 || "
    'facesketch() {{ PYTHONPATH=src${{PYTHONPATH:+:$PYTHONPATH}} python -m facesketch "$@"; }}; '
)


def put_interpreter_on_path(environ=os.environ) -> None:
    """Jobs run `facesketch` from the bin folder of the Python running Snakemake (the project's
    virtual environment), even when the user never activated it."""
    bindir = str(Path(sys.executable).parent)
    environ["PATH"] = f"{bindir}{os.pathsep}{environ.get('PATH', '')}"


def _module_file(module: str, root: Path) -> Path | None:
    rel = Path(*module.split(".")[1:])
    for candidate in (root / rel / "__init__.py", (root / rel).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, module: str) -> set[str]:
    """facesketch modules that `module` imports anywhere (top level or inside functions)."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # `from facesketch.x import y`: y may be a submodule or a name in x; both are covered
            names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                found.add(name)
    return found


def code_files(*modules: str, root: Path = PACKAGE_DIR) -> list[Path]:
    """The source files of `modules` and of every facesketch module they import, transitively.
    Parent packages' __init__ files count too (Python runs them)."""
    seen: dict[str, Path | None] = {}
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run first
        path = _module_file(module, root)
        if path is None:
            if module in modules:
                raise ModuleNotFoundError(f"code_fingerprint: no module {module} under {root}")
            seen[module] = None  # a name imported from a module, not a module itself
            continue
        seen[module] = path
        todo.extend(_imports(path, module))
    return sorted({p for p in seen.values() if p is not None})


def code_fingerprint(*modules: str, root: Path = PACKAGE_DIR) -> str:
    """sha256 (first 16 hex digits) over the paths and contents of code_files(*modules)."""
    digest = hashlib.sha256()
    for path in code_files(*modules, root=root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


# --- the report's figure items --------------------------------------------------------------------


def figure_caption(figure: str) -> str:
    """The caption file (rules/report/*.rst) of a figure; per-table figures share one per kind."""
    if figure.startswith("paired_"):
        return "report/paired.rst"
    return "report/metrics_per_style.rst" if figure.startswith("metrics_per_style") else f"report/{figure}.rst"


def figure_subcategory(cfg: dict, figure: str) -> str:
    """Figures grouped as the tables are: a table's per-style figure under its title."""
    if figure.startswith("metrics_per_style_"):
        return cfg["tables"][figure.removeprefix("metrics_per_style_")]["title"]
    if figure.startswith("paired_"):
        return cfg["tables"][figure.removeprefix("paired_")]["title"]
    if figure == "fid_lpips_per_style":
        figures = cfg["report"]["figures"]
        return cfg["tables"][figures["methods"]]["title"] if "methods" in figures else "Per style"
    if figure == "metrics_by_attribute":
        return "Beyond the papers"
    return "Image grids" if figure.startswith("grid") else "Training"
