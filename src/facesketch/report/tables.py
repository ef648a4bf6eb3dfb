"""The papers' tables from per-image metrics: our value beside the paper's, per style.

``build_tables(spec, metric_files, out)`` writes, for every configured table,
``<table>.parquet`` (long form: one row per method x metric x style), ``<table>.md``,
``<table>.tex`` and ``<table>.html``; plus a ``metrics.json`` (DVC metrics) and a
``per_style.csv`` (DVC plots) outside the tables folder, so DVC can track both separately.
A row without results says why (not in this run, not trained yet, weights missing, released
folder absent) instead of showing a blank or a zero.

Aggregation: image metrics are averaged over the test images of a style (or all of them) for
each seed, then over seeds (mean and standard deviation); FID and KID are computed on each
seed's set (facesketch.metrics.evaluate) and averaged over seeds. Every cell also carries a 95%
interval (ours_lo, ours_hi; shown as value ± half its width) and, where the table names a
``reference`` row, a paired comparison with it (facesketch.report.uncertainty).
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from facesketch import STYLES
from facesketch.fileio import write_json, write_parquet, write_text
from facesketch.metrics.catalogue import LOWER_IS_BETTER, METRICS

log = logging.getLogger(__name__)
SCOPES = ("all",) + STYLES
SIGNIFICANT = "†"  # after a cell whose paired difference from the reference row is significant (Holm)


def load_metrics(files: list[Path]) -> pd.DataFrame:
    frames = [pd.read_parquet(f) for f in files if Path(f).is_file()]
    if not frames:
        return pd.DataFrame(columns=["variant", "seed", "style_asked", "style_gt", "image_id", "metric", "value",
                                     "scope", "n_images", "reason", "n_expected"]).astype({"value": float})
    return pd.concat(frames, ignore_index=True)


def aggregate(df: pd.DataFrame, source: str, metric: str, scope: str, statistics: dict | None = None) -> dict:
    """{value, std, lo, hi, n_images, n_seeds, reason, n_used, n_expected} of one method, metric and style
    scope; n_used/n_expected: the images the fewest-imaged seed averaged, of the test images expected."""
    agg = _aggregate(df, source, metric, scope)
    agg["lo"] = agg["hi"] = math.nan
    if np.isfinite(agg["value"]):
        from facesketch.report.uncertainty import cell_interval

        st = statistics or {}
        agg["lo"], agg["hi"] = cell_interval(df, source, metric, scope, int(st.get("replicates", 2000)),
                                             float(st.get("alpha", 0.05)), agg["value"])
    return agg


def _aggregate(df: pd.DataFrame, source: str, metric: str, scope: str) -> dict:
    d = df[(df.variant == source) & (df.metric == metric)]
    if METRICS[metric].scope == "set":
        d = d[(d.scope == "set") & (d.style_gt == scope)]
        per_seed = d.groupby("seed").value.first()
        n_images = int(d.n_images.max()) if len(d) else 0
        ok = d[np.isfinite(d.value)]
        n_used = int(ok.n_images.min()) if len(ok) else 0
        n_expected = int(d.n_expected.max()) if "n_expected" in d and d.n_expected.notna().any() else n_images
    else:
        d = d[d.scope == "image"]
        if scope != "all":
            d = d[d.style_gt == scope]
        per_seed = d.groupby("seed").value.mean()  # NaN-skipping: one bad image does not poison the mean
        counts = d.groupby("seed").value.count()
        n_images = int(counts.max()) if len(d) else 0
        n_used = int(counts[counts > 0].min()) if (counts > 0).any() else 0
        n_expected = int(d.groupby("seed").size().max()) if len(d) else 0  # one row per test image, NaN or not
    reasons = [r for r in d.reason.unique() if r] if "reason" in d else []
    finite = per_seed[np.isfinite(per_seed)]
    counted = {"n_used": n_used, "n_expected": n_expected}
    if d.empty:
        return {"value": math.nan, "std": math.nan, "n_images": 0, "n_seeds": 0, "reason": "no results", **counted}
    if finite.empty:
        return {"value": math.nan, "std": math.nan, "n_images": n_images, "n_seeds": 0,
                "reason": reasons[0] if reasons else "not computed", **counted}
    return {"value": float(finite.mean()), "std": float(finite.std()) if len(finite) > 1 else math.nan,
            "n_images": n_images, "n_seeds": int(len(finite)),
            "reason": (f"{len(reasons)} kinds of missing values, e.g. {reasons[0]}" if reasons else ""), **counted}


def _row_status(row: dict, spec: dict) -> tuple[str | None, str]:
    """(metrics source name or None, why there are no results)."""
    if "pending" in row:
        return None, row["pending"]
    if "variant" in row:
        v = row["variant"]
        if v in spec.get("weights_missing", {}):
            return None, spec["weights_missing"][v]
        if v in spec.get("data_missing", {}):  # a data set the user provides (APDrawing) is not there
            return None, spec["data_missing"][v]
        if v not in spec["run_variants"]:
            return None, f"variant {v} is not in this run (run.variants)"
        return v, ""
    r = row["released"]
    info = spec["released"].get(r, {})
    if not info.get("available"):
        return None, f"released results not found at {info.get('path', '?')}"
    return f"released:{r}", ""


def build_long(spec: dict, metrics: pd.DataFrame) -> pd.DataFrame:
    records = []
    for tname, table in spec["tables"].items():
        for i, row in enumerate(table["rows"]):
            source, why = _row_status(row, spec)
            for metric in table["metrics"]:
                paper = row.get("paper", {}).get(metric)
                for scope in SCOPES:
                    if source is None:
                        agg = {"value": math.nan, "std": math.nan, "lo": math.nan, "hi": math.nan, "n_images": 0,
                               "n_seeds": 0, "reason": why, "n_used": 0, "n_expected": 0}
                    else:
                        agg = aggregate(metrics, source, metric, scope, spec.get("statistics"))
                    records.append({
                        "table": tname, "row": i, "label": row["label"], "source": source or "", "metric": metric,
                        "style": scope, "ours": agg["value"], "ours_std": agg["std"],
                        "ours_lo": agg["lo"], "ours_hi": agg["hi"],
                        "paper": paper if scope == "all" and paper is not None else math.nan,
                        "n_images": agg["n_images"], "n_seeds": agg["n_seeds"], "reason": agg["reason"],
                        "n_used": agg["n_used"], "n_expected": agg["n_expected"]})
    df = pd.DataFrame(records)
    if df.empty:
        return df
    df["diff"] = df.ours - df.paper
    df["rank"] = 0
    for _, idx in df.groupby(["table", "metric", "style"]).groups.items():
        part = df.loc[idx]
        ok = part[np.isfinite(part.ours)]
        order = ok.ours.sort_values(ascending=part.metric.iloc[0] in LOWER_IS_BETTER)
        for rank, j in enumerate(order.index[:2], start=1):
            df.loc[j, "rank"] = rank
    from facesketch.report.uncertainty import add_comparisons

    return add_comparisons(spec, metrics, df)


def _fmt(v: float, metric: str, dash: str = "—") -> str:
    if v is None or not np.isfinite(v):
        return dash
    return f"{v:.{METRICS[metric].decimals}f}"


def count_note(n_used: int, n_expected: int) -> str:
    """' (31/33)' when a value averages fewer images than the test set has; '' otherwise."""
    if n_expected and n_used < n_expected:
        return f" ({n_used}/{n_expected})"
    return ""


def _value_text(r, pm: str = "±", dash: str = "—") -> str:
    """'value ± half-width of the 95% interval' (the value alone when there is no interval),
    then the significance mark: every table format builds its cell's number here."""
    ours = _fmt(r.ours, r.metric, dash)
    lo, hi = r.get("ours_lo", math.nan), r.get("ours_hi", math.nan)
    if np.isfinite(r.ours) and np.isfinite(lo) and np.isfinite(hi):
        ours += f" {pm} {_fmt((hi - lo) / 2, r.metric, dash)}"
    if bool(r.get("ref_sig", False)):
        ours += SIGNIFICANT
    return ours


