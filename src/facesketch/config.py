"""Configuration: load, validate against schemas/config.schema.yaml, fill defaults, resolve variants.

Validation happens before anything runs. Every error names the key it is about, as a dotted
path (``variants.hida_full.generator.dog``), so a typo never surfaces as a crash mid-run.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from facesketch import STYLES
from facesketch.errors import ConfigError

DEMO_CONFIG = "demo.yaml"


SCHEMA_FILE = "config.schema.yaml"


def schema_path() -> Path:
    """The installed package ships schemas/ as facesketch.schemas; run from a checkout's src/
    (as the rules do inside `--sdm conda` environments), the schema is the checkout's schemas/."""
    try:
        return Path(str(importlib.resources.files("facesketch.schemas").joinpath(SCHEMA_FILE)))
    except ModuleNotFoundError:
        source = Path(__file__).resolve().parents[2] / "schemas" / SCHEMA_FILE
        if not source.is_file():
            raise ConfigError(f"config schema not found: neither the package facesketch.schemas nor {source}; "
                              "install facesketch (pip install .) or run from a complete checkout") from None
        return source


@lru_cache(maxsize=1)
def schema() -> dict:
    return yaml.safe_load(schema_path().read_text(encoding="utf-8"))


def demo_config_path() -> Path:
    return Path(str(importlib.resources.files("facesketch.configs").joinpath(DEMO_CONFIG)))


