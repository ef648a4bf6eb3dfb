"""Figures of the report: per-style metric bars (the HIDA paper's Figure 4 and every table's
metrics per style), training curves, and image grids (methods, ablations, DOG placements, one
photo in all three styles).

A figure is always drawn; methods without results appear as labelled gaps and a panel whose
metric could not be computed says why, so the report never silently drops a method.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from facesketch import STYLES
from facesketch.data.fs2k import load_manifest
from facesketch.fileio import atomic_path, read_array, write_text
from facesketch.metrics.evaluate import LOWER_IS_BETTER, index_results
from facesketch.report.grid import save_grid
from facesketch.report.tables import attribute_name

log = logging.getLogger(__name__)



def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)
    return plt, sns


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _note(ax, text: str, lines: int = 8) -> None:
    wrapped = textwrap.wrap(text, 48)
    if len(wrapped) > lines:
        wrapped = wrapped[:lines - 1] + [wrapped[lines - 1][:44] + " ..."]
    ax.text(0.5, 0.5, "\n".join(wrapped), ha="center", va="center", fontsize=8.5,
            transform=ax.transAxes, bbox={"boxstyle": "round", "fc": "#fff4e0", "ec": "#d9a441"})


def _why_empty(part: pd.DataFrame, metric: str) -> str:
    """'LPIPS: no results. A, B: <reason>; C: <reason>' — each reason once, with its rows."""
    by_reason: dict[str, list[str]] = {}
    for label, reason in part.drop_duplicates("label")[["label", "reason"]].itertuples(index=False):
        by_reason.setdefault(reason or "no results", []).append(label)
    return f"{metric}: no results. " + "; ".join(f"{', '.join(ls)}: {r}" for r, ls in by_reason.items())


SCOPE_ORDER = (*STYLES, "all")


def bar_rows(long: pd.DataFrame, table: dict, metric: str) -> tuple[list[str], pd.DataFrame]:
    """The methods with a result for `metric` (in the table's row order, by their table labels)
    and their finite values per scope (the three styles and all styles)."""
    part = long[(long.metric == metric) & (long["style"].isin(SCOPE_ORDER))]
    ok = part[np.isfinite(part.ours)]
    present = [r["label"] for r in table["rows"] if r["label"] in set(ok.label)]
    return list(dict.fromkeys(present)), ok


def style_ticks(part: pd.DataFrame, metric: str) -> list[str]:
    """x labels per style and over all styles; for FID with the set size n (FID is biased upward
    at small n), and a warning under 200 images."""
    if metric != "FID":
        return list(SCOPE_ORDER)
    from facesketch.report.tables import FID_WARN_N

    ticks = []
    for st in SCOPE_ORDER:
        n = int(part[part["style"] == st].n_images.max()) if (part["style"] == st).any() else 0
        ticks.append(f"{st}\nn={n}" + (f" (<{FID_WARN_N}: biased)" if 0 < n < FID_WARN_N else "") if n else st)
    return ticks


def _error_bars(cells: pd.DataFrame) -> np.ndarray:
    """(2, n) lower/upper error lengths: the cells' 95% intervals where the tables computed them,
    else one std over seeds; 0 where neither is finite."""
    v = cells["ours"].to_numpy(dtype=float)
    if "ours_lo" in cells and "ours_hi" in cells:
        lo, hi = v - cells["ours_lo"].to_numpy(dtype=float), cells["ours_hi"].to_numpy(dtype=float) - v
    else:
        lo = hi = cells["ours_std"].to_numpy(dtype=float)
    return np.nan_to_num(np.stack([lo, hi]), nan=0.0).clip(min=0.0)


def metric_bars(long: pd.DataFrame, table: dict, metrics: list[str], path: Path, title: str) -> Path:
    """One panel per metric: bars per style and over all styles (x) and method (colour), with
    their 95% intervals (or ± one std over seeds), and the paper's value (all styles) as a black
    tick on its method's bar. Only methods with results appear, in bars and legend."""
    plt, sns = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics) + 1.5, 3.8), squeeze=False)
    labels = list(dict.fromkeys(r["label"] for r in table["rows"]))
    palette = dict(zip(labels, sns.color_palette("tab10", len(labels))))
    shown: list[str] = []
    paper_drawn = False
    for ax, metric in zip(axes[0], metrics):
        present, ok = bar_rows(long, table, metric)
        part = long[(long.metric == metric) & (long["style"].isin(SCOPE_ORDER))]
        ax.set_title(f"{metric} ({'lower' if metric in LOWER_IS_BETTER else 'higher'} is better)")
        ax.set_ylabel(metric)
        ax.set_xticks(range(len(SCOPE_ORDER)), SCOPE_ORDER)
        ax.set_xlim(-0.5, len(SCOPE_ORDER) - 0.5)
        if not present:
            _note(ax, _why_empty(part, metric))
            continue
        width = 0.8 / len(present)
        for k, label in enumerate(present):
            rows = ok[ok.label == label].drop_duplicates("style").set_index("style")
            xs = [j + (k - (len(present) - 1) / 2) * width for j, sc in enumerate(SCOPE_ORDER) if sc in rows.index]
            scopes = [sc for sc in SCOPE_ORDER if sc in rows.index]
            ax.bar(xs, rows.loc[scopes, "ours"], width=width * 0.95, color=palette[label],
                   yerr=_error_bars(rows.loc[scopes]), capsize=2, error_kw={"elinewidth": 0.8})
            if "all" in rows.index and np.isfinite(rows.loc["all", "paper"]):
                ax.plot([xs[-1]], [rows.loc["all", "paper"]], marker="_", color="black", markersize=14, mew=2)
                paper_drawn = True
            if label not in shown:
                shown.append(label)
        missing = [lab for lab in labels if lab not in present]
        ax.set_xlabel("\n".join(["style"] + textwrap.wrap("no result: " + ", ".join(missing), 60) if missing
                                 else ["style"]), fontsize=8 if missing else None)
        ax.set_xticks(range(len(SCOPE_ORDER)), style_ticks(part, metric), fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=palette[lab]) for lab in shown]
    names = list(shown)
    if paper_drawn:
        handles.append(plt.Line2D([], [], marker="_", color="black", linestyle="", markersize=14, mew=2))
        names.append("paper (all styles)")
    if handles:
        fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), title="method", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def paired_differences(long: pd.DataFrame, table: dict, path: Path, title: str) -> Path:
    """Beyond the papers: each row minus its reference row (all styles), with the paired 95%
    bootstrap interval, one panel per metric; filled markers are significant after Holm."""
    plt, _ = _plt()
    metrics = table["metrics"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.8 * len(metrics) + 3.0, 0.45 * len(table["rows"]) + 1.8),
                             squeeze=False, sharey=True)
    part = long[(long["style"] == "all") & (long.vs != "")] if "vs" in long else long.iloc[0:0]
    labels = [r["label"] for r in table["rows"] if r["label"] in set(part.label)]
    for ax, metric in zip(axes[0], metrics):
        m = part[part.metric == metric].set_index("label")
        better = "lower" if metric in LOWER_IS_BETTER else "higher"
        ax.set_title(f"{metric} ({better} is better)", fontsize=9)
        ax.axvline(0, color="#888", lw=1)
        ok = [lab for lab in labels if lab in m.index and np.isfinite(m.loc[lab, "ref_diff"])]
        if not ok:
            _note(ax, f"{metric}: no paired differences (no results for these rows in this run)")
            continue
        for lab in ok:
            y, r = labels.index(lab), m.loc[lab]
            ax.errorbar(r.ref_diff, y, xerr=[[r.ref_diff - r.ref_lo], [r.ref_hi - r.ref_diff]], fmt="o",
                        color="#c44e52" if r.ref_sig else "#4c72b0", mfc="#c44e52" if r.ref_sig else "white",
                        capsize=3)
        ax.set_xlabel("difference, 95% interval")
    if labels:
        vs = part.drop_duplicates("label").set_index("label").vs
        axes[0, 0].set_yticks(range(len(labels)), [f"{lab} − {vs[lab]}" for lab in labels], fontsize=8)
        axes[0, 0].set_ylim(len(labels) - 0.5, -0.5)
    else:
        axes[0, 0].set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def attribute_bars(df: pd.DataFrame, path: Path, metrics=("SCOOT", "SSIM", "FSIM")) -> Path:
    """Beyond the papers: each method's metrics split by FS2K annotation codes of the test photo."""
    plt, sns = _plt()
    metrics = [m for m in metrics if not df.empty and m in set(df.metric)] or ["SCOOT"]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(13, 3.2 * len(metrics)), squeeze=False)
    for ax, metric in zip(axes[:, 0], metrics):
        part = df[df.metric == metric].copy() if not df.empty else df
        ax.set_title(f"{metric} by FS2K annotation of the test photo (n = test photos)")
        ax.set_ylabel(metric)
        if part.empty:
            _note(ax, f"{metric}: no per-image values in this run")
            continue
        # each group with its size: the test photos with that code (the same for every method)
        sizes = part.groupby(["attribute", "code"]).n_images.max()
        part["group"] = [f"{attribute_name(a, c)}\n(n={sizes[(a, c)]})" for a, c in zip(part.attribute, part.code)]
        sns.barplot(data=part, x="group", y="mean", hue="variant", ax=ax, errorbar=None)
        ax.set_xlabel("annotation")
        ax.tick_params(axis="x", rotation=45, labelsize=8)
        ax.legend(fontsize=7, title="method", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return _save(fig, path)


DVC_LOSSES = "dvc_losses"  # beside metrics.json: per-epoch losses of each variant for `dvc plots`


def loss_series(runs: dict[str, Path], folder: Path) -> list[Path]:
    """`<folder>/<variant>.csv`: epoch, generator and discriminator loss (the sums of the weighted
    G_* and D* terms of losses.csv), the same two columns for every model, for `dvc plots`."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.csv"):
        old.unlink()
    written = []
    for name, run in runs.items():
        csv = run / "losses.csv"
        if not csv.is_file():
            continue
        df = pd.read_csv(csv)
        g = df[[c for c in df.columns if c.startswith("G_")]].sum(axis=1)
        d = df[[c for c in df.columns if c.startswith("D")]].sum(axis=1)
        series = pd.DataFrame({"epoch": df.epoch, "generator": g.round(6), "discriminator": d.round(6)})
        path = folder / f"{name}.csv"
        write_text(path, series.to_csv(index=False))
        written.append(path)
    return written


def training_curves(runs: dict[str, Path], path: Path) -> Path:
    """Per-epoch losses of every trained variant (first seed), one panel each."""
    plt, _ = _plt()
    from matplotlib.ticker import MaxNLocator

    names = list(runs)
    cols = min(3, max(1, len(names)))
    rows = max(1, int(np.ceil(len(names) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        csv = runs[name] / "losses.csv"
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (weighted)")
        if not csv.is_file():
            _note(ax, f"no losses.csv in {runs[name]}")
            continue
        df = pd.read_csv(csv)
        for col in [c for c in df.columns if c.startswith(("G_", "D"))]:
            ax.plot(df.epoch, df[col], marker="o" if len(df) < 15 else None, label=col)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    if not names:
        _note(axes.flat[0], "no variants trained in this run")
    fig.suptitle("Training losses per epoch")
    fig.tight_layout()
    return _save(fig, path)


def _pick_ids(manifest: pd.DataFrame, k: int) -> list[str]:
    ids: list[str] = []
    per_style = max(1, k // 3)
    for s in range(3):
        ids += sorted(manifest[manifest["style"] == s].id)[:per_style]
    extra = [i for i in sorted(manifest.id) if i not in ids]
    return (ids + extra)[:k]


def comparison_grid(manifest: pd.DataFrame, sources: dict[str, dict[str, Path] | None], k: int, path: Path,
                    title: str) -> Path:
    """Rows of test photos: photo, ground truth, then each method's drawing (None = no results)."""
    root = Path(manifest.attrs["root"])
    ids = _pick_ids(manifest, k)
    by_id = manifest.set_index("id")
    absent = [n for n, files in sources.items() if not files]
    present = {n: files for n, files in sources.items() if files}
    rows, row_titles = [], []
    for image_id in ids:
        r = by_id.loc[image_id]
        row = [read_array(root / r.photo, "RGB"), read_array(root / r.sketch, "L")]
        for files in present.values():
            f = files.get(image_id)
            row.append(read_array(f, "RGB") if f is not None and Path(f).is_file() else None)
        rows.append(row)
        row_titles.append(STYLES[int(r["style"])])
    if absent:
        title += "   (no results: " + ", ".join(absent) + ")"
    return save_grid(path, rows, col_titles=["photo", "ground truth"] + list(present), row_titles=row_titles,
                     title=title, cell=150)


def styles_grid(manifest: pd.DataFrame, cross: dict[str, Path], path: Path) -> Path:
    """Each style-aware model draws one test photo in Style1, Style2 and Style3."""
    root = Path(manifest.attrs["root"])
    rows, titles = [], []
    for name, folder in cross.items():
        files = sorted((folder / STYLES[0]).glob("*.png")) if folder.is_dir() else []
        if not files:
            rows.append([None] * 4)
            titles.append(f"{name}?")
            continue
        image_id = files[0].stem
        r = manifest.set_index("id").loc[image_id]
        rows.append([read_array(root / r.photo, "RGB")] + [read_array(folder / s / f"{image_id}.png") for s in STYLES])
        titles.append(name[:10])
    if not rows:
        rows, titles = [[None] * 4], ["none"]
    return save_grid(path, rows, col_titles=["photo"] + [f"as {s}" for s in STYLES], row_titles=titles,
                     title="One photo in all three styles (style-aware models)", cell=160)


def make_plots(spec: dict, results: Path, manifest_path: Path, out: Path) -> list[Path]:
    """spec: {tables, variants: {name: {seeds, style_aware}}, released: {name: {path, available, label}},
    grid_rows}."""
    results, out = Path(results), Path(out)
    manifest = load_manifest(manifest_path, "test")
    long = pd.concat([pd.read_parquet(results / "tables" / f"{t}.parquet") for t in spec["tables"]], ignore_index=True)
    made = []
    t1 = spec["figure_tables"].get("methods")
    table1 = spec["tables"][t1] if t1 else {"rows": [], "metrics": []}
    made.append(metric_bars(long[long.table == t1] if t1 else long.iloc[0:0], table1, ["FID", "LPIPS"],
                            out / "fid_lpips_per_style.png", "FID and LPIPS per style (HIDA Figure 4)"))
    for tname, table in spec["tables"].items():
        if all("pending" in r for r in table["rows"]):
            continue
        made.append(metric_bars(long[long.table == tname], table, table["metrics"],
                                out / f"metrics_per_style_{tname}.png", table["title"] + " — per style"))
    for tname, table in spec["tables"].items():
        if _has_comparisons(table):
            ref = "the row above" if table["reference"] == "previous" else table["reference"]
            made.append(paired_differences(long[long.table == tname], table, out / f"paired_{tname}.png",
                                           f"{table['title']}: each row minus {ref} "
                                           "(paired bootstrap; filled = significant, Holm)"))
    attributes = results / "tables" / "attributes.parquet"
    labels = variant_labels(spec["tables"])  # figures name methods as the tables do
    by_attribute = pd.read_parquet(attributes) if attributes.is_file() else pd.DataFrame()
    if len(by_attribute):
        by_attribute["variant"] = by_attribute["variant"].map(lambda v: labels.get(v, v))
    made.append(attribute_bars(by_attribute, out / "metrics_by_attribute.png"))
    variants = spec["variants"]
    runs = {v: results / "checkpoints" / v / str(info["seeds"][0]) for v, info in variants.items()}
    made.append(training_curves({labels.get(v, v): run for v, run in runs.items()}, out / "training_curves.png"))
    loss_series(runs, results / DVC_LOSSES)  # files by variant id (DVC keys)

    def sample_files(v: str) -> dict[str, Path] | None:
        if v not in variants:
            return None
        base = results / "samples" / v / str(variants[v]["seeds"][0])
        return {p.stem: p for s in STYLES for p in (base / s).glob("*.png")}

    def released_files(name: str) -> dict[str, Path] | None:
        info = spec["released"].get(name, {})
        return index_results(Path(info["path"])) if info.get("available") else None

    def table_sources(tname: str) -> dict[str, dict | None]:
        src = {}
        for r in spec["tables"][tname]["rows"]:
            if "variant" in r:
                src[r["label"]] = sample_files(r["variant"])
            elif "released" in r:
                src[r["label"]] = released_files(r["released"])
        return src

    k = spec.get("grid_rows", 6)
    for fig, key, title in (("grid_methods", "methods", "Photo, ground truth and each method (HIDA Figure 3)"),
                            ("grid_ablation", "ablation", "Ablation variants (HIDA Figure 6)"),
                            ("grid_dog", "dog", "DOG placements (HIDA Figure 9)")):
        table = spec["figure_tables"].get(key)
        sources = table_sources(table) if table else {}
        made.append(comparison_grid(manifest, sources, k, out / f"{fig}.png",
                                    title if table else f"{title}: no table configured (report.figures.{key})"))
    cross = {v: results / "samples" / v / str(info["seeds"][0]) / "cross"
             for v, info in variants.items() if info["style_aware"]}
    made.append(styles_grid(manifest, cross, out / "grid_styles.png"))
    log.info("plots: %d figures in %s", len(made), out)
    return made


def variant_labels(tables: dict) -> dict[str, str]:
    """variant id -> the label of its first row in the tables (the name readers know it by)."""
    labels: dict[str, str] = {}
    for table in tables.values():
        for row in table["rows"]:
            if row.get("variant"):
                labels.setdefault(row["variant"], row["label"])
    return labels


def plot_spec(cfg: dict, released_available: dict[str, bool]) -> dict:
    from facesketch.config import run_variants, style_aware, weights_dir
    from facesketch.models.released_hida import pretrained_missing

    missing = pretrained_missing(cfg, weights_dir(cfg))
    return {
        "tables": cfg["tables"],
        "variants": {v: {"seeds": cfg["resolved"][v]["seeds"], "style_aware": style_aware(cfg["resolved"][v])}
                     for v in run_variants(cfg) if v not in missing
                     and v not in cfg.get("apdrawing", {}).get("variants", [])},  # APDrawing's: Table 4 only
        "released": {k: {"path": v["path"], "available": released_available.get(k, False)}
                     for k, v in cfg.get("released", {}).items()},
        "grid_rows": cfg["report"]["grid_rows"],
        "figure_tables": dict(cfg["report"]["figures"]),
    }


def _has_comparisons(table: dict) -> bool:
    return bool(table.get("reference")) and not all("pending" in r for r in table["rows"])


def plot_files(cfg: dict) -> dict[str, str]:
    """{figure name: file name} of every figure make_plots draws (the plots rule's outputs)."""
    names = ["fid_lpips_per_style"]
    names += [f"metrics_per_style_{t}" for t, table in cfg["tables"].items()
              if not all("pending" in r for r in table["rows"])]
    names += [f"paired_{t}" for t, table in cfg["tables"].items() if _has_comparisons(table)]
    names += ["metrics_by_attribute", "training_curves", "grid_methods", "grid_ablation", "grid_dog", "grid_styles"]
    return {n: f"{n}.png" for n in names}
