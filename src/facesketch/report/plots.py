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
from facesketch.fileio import atomic_path, read_array
from facesketch.metrics.evaluate import LOWER_IS_BETTER, index_results
from facesketch.report.grid import save_grid

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


def _interval_bars(ax, ok: pd.DataFrame, present: list[str]) -> None:
    """The cells' 95% intervals on seaborn's bars (one bar container per method, styles in order)."""
    if "ours_lo" not in ok or len(ax.containers) != len(present):
        return
    cells = ok.set_index(["label", "style"])
    for label, bars in zip(present, ax.containers):
        for style, bar in zip(STYLES, bars):
            if (label, style) not in cells.index:
                continue
            r = cells.loc[(label, style)]
            if np.isfinite(r.ours_lo) and np.isfinite(r.ours_hi):
                ax.errorbar(bar.get_x() + bar.get_width() / 2, r.ours, fmt="none", ecolor="#333", capsize=2, lw=0.8,
                            yerr=[[r.ours - r.ours_lo], [r.ours_hi - r.ours]])


def metric_bars(long: pd.DataFrame, table: dict, metrics: list[str], path: Path, title: str) -> Path:
    """One panel per metric: bars per style (x) and method (hue) with their 95% intervals."""
    plt, sns = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics) + 1.5, 3.8), squeeze=False)
    labels = [r["label"] for r in table["rows"]]
    palette = dict(zip(labels, sns.color_palette("tab10", len(labels))))
    for ax, metric in zip(axes[0], metrics):
        part = long[(long.metric == metric) & (long["style"].isin(STYLES))]
        ok = part[np.isfinite(part.ours)]
        ax.set_title(f"{metric} ({'lower' if metric in LOWER_IS_BETTER else 'higher'} is better)")
        ax.set_xlabel("style")
        ax.set_ylabel(metric)
        if ok.empty:
            _note(ax, _why_empty(part, metric))
            ax.set_xticks(range(3), STYLES)
            ax.set_xlim(-0.5, 2.5)
            continue
        present = [lab for lab in labels if lab in set(ok.label)]
        sns.barplot(data=ok, x="style", y="ours", hue="label", order=list(STYLES), hue_order=present,
                    palette=palette, ax=ax, errorbar=None)
        _interval_bars(ax, ok, present)
        missing = sorted(set(labels) - set(ok.label))
        if missing:
            ax.set_xlabel("style\n" + "\n".join(textwrap.wrap("no result: " + ", ".join(missing), 60)),
                          fontsize=8)
        if ax.get_legend():
            ax.get_legend().remove()
    handles = [plt.Rectangle((0, 0), 1, 1, color=palette[lab]) for lab in labels]
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), title="method", fontsize=8)
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
        ax.set_title(f"{metric} by FS2K annotation of the test photo (codes as in anno_test.json)")
        ax.set_ylabel(metric)
        if part.empty:
            _note(ax, f"{metric}: no per-image values in this run")
            continue
        part["group"] = part.attribute + "=" + part.code.astype(str)
        sns.barplot(data=part, x="group", y="mean", hue="variant", ax=ax, errorbar=None)
        ax.set_xlabel("annotation = code")
        ax.tick_params(axis="x", rotation=45, labelsize=8)
        ax.legend(fontsize=7, title="method", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return _save(fig, path)


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
    made.append(attribute_bars(pd.read_parquet(attributes) if attributes.is_file() else pd.DataFrame(),
                               out / "metrics_by_attribute.png"))
    variants = spec["variants"]
    runs = {v: results / "checkpoints" / v / str(info["seeds"][0]) for v, info in variants.items()}
    made.append(training_curves(runs, out / "training_curves.png"))

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


def plot_spec(cfg: dict, released_available: dict[str, bool]) -> dict:
    from facesketch.config import run_variants, style_aware

    return {
        "tables": cfg["tables"],
        "variants": {v: {"seeds": cfg["resolved"][v]["seeds"], "style_aware": style_aware(cfg["resolved"][v])}
                     for v in run_variants(cfg)},
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