def _cell(r, mark, pm: str = "±", dash: str = "—") -> str:
    """'ours [± half-width][†] / paper (diff)', ours passed through mark(text, rank) when ranked 1 or 2."""
    ours = _value_text(r, pm, dash)
    if r["rank"] in (1, 2) and np.isfinite(r.ours):
        ours = mark(ours, r["rank"])
    if np.isfinite(r.ours):
        ours += count_note(int(r.get("n_used", 0)), int(r.get("n_expected", 0)))
    if np.isfinite(r.paper):
        diff = f"{r['diff']:+.{METRICS[r.metric].decimals}f}" if np.isfinite(r["diff"]) else dash
        return f"{ours} / {_fmt(r.paper, r.metric, dash)} ({diff})"
    return ours


def caption(spec: dict, table: dict, part: pd.DataFrame, scope: str) -> str:
    m = spec["metrics"]
    n_img = int(part.n_images.max()) if len(part) else 0
    n_seed = int(part.n_seeds.max()) if len(part) else 0
    framing = ("aligned 250x250 ground truth (HIDA)" if m.get("framing", "aligned") == "aligned"
               else "ground-truth crop at the archive's resolution, results resized to it (FS2K toolbox)")
    arrows = ", ".join(f"{x} {'↓' if x in LOWER_IS_BETTER else '↑'}" for x in table["metrics"])
    text = (f"{table['title']} — {'all styles' if scope == 'all' else scope}. Source: {table.get('source', '')}. "
            f"Cells: ours ± half the width of its 95% interval (bootstrap over test images{_seeds_text(n_seed)}; "
            f"FID and KID by resampling the generated set's features) "
            f"[(images averaged/test images), when fewer] / paper (ours − paper); "
            f"**best**, _second_ of ours per column{_reference_text(table)}. "
            f"{arrows}. Protocol: grey (MATLAB rgb2gray), {framing}, MATLAB bicubic resize; "
            f"up to {n_img} test images and {n_seed} seed(s) per row. Run: {spec.get('name', '')}.")
    if table.get("note"):
        text += " " + table["note"]
    return text + training_notes(spec, table, part, scope)


