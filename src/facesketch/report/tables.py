"""The papers' tables from per-image metrics: our value beside the paper's, per style.

``build_tables(spec, metric_files, out)`` writes, for every configured table,
``<table>.parquet`` (long form: one row per method x metric x style), ``<table>.md``,
``<table>.tex`` and ``<table>.html``; plus a ``metrics.json`` (DVC metrics) and a
``per_style.csv`` (DVC plots) outside the tables folder, so DVC can track both separately.
A row without results says why (not in this run, not trained yet, weights missing, released
folder absent) instead of showing a blank or a zero.

Aggregation: image metrics are averaged over the test images of a style (or all of them) for
each seed, then over seeds (mean and standard deviation); FID is computed on each seed's set
(facesketch.metrics.evaluate) and averaged over seeds.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from facesketch import STYLES
from facesketch.fileio import write_json, write_parquet, write_text
from facesketch.metrics.catalogue import LOWER_IS_BETTER, METRICS

log = logging.getLogger(__name__)
SCOPES = ("all",) + STYLES


def load_metrics(files: list[Path]) -> pd.DataFrame:
    frames = [pd.read_parquet(f) for f in files if Path(f).is_file()]
    if not frames:
        return pd.DataFrame(columns=["variant", "seed", "style_asked", "style_gt", "image_id", "metric", "value",
                                     "scope", "n_images", "reason"])
    return pd.concat(frames, ignore_index=True)


def aggregate(df: pd.DataFrame, source: str, metric: str, scope: str) -> dict:
    """{value, std, n_images, n_seeds, reason} of one method, metric and style scope."""
    d = df[(df.variant == source) & (df.metric == metric)]
    if METRICS[metric].scope == "set":
        d = d[(d.scope == "set") & (d.style_gt == scope)]
        per_seed = d.groupby("seed").value.first()
        n_images = int(d.n_images.max()) if len(d) else 0
    else:
        d = d[d.scope == "image"]
        if scope != "all":
            d = d[d.style_gt == scope]
        per_seed = d.groupby("seed").value.mean()  # NaN-skipping: one bad image does not poison the mean
        n_images = int(d.groupby("seed").value.count().max()) if len(d) else 0
    reasons = [r for r in d.reason.unique() if r] if "reason" in d else []
    finite = per_seed[np.isfinite(per_seed)]
    if d.empty:
        return {"value": math.nan, "std": math.nan, "n_images": 0, "n_seeds": 0, "reason": "no results"}
    if finite.empty:
        return {"value": math.nan, "std": math.nan, "n_images": n_images, "n_seeds": 0,
                "reason": reasons[0] if reasons else "not computed"}
    return {"value": float(finite.mean()), "std": float(finite.std()) if len(finite) > 1 else math.nan,
            "n_images": n_images, "n_seeds": int(len(finite)),
            "reason": (f"{len(reasons)} kinds of missing values, e.g. {reasons[0]}" if reasons else "")}


def _row_status(row: dict, spec: dict) -> tuple[str | None, str]:
    """(metrics source name or None, why there are no results)."""
    if "pending" in row:
        return None, row["pending"]
    if "variant" in row:
        v = row["variant"]
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
                        agg = {"value": math.nan, "std": math.nan, "n_images": 0, "n_seeds": 0, "reason": why}
                    else:
                        agg = aggregate(metrics, source, metric, scope)
                    records.append({
                        "table": tname, "row": i, "label": row["label"], "source": source or "", "metric": metric,
                        "style": scope, "ours": agg["value"], "ours_std": agg["std"],
                        "paper": paper if scope == "all" and paper is not None else math.nan,
                        "n_images": agg["n_images"], "n_seeds": agg["n_seeds"], "reason": agg["reason"]})
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
    return df


def _fmt(v: float, metric: str, dash: str = "—") -> str:
    if v is None or not np.isfinite(v):
        return dash
    return f"{v:.{METRICS[metric].decimals}f}"


def _cell(r, mark, pm: str = "±", dash: str = "—") -> str:
    """'ours [± std] / paper (diff)', ours passed through mark(text, rank) when ranked 1 or 2."""
    ours = _fmt(r.ours, r.metric, dash)
    if np.isfinite(r.ours) and np.isfinite(r.ours_std):
        ours += f" {pm} {_fmt(r.ours_std, r.metric, dash)}"
    if r["rank"] in (1, 2) and np.isfinite(r.ours):
        ours = mark(ours, r["rank"])
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
            f"Cells: ours [± std over seeds] / paper (ours − paper); **best**, _second_ of ours per column. "
            f"{arrows}. Protocol: grey (MATLAB rgb2gray), {framing}, MATLAB bicubic resize; "
            f"up to {n_img} test images and {n_seed} seed(s) per row. Run: {spec.get('name', '')}.")
    if table.get("note"):
        text += " " + table["note"]
    return text


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
        notes = _notes(table, part)
        if notes:
            out.append("")
            out += [f"- {reason} ({', '.join(labels)})" for reason, labels in notes.items()]
        out.append("")
    return "\n".join(out)


def _latex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("±", r"$\pm$"), ("—", "--"), ("−", "-"), ("↓", r"$\downarrow$"), ("↑", r"$\uparrow$"),
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
                 for m in cols]
        lines.append(_latex_escape(row["label"]) + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\caption{" + _latex_escape(caption(spec, table, part, "all")) + "}",
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
        cap = html.escape(caption(spec, table, part, scope)).replace("**", "")
        heads = "".join(f"<th>{html.escape(m)}</th>" for m in table["metrics"])
        body.append(f"<p>{cap}</p><table><tr><th>method</th>{heads}</tr>")
        for i, row in enumerate(table["rows"]):
            cells = "".join(f"<td>{_cell(part[(part.row == i) & (part.metric == m)].iloc[0], mark)}</td>"
                            for m in table["metrics"])
            body.append(f"<tr><td>{html.escape(row['label'])}</td>{cells}</tr>")
        body.append("</table>")
        notes = _notes(table, part)
        if notes:
            body.append("<ul>" + "".join(f"<li>{html.escape(r)} ({html.escape(', '.join(ls))})</li>"
                                         for r, ls in notes.items()) + "</ul>")
    style = ("<style>body{font-family:sans-serif;font-size:14px}table{border-collapse:collapse;margin-bottom:1em}"
             "td,th{border:1px solid #bbb;padding:3px 8px;text-align:center}td:first-child{text-align:left}</style>")
    return f"<html><head><meta charset='utf-8'>{style}</head><body>{''.join(body)}</body></html>\n"


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
        summary.setdefault(r.table, {}).setdefault(r.label, {})[r.metric] = round(float(r.ours), 6)
    write_json(metrics_json, summary)
    cols = ["table", "label", "style", "metric", "ours", "paper"]
    write_text(plots_csv, (long[cols] if len(long) else pd.DataFrame(columns=cols)).to_csv(index=False))
    log.info("tables: %d written to %s", len(spec["tables"]), out)
    return long


ATTRIBUTES = ("gender", "smile", "frontal_face", "hair", "earring", "hair_color")


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
        g = joined.groupby(["variant", a, "metric"]).value.agg(["mean", "count"]).reset_index()
        parts.append(g.rename(columns={a: "code", "count": "n_images"}).assign(attribute=a))
    out = pd.concat(parts, ignore_index=True)
    out["code"] = out["code"].astype(int)
    return out[["variant", "attribute", "code", "metric", "mean", "n_images"]]


def attributes_markdown(df: pd.DataFrame) -> str:
    lines = ["### Metrics by FS2K annotation (beyond the papers)", "",
             "Mean per-image value over the test photos with each annotation code (codes as in FS2K's "
             "anno_test.json; n = images). Only methods scored in this run.", ""]
    if df.empty:
        return "\n".join(lines + ["No per-image metrics in this run.", ""])
    for metric in sorted(df.metric.unique()):
        part = df[df.metric == metric]
        cols = [(a, c) for a in ATTRIBUTES for c in sorted(part[part.attribute == a].code.unique())]
        lines.append(f"#### {metric}\n")
        lines.append("| method | " + " | ".join(f"{a}={c}" for a, c in cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        for v in sorted(part.variant.unique()):
            pv = part[part.variant == v].set_index(["attribute", "code"])
            cells = [f"{pv.loc[k, 'mean']:.3f} (n={int(pv.loc[k, 'n_images'])})" if k in pv.index else "—"
                     for k in cols]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def table_spec(cfg: dict, released_available: dict[str, bool]) -> dict:
    """The part of the config the tables need (what the rule passes as --spec)."""
    from facesketch.config import run_variants

    return {"name": cfg["name"], "tables": cfg["tables"], "metrics": cfg["metrics"],
            "run_variants": run_variants(cfg),
            "released": {k: {"path": v["path"], "available": released_available.get(k, False)}
                         for k, v in cfg.get("released", {}).items()}}


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True)