def load_yaml(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def yaml_problem(path: str | os.PathLike) -> str | None:
    """The one-line reason ``path`` is not a usable config file (naming it), or None."""
    try:
        load_yaml(path)
    except ConfigError as e:
        return str(e)
    return None


# --- validation ---------------------------------------------------------------------------

def _with_defaults(validator_class):
    """A validator that also writes each property's `default` into the instance."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if "default" in prop and name not in instance:
                    instance[name] = copy.deepcopy(prop["default"])
        yield from validate_properties(validator, properties, instance, subschema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _key_path(error: jsonschema.ValidationError, prefix: str) -> str:
    parts = [prefix] if prefix else []
    parts += [f"[{p}]" if isinstance(p, int) else str(p) for p in error.absolute_path]
    return ".".join(parts).replace(".[", "[") or "(top level)"


def _describe(error: jsonschema.ValidationError, prefix: str) -> str:
    where = _key_path(error, prefix)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        names = ", ".join(repr(e) for e in extra)
        return f"{where}: unknown key {names}{hint}"
    if error.validator == "enum":
        options = ", ".join(repr(o) for o in error.validator_value)
        return f"{where}: {error.instance!r} is not one of {options}"
    if error.validator == "type":
        return (f"{where}: expected {error.validator_value}, got {type(error.instance).__name__} {error.instance!r}"
                + _number_hint(error))
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator == "propertyNames" or "propertyNames" in error.schema_path:
        return f"{where}: bad name {error.instance!r} (letters, digits and _ only)"
    if error.validator == "oneOf" and error.context:
        best = jsonschema.exceptions.best_match(error.context)
        return _describe(best, prefix) if best is not None else f"{where}: {error.message}"
    return f"{where}: {error.message}"


def _number_hint(error: jsonschema.ValidationError) -> str:
    """YAML 1.1 reads 2e-4 (no dot, no exponent sign) as a string: say how to write the number."""
    wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
    if not isinstance(error.instance, str) or not {"number", "integer"} & set(wanted):
        return ""
    try:
        value = float(error.instance)
    except ValueError:
        return ""
    mantissa, _, exponent = f"{value:e}".partition("e")
    written = f"{float(mantissa):.1f}".rstrip("0").rstrip(".")
    written = written + ".0" if "." not in written else written
    return f" (YAML reads {error.instance} as text: write it as {written}e{int(exponent)})"


def validate(cfg: dict, subschema: str | None = None, prefix: str = "") -> dict:
    """Validate ``cfg`` in place (defaults filled) and return it; ConfigError lists every problem."""
    full = schema()
    target = full if subschema is None else {"$ref": f"#/$defs/{subschema}", "$defs": full["$defs"]}
    validator = _Validator(target)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = sorted({_describe(e, prefix) for e in errors})
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    return cfg


# --- variants -----------------------------------------------------------------------------

def deep_merge(base: Mapping, override: Mapping) -> dict:
    """Recursive dict merge; lists and scalars in ``override`` replace those in ``base``."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _resolve_one(cfg: dict, name: str, stack: tuple[str, ...]) -> dict:
    pools = {"variants": cfg["variants"], "presets": cfg.get("presets", {})}
    if name in stack:
        raise ConfigError(f"variants: `extends` loops through {' -> '.join(stack + (name,))}")
    where = "variants" if name in pools["variants"] else "presets" if name in pools["presets"] else None
    if where is None:
        raise ConfigError(f"{'variants.' + stack[-1] if stack else 'variants'}.extends: unknown variant or "
                          f"preset {name!r}")
    own = pools[where][name]
    parents = own.get("extends", [])
    parents = [parents] if isinstance(parents, str) else parents
    merged: dict = {}
    for parent in parents:
        parent = parent.replace("{follow}", cfg["follow"])
        merged = deep_merge(merged, _resolve_one(cfg, parent, stack + (name,)))
    merged = deep_merge(merged, {k: v for k, v in own.items() if k != "extends"})
    return merged


def resolve_variant(cfg: dict, name: str) -> dict:
    """The complete spec of one variant: train_defaults <- extends chain <- own keys <- train_overrides."""
    if name not in cfg["variants"]:
        known = ", ".join(sorted(cfg["variants"]))
        raise ConfigError(f"unknown variant {name!r}; configured: {known}")
    spec = deep_merge(cfg.get("train_defaults", {}), _resolve_one(cfg, name, ()))
    spec = deep_merge(spec, cfg.get("train_overrides", {}))
    spec["name"] = name
    body = {k: v for k, v in spec.items() if k != "name"}
    validate(body, "variant_complete", prefix=f"variants.{name}")
    spec.update(body)
    if not spec.get("pretrained"):  # imported weights are never trained: their schedule is moot
        _check_schedule(spec, f"variants.{name}")
    return spec


def _check_schedule(spec: dict, where: str) -> None:
    """decay_epochs counts the last epochs of the run; more than epochs would start below the set rate."""
    schedule = spec.get("schedule", {})
    epochs, decay = schedule.get("epochs"), schedule.get("decay_epochs", 0)
    if epochs is not None and decay > epochs:
        from facesketch.train.schedule import lr_factor

        raise ConfigError(f"{where}.schedule.decay_epochs: {decay} is more than epochs ({epochs}): training would "
                          f"start at {lr_factor(0, epochs, decay):.2f}x the learning rate; use at most {epochs}")


# --- whole config -------------------------------------------------------------------------

def _check_references(cfg: dict) -> None:
    variants = cfg["variants"]
    released = cfg.get("released", {})
    for key in ("variants", "released"):
        chosen = cfg["run"].get(key)
        pool = variants if key == "variants" else released
        for name in chosen or []:
            if name not in pool:
                raise ConfigError(f"run.{key}: {name!r} is not configured under {key}")
    for tname, table in cfg.get("tables", {}).items():
        for i, row in enumerate(table["rows"]):
            metfaces = set(cfg.get("metfaces", {}).get("variants", {}))
            if "variant" in row and row["variant"] not in variants and row["variant"] not in metfaces:
                raise ConfigError(f"tables.{tname}.rows[{i}].variant: unknown variant {row['variant']!r}")
            apdrawing = {f"apdrawing_{n}" for n in cfg.get("apdrawing", {}).get("released", {})}
            if "released" in row and row["released"] not in released and row["released"] not in apdrawing:
                raise ConfigError(f"tables.{tname}.rows[{i}].released: {row['released']!r} is not under released")
            unknown = set(row.get("paper", {})) - set(table["metrics"])
            if unknown:
                raise ConfigError(f"tables.{tname}.rows[{i}].paper: {sorted(unknown)} not among the table's metrics")


FIGURE_TABLES = {"methods": "hida_table1", "ablation": "hida_table2", "dog": "hida_dog"}


def _check_figures(cfg: dict) -> None:
    figures = cfg["report"]["figures"]
    for key, table in figures.items():
        if table not in cfg["tables"]:
            raise ConfigError(f"report.figures.{key}: no table named {table!r} under tables")
    for key, table in FIGURE_TABLES.items():
        if key not in figures and table in cfg["tables"]:
            figures[key] = table


def _check_archive(cfg: dict) -> None:
    archive = cfg.get("fs2k", {}).get("archive")
    if archive and Path(archive).expanduser().is_dir():
        raise ConfigError(f"fs2k.archive: {archive} is a folder; give the path of the FS2K.zip file itself")


def finalize(cfg: dict) -> dict:
    """Validate a raw config dict (in place), resolve every variant, check cross-references."""
    validate(cfg)
    _check_archive(cfg)
    _check_references(cfg)
    _check_figures(cfg)
    from facesketch.data.apdrawing import check_config as _check_apdrawing

    _check_apdrawing(cfg)
    from facesketch.data.metfaces import check_config as _check_metfaces

    _check_metfaces(cfg)
    cfg["resolved"] = {name: resolve_variant(cfg, name) for name in cfg["variants"]}
    return cfg


def load_config(paths=None, overrides: dict | None = None) -> dict:
    """Load config files merged in order (as Snakemake's --configfile does), validate, resolve.

    ``paths`` is one path or a list; None means ./config.yaml. The packaged demo overlay is
    ``demo_config_path()``.
    """
    if paths is None:
        paths = ["config.yaml"]
    elif isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    raw: dict = {}
    for path in paths:
        raw = deep_merge(raw, load_yaml(path))
    if overrides:
        raw = deep_merge(raw, overrides)
    return finalize(raw)


# --- small accessors shared by the CLI and the Snakefile ----------------------------------

def weights_dir(cfg: dict) -> Path:
    explicit = cfg["paths"].get("weights")
    return Path(explicit or os.environ.get("FACESKETCH_WEIGHTS") or "weights")


def archive_source(cfg: dict) -> str | None:
    """The local archive to ingest: config first, then $FS2K_ARCHIVE; None means download."""
    return cfg["fs2k"].get("archive") or os.environ.get("FS2K_ARCHIVE") or None


def run_variants(cfg: dict) -> list[str]:
    chosen = cfg["run"].get("variants")
    return list(cfg["variants"]) if chosen is None else list(chosen)


def run_released(cfg: dict) -> list[str]:
    chosen = cfg["run"].get("released")
    return list(cfg.get("released", {})) if chosen is None else list(chosen)


def style_aware(spec: dict) -> bool:
    """Whether a variant draws in the style asked for (its generator answers: models.registry)."""
    from facesketch.models import registry  # torch is imported only when a variant is asked about

    return registry.style_aware(spec)


def style_name(index: int) -> str:
    return STYLES[index]


def style_index(name: str) -> int:
    try:
        return STYLES.index(name)
    except ValueError:
        raise ConfigError(f"unknown style {name!r}; styles are {', '.join(STYLES)}") from None


def spec_json(obj: Any) -> str:
    """Canonical JSON (sorted keys) so Snakemake's params-based rerun triggers are stable."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