FID_WARN_N = 200  # FID of two samples of one distribution: ~125 at n=46, ~12 at n=1000 (256-d features)


def training_notes(spec: dict, table: dict, part: pd.DataFrame, scope: str) -> str:
    """What the captions must say about the rows: precision, checkpoint selection, FID's n."""
    info = spec.get("variant_info", {})
    rows = [(r["label"], info[r["variant"]]) for r in table["rows"] if r.get("variant") in info]
    text = ""
    if rows:
        fast = [f"{label} ({i['precision']})" for label, i in rows if i["precision"] != "fp32"]
        text += " Training: fp32 (TF32 matmuls/convolutions on GPUs)"
        text += f"; autocast fast mode, not the authors' fp32: {', '.join(fast)}." if fast else "."
        for rule, words in (("test", "the best test-set {m} (as the released HIDA code; optimistic)"),
                            ("val", "the best {m} on a held-out part of the training set")):
            chosen = [label for label, i in rows if i.get("select", "final") == rule]
            if chosen:
                m = "FID (SCOOT where FID's weights were missing: the run's selection.json)"
                text += f" Checkpoint chosen by {words.format(m=m)}: {', '.join(chosen)}."
    if "FID" in table["metrics"]:
        fid = part[part.metric == "FID"]
        ns = [f"{table['rows'][int(r.row)]['label']} {int(r.n_images)}" for r in fid.itertuples() if r.n_images]
        if ns:
            text += f" FID over n images per row: {', '.join(ns)}."
        small = [n for n in fid.n_images if 0 < n < FID_WARN_N]
        if small:
            text += (f" Warning: FID on fewer than {FID_WARN_N} images (n = {min(small)}) is strongly biased upward "
                     "(about 125 for two samples of one distribution at n = 46, 12 at n = 1000); "
                     "compare only at equal n.")
    return text


def _seeds_text(n_seed: int) -> str:
    return f" and {n_seed} seeds, hierarchically" if n_seed > 1 else ""


def _reference_text(table: dict) -> str:
    ref = table.get("reference")
    if not ref:
        return ""
    against = "the row above it" if ref == "previous" else f"{ref}"
    return (f"; {SIGNIFICANT} = differs from {against} on the same test images (paired bootstrap, "
            "Holm-corrected over the table, p < 0.05)")


def _notes(table: dict, part: pd.DataFrame) -> dict[str, list[str]]:
    """Why cells are empty: {reason: [row labels]}, each reason once."""
    notes: dict[str, list[str]] = {}
    for i, row in enumerate(table["rows"]):
        for reason in part[(part.row == i) & (part.reason != "")].reason.unique():
            labels = notes.setdefault(reason, [])
            if row["label"] not in labels:
                labels.append(row["label"])
    return notes


def to_markdown(spec: dict, tname: str, long: pd.DataFrame) -> str:
    table = spec["tables"][tname]
    out = []
    for scope in SCOPES:
        part = long[(long.table == tname) & (long["style"] == scope)]
        out.append(f"### {table['title']} — {'all styles' if scope == 'all' else scope}\n")
        out.append(caption(spec, table, part, scope) + "\n")
        out.append("| method | " + " | ".join(table["metrics"]) + " |")
        out.append("|---|" + "---|" * len(table["metrics"]))
        for i, row in enumerate(table["rows"]):
            cells = [_cell(part[(part.row == i) & (part.metric == m)].iloc[0],
                           lambda s, k: f"**{s}**" if k == 1 else f"_{s}_") for m in table["metrics"]]
            out.append(f"| {row['label']} | " + " | ".join(cells) + " |")
        out.append("")
    notes = _notes(table, long[long.table == tname])  # once per table, for every block above
    if notes:
        out += [f"Notes on {table['title']}:", ""] + [f"- {reason} ({', '.join(labels)})"
                                                   for reason, labels in notes.items()] + [""]
    return "\n".join(out)


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w])_(.+?)_(?![\w])")


def _markup(text: str, bold: tuple[str, str], italic: tuple[str, str]) -> str:
    """The caption's Markdown emphasis (**best**, _second_) in another markup."""
    text = _BOLD.sub(lambda m: bold[0] + m.group(1) + bold[1], text)
    return _ITALIC.sub(lambda m: italic[0] + m.group(1) + italic[1], text)


def _latex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("±", r"$\pm$"), (SIGNIFICANT, r"$^\dagger$"), ("—", "--"), ("−", "-"),
                 ("↓", r"$\downarrow$"), ("↑", r"$\uparrow$"),
                 ("*", "")):
        s = s.replace(a, b)
    return s


def to_latex(spec: dict, tname: str, long: pd.DataFrame) -> str:
    table = spec["tables"][tname]
    part = long[(long.table == tname) & (long["style"] == "all")]
    cols = table["metrics"]
    mark = lambda text, k: (r"\textbf{%s}" if k == 1 else r"\underline{%s}") % text  # noqa: E731
    head = " & ".join(c + (r" $\downarrow$" if c in LOWER_IS_BETTER else r" $\uparrow$") for c in cols)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{l" + "c" * len(cols) + "}",
             r"\toprule", f"Method & {head} \\\\", r"\midrule"]
    for i, row in enumerate(table["rows"]):
        cells = [_cell(part[(part.row == i) & (part.metric == m)].iloc[0], mark, pm=r"$\pm$", dash="--")
                 .replace(SIGNIFICANT, r"$^\dagger$") for m in cols]
        lines.append(_latex_escape(row["label"]) + " & " + " & ".join(cells) + r" \\")
    cap = _markup(caption(spec, table, part, "all"), ("\x01", "\x02"), ("\x03", "\x04"))  # survive escaping
    cap = _latex_escape(cap).translate({1: r"\textbf{", 2: "}", 3: r"\textit{", 4: "}"})
    lines += [r"\bottomrule", r"\end{tabular}", r"\caption{" + cap + "}",
              r"\label{tab:" + tname + "}", r"\end{table}", ""]
    return "\n".join(lines)


def to_html(spec: dict, tname: str, long: pd.DataFrame) -> str:
    import html

    table = spec["tables"][tname]
    mark = lambda text, k: f"<b>{text}</b>" if k == 1 else f"<i>{text}</i>"  # noqa: E731
    body = []
    for scope in SCOPES:
        part = long[(long.table == tname) & (long["style"] == scope)]
        body.append(f"<h3>{html.escape(table['title'])} — {'all styles' if scope == 'all' else scope}</h3>")
        cap = _markup(html.escape(caption(spec, table, part, scope)), ("<b>", "</b>"), ("<i>", "</i>"))
        heads = "".join(f"<th>{html.escape(m)}</th>" for m in table["metrics"])
        body.append(f"<p>{cap}</p><table><tr><th>method</th>{heads}</tr>")
        for i, row in enumerate(table["rows"]):
            cells = "".join(f"<td>{_cell(part[(part.row == i) & (part.metric == m)].iloc[0], mark)}</td>"
                            for m in table["metrics"])
            body.append(f"<tr><td>{html.escape(row['label'])}</td>{cells}</tr>")
        body.append("</table>")
    notes = _notes(table, long[long.table == tname])  # once per table, for every block above
    if notes:
        body.append(f"<p>Notes on {html.escape(table['title'])}:</p>")
        body.append("<ul>" + "".join(f"<li>{html.escape(r)} ({html.escape(', '.join(ls))})</li>"
                                     for r, ls in notes.items()) + "</ul>")
    style = ("<style>body{font-family:sans-serif;font-size:14px}table{border-collapse:collapse;margin-bottom:1em}"
             "td,th{border:1px solid #bbb;padding:3px 8px;text-align:center}td:first-child{text-align:left}</style>")
    return f"<html><head><meta charset='utf-8'>{style}</head><body>{''.join(body)}</body></html>\n"


DVC_PLOTS = "dvc_plots"  # beside metrics.json: one CSV per metric for `dvc plots`


def metric_key(source: str, label: str) -> str:
    """A key for metrics.json without spaces or `&` (DVC flattens keys into `table.key.metric`
    and its command line cannot select keys with spaces): the variant id, else the label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", source or label).strip("_")


def write_dvc_plots(ours: pd.DataFrame, folder: Path) -> None:
    """`<folder>/<metric>.csv`: every scored method once (by variant id), per style and over all
    styles, with the paper's value where it reports one; DVC draws one bar chart per metric."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.csv"):
        old.unlink()
    if not len(ours):
        return
    for metric, part in ours.groupby("metric", sort=True):
        part = part.drop_duplicates(["source", "label", "style"]).drop_duplicates(["source", "style"])
        rows = [{"method": f"{r.label} [{r.style}]", "variant": metric_key(r.source, r.label), "style": r.style,
                 "ours": round(float(r.ours), 6), "paper": r.paper}
                for r in part.sort_values(["source", "style"]).itertuples()]
        write_text(folder / f"{metric_key('', metric)}.csv", pd.DataFrame(rows).to_csv(index=False))


def build_tables(spec: dict, metric_files: list[Path], out: Path, metrics_json: Path | None = None,
                 plots_csv: Path | None = None, manifest: Path | None = None) -> pd.DataFrame:
    out = Path(out)
    metrics_json = Path(metrics_json or out.parent / "metrics.json")
    plots_csv = Path(plots_csv or out.parent / "per_style.csv")
    metrics = load_metrics(metric_files)
    long = build_long(spec, metrics)
    for tname in spec["tables"]:
        part = long[long.table == tname].reset_index(drop=True)
        write_parquet(out / f"{tname}.parquet", part)
        write_text(out / f"{tname}.md", to_markdown(spec, tname, long))
        write_text(out / f"{tname}.tex", to_latex(spec, tname, long))
        write_text(out / f"{tname}.html", to_html(spec, tname, long))
    if manifest is not None:
        from facesketch.data.fs2k import load_manifest

        attrs = attribute_breakdown(metrics, load_manifest(manifest, "test"))
        write_parquet(out / "attributes.parquet", attrs)
        write_text(out / "attributes.md", attributes_markdown(attrs))
    ours = long[np.isfinite(long.ours)] if len(long) else long
    summary: dict = {}
    for r in ours[ours["style"] == "all"].itertuples() if len(ours) else []:
        key = metric_key(r.source, r.label)
        summary.setdefault(r.table, {}).setdefault(key, {})[r.metric] = round(float(r.ours), 6)
    write_json(metrics_json, summary)
    cols = ["table", "label", "style", "metric", "ours", "paper"]
    write_text(plots_csv, (long[cols] if len(long) else pd.DataFrame(columns=cols)).to_csv(index=False))
    write_dvc_plots(ours, plots_csv.parent / DVC_PLOTS)
    log.info("tables: %d written to %s", len(spec["tables"]), out)
    return long


ATTRIBUTES = ("gender", "smile", "frontal_face", "hair", "earring", "hair_color")
# What the codes of FS2K's anno_*.json mean (FS2K's README, "Annotations")
ATTRIBUTE_CODES = {
    "gender": {0: "male", 1: "female"},
    "smile": {0: "smiling", 1: "not smiling"},
    "frontal_face": {0: "head turned <= 30 deg", 1: "head turned > 30 deg"},
    "hair": {0: "hair visible", 1: "no hair visible"},
    "earring": {0: "earring", 1: "no earring"},
    "hair_color": {0: "brown hair", 1: "black hair", 2: "red hair", 3: "no hair", 4: "golden hair"},
}


def attribute_name(attribute: str, code: int) -> str:
    """'gender: female' for gender code 1; an unknown code stays visible as 'attribute=code'."""
    meaning = ATTRIBUTE_CODES.get(attribute, {}).get(int(code))
    return f"{attribute}: {meaning}" if meaning else f"{attribute}={code}"


def attribute_breakdown(metrics: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Beyond the papers: each method's per-image metrics split by the FS2K annotations of the
    test photo (codes as in FS2K's JSON files), to show where methods fail. Means over images of
    all seeds; FID is a set metric and is left out."""
    img = metrics[(metrics.scope == "image") & metrics.value.notna()]
    if img.empty:
        return pd.DataFrame(columns=["variant", "attribute", "code", "metric", "mean", "n_images"])
    attrs = manifest.set_index("id")[list(ATTRIBUTES)]
    joined = img.join(attrs, on="image_id")
    parts = []
    for a in ATTRIBUTES:
        # n_images: distinct test photos with that code (not values, which repeat over seeds)
        g = joined.groupby(["variant", a, "metric"]).agg(mean=("value", "mean"), n_images=("image_id", "nunique"))
        parts.append(g.reset_index().rename(columns={a: "code"}).assign(attribute=a))
    out = pd.concat(parts, ignore_index=True)
    out["code"] = out["code"].astype(int)
    return out[["variant", "attribute", "code", "metric", "mean", "n_images"]]


def attributes_markdown(df: pd.DataFrame) -> str:
    lines = ["### Metrics by FS2K annotation (beyond the papers)", "",
             "Mean per-image value over the test photos with each annotation (FS2K's anno_test.json, "
             "codes decoded as FS2K's README defines them; n = test photos). Only methods scored in this run.",
             ""]
    if df.empty:
        return "\n".join(lines + ["No per-image metrics in this run.", ""])
    for metric in sorted(df.metric.unique()):
        part = df[df.metric == metric]
        cols = [(a, c) for a in ATTRIBUTES for c in sorted(part[part.attribute == a].code.unique())]
        lines.append(f"#### {metric}\n")
        lines.append("| method | " + " | ".join(attribute_name(a, c) for a, c in cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        for v in sorted(part.variant.unique()):
            pv = part[part.variant == v].set_index(["attribute", "code"])
            cells = [f"{pv.loc[k, 'mean']:.3f} (n={int(pv.loc[k, 'n_images'])})" if k in pv.index else "—"
                     for k in cols]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def table_spec(cfg: dict, released_available: dict[str, bool]) -> dict:
    """The part of the config the tables need (what the rule passes as --spec); ``cfg`` as
    load_config returns it, validated and with the schema's defaults filled in."""
    from facesketch.config import run_variants, weights_dir
    from facesketch.models.released_hida import pretrained_missing

    missing = pretrained_missing(cfg, weights_dir(cfg))
    return {"name": cfg["name"], "tables": cfg["tables"], "metrics": cfg["metrics"],
            "statistics": cfg["statistics"],
            "run_variants": [v for v in run_variants(cfg) if v not in missing], "weights_missing": missing,
            "variant_info": {v: {"precision": s["precision"], "select": s["select"]}
                             for v, s in cfg["resolved"].items()},
            "released": {k: {"path": v["path"], "available": released_available.get(k, False)}
                         for k, v in cfg["released"].items()}}
