"""Tables assembled from a small metrics Parquet made here; plots drawn from them."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facesketch.report.tables import build_tables

STYLES = ("Style1", "Style2", "Style3")


def _metrics(variant: str, scoot_by_style: dict, seeds=(0,), fid_all=None, lpips=None) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        for style, values in scoot_by_style.items():
            for i, v in enumerate(values):
                image = f"photo1_image{style[-1]}{i:03d}"
                rows.append(dict(variant=variant, seed=seed, style_asked=style, style_gt=style, image_id=image,
                                 metric="SCOOT", value=v + 0.01 * seed, scope="image", n_images=1, reason=""))
                rows.append(dict(variant=variant, seed=seed, style_asked=style, style_gt=style, image_id=image,
                                 metric="LPIPS", value=math.nan if lpips is None else lpips, scope="image",
                                 n_images=1, reason="" if lpips is not None else "LPIPS not computed: weights"))
        rows.append(dict(variant=variant, seed=seed, style_asked="all", style_gt="all", image_id="", metric="FID",
                         value=math.nan if fid_all is None else fid_all + seed, scope="set",
                         n_images=sum(len(v) for v in scoot_by_style.values()),
                         reason="" if fid_all is not None else "FID not computed: weights"))
    return pd.DataFrame(rows)


@pytest.fixture
def spec():
    return {
        "name": "unit",
        "metrics": {"framing": "aligned"},
        "run_variants": ["a", "b", "c"],
        "released": {"genre": {"path": "data/released/GENRE", "available": False}},
        "tables": {"t": {
            "title": "Test table", "source": "a paper", "note": "",
            "metrics": ["FID", "LPIPS", "SCOOT"],
            "rows": [
                {"label": "A", "variant": "a", "paper": {"FID": 20.0, "SCOOT": 0.5}},
                {"label": "B", "variant": "b", "paper": {"FID": 15.0, "SCOOT": 0.6, "LPIPS": 0.3}},
                {"label": "C", "variant": "c"},
                {"label": "D", "variant": "d"},
                {"label": "GENRE", "released": "genre", "paper": {"FID": 20.67}},
                {"label": "Later", "pending": "APDrawing is not ingested", "paper": {"FID": 56.58}},
            ]}},
    }


def test_table_assembly(spec, tmp_path):
    files = []
    for name, scoot, fid, lp in (("a", {"Style1": [0.4, 0.6], "Style2": [0.5], "Style3": [0.2]}, 30.0, 0.3),
                                 ("b", {"Style1": [0.7, 0.7], "Style2": [0.5], "Style3": [0.9]}, 25.0, None),
                                 ("c", {"Style1": [0.1, 0.1], "Style2": [0.1], "Style3": [0.1]}, 40.0, 0.5)):
        path = tmp_path / f"{name}.parquet"
        _metrics(name, scoot, seeds=(0, 1) if name == "a" else (0,), fid_all=fid, lpips=lp).to_parquet(path)
        files.append(path)
    long = build_tables(spec, files, tmp_path / "tables")
    t = long[long["style"] == "all"].set_index(["label", "metric"])
    # A: two seeds -> mean and std over seeds; SCOOT mean of its 4 images + 0.01 seed shift
    assert t.loc[("A", "SCOOT"), "ours"] == pytest.approx(np.mean([0.425, 0.435]))
    assert t.loc[("A", "SCOOT"), "ours_std"] == pytest.approx(np.std([0.425, 0.435], ddof=1))
    assert t.loc[("A", "SCOOT"), "n_seeds"] == 2 and t.loc[("A", "SCOOT"), "n_images"] == 4
    assert t.loc[("A", "FID"), "ours"] == pytest.approx(30.5)
    # paper values land in their row and column, differences are ours - paper
    assert t.loc[("B", "SCOOT"), "paper"] == 0.6 and t.loc[("B", "SCOOT"), "diff"] == pytest.approx(0.7 - 0.6)
    assert t.loc[("A", "FID"), "diff"] == pytest.approx(10.5)
    assert math.isnan(t.loc[("A", "LPIPS"), "paper"]) and t.loc[("B", "LPIPS"), "paper"] == 0.3
    # best / second per column, direction by metric
    assert t.loc[("B", "FID"), "rank"] == 1 and t.loc[("A", "FID"), "rank"] == 2 and t.loc[("C", "FID"), "rank"] == 0
    assert t.loc[("B", "SCOOT"), "rank"] == 1 and t.loc[("A", "SCOOT"), "rank"] == 2
    assert t.loc[("A", "LPIPS"), "rank"] == 1 and t.loc[("C", "LPIPS"), "rank"] == 2  # lower is better
    # rows without results explain themselves
    assert "LPIPS not computed" in t.loc[("B", "LPIPS"), "reason"]
    assert "variant d is not in this run" in t.loc[("D", "SCOOT"), "reason"]
    assert "released results not found at data/released/GENRE" in t.loc[("GENRE", "FID"), "reason"]
    assert t.loc[("Later", "FID"), "reason"] == "APDrawing is not ingested"
    assert t.loc[("Later", "FID"), "paper"] == 56.58 and math.isnan(t.loc[("Later", "FID"), "ours"])
    # per-style breakdown
    s3 = long[(long["style"] == "Style3") & (long.metric == "SCOOT")].set_index("label")
    assert s3.loc["B", "ours"] == pytest.approx(0.9) and s3.loc["B", "rank"] == 1
    assert math.isnan(s3.loc["B", "paper"])  # papers report all styles only


def test_table_files(spec, tmp_path):
    path = tmp_path / "a.parquet"
    _metrics("a", {"Style1": [0.4], "Style2": [0.5], "Style3": [0.6]}, fid_all=30.0, lpips=0.2).to_parquet(path)
    build_tables(spec, [path], tmp_path / "tables")
    md = (tmp_path / "tables" / "t.md").read_text()
    # FID without stored replicates has no interval; LPIPS is constant (interval of width 0); SCOOT
    # 0.4/0.5/0.6: the bootstrap mean of 3 values stays within [0.4, 0.6], so half-width <= 0.1
    import re

    cell = re.search(r"\| A \| \*\*30\.00\*\* / 20\.00 \(\+10\.00\) \| \*\*0\.200 ± 0\.000\*\* \| "
                     r"\*\*0\.500 ± (0\.\d{3})\*\* / 0\.500 \(\+0\.000\) \|", md)
    assert cell and 0.03 < float(cell.group(1)) <= 0.1, md
    assert md.count("- variant d is not in this run (run.variants) (D)") == 1  # once, not once per style
    assert "### Test table — Style2" in md
    assert "up to 3 test images and 1 seed(s)" in md and "aligned 250x250" in md
    tex = (tmp_path / "tables" / "t.tex").read_text()
    assert r"\textbf{30.00} / 20.00 (+10.00)" in tex and r"\begin{tabular}{lccc}" in tex
    assert r"\textbf{0.200 $\pm$ 0.000}" in tex
    html = (tmp_path / "tables" / "t.html").read_text()
    assert "<b>30.00</b>" in html and html.count("released results not found") == 1
    # captions render their emphasis; no raw Markdown left in HTML or LaTeX
    assert "<b>best</b>, <i>second</i> of ours" in html and "_second_" not in html and "**" not in html
    assert r"\textbf{best}, \textit{second} of ours" in tex and "second\\_" not in tex
    # DVC metrics keyed by variant id (no spaces or `&`: `dvc metrics diff` and `dvc exp show`)
    assert json.loads((tmp_path / "metrics.json").read_text()) == {
        "t": {"a": {"FID": 30.0, "LPIPS": 0.2, "SCOOT": 0.5}}}
    per_style = pd.read_csv(tmp_path / "per_style.csv")
    assert set(per_style["style"]) == {"all", *STYLES}
    # `dvc plots`: one small chart per metric, each method once per style (not one long bar chart)
    scoot = pd.read_csv(tmp_path / "dvc_plots" / "SCOOT.csv")
    assert sorted(scoot["style"]) == sorted(["all", *STYLES]) and set(scoot["variant"]) == {"a"}
    assert scoot.set_index("style").loc["Style3", "ours"] == pytest.approx(0.6)
    assert sorted(p.name for p in (tmp_path / "dvc_plots").iterdir()) == ["FID.csv", "LPIPS.csv", "SCOOT.csv"]


def test_corrupt_images_do_not_poison_a_mean(spec, tmp_path):
    df = _metrics("a", {"Style1": [0.4, 0.6], "Style2": [0.5], "Style3": [0.2]}, fid_all=30.0, lpips=0.1)
    df.loc[(df.metric == "SCOOT") & (df.image_id == "photo1_image1000"), ["value", "reason"]] = (
        math.nan, "cannot read image x.png")
    df.to_parquet(tmp_path / "a.parquet")
    long = build_tables(spec, [tmp_path / "a.parquet"], tmp_path / "tables")
    row = long[(long.label == "A") & (long.metric == "SCOOT") & (long["style"] == "all")].iloc[0]
    assert row.ours == pytest.approx(np.mean([0.6, 0.5, 0.2])) and row.n_images == 3
    assert "cannot read image" in row.reason


def test_plots_and_grids(spec, tmp_path, tiny_prepared):
    from facesketch.report.plots import make_plots

    results = tmp_path / "results"
    _metrics("a", {"Style1": [0.4], "Style2": [0.5], "Style3": [0.6]}, fid_all=30.0, lpips=0.2).to_parquet(
        tmp_path / "a.parquet")
    build_tables(spec, [tmp_path / "a.parquet"], results / "tables")
    manifest = pd.read_parquet(tiny_prepared / "manifest.parquet")
    test = manifest[manifest.split == "test"]
    for r in test.itertuples():
        out = results / "samples" / "a" / "0" / STYLES[r.style] / f"{r.id}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(tiny_prepared / r.sketch).save(out)
        for s in STYLES:
            cross = results / "samples" / "a" / "0" / "cross" / s / f"{r.id}.png"
            cross.parent.mkdir(parents=True, exist_ok=True)
            Image.open(tiny_prepared / r.sketch).save(cross)
    (results / "checkpoints" / "a" / "0").mkdir(parents=True)
    pd.DataFrame({"epoch": [1, 2, 3], "G_gan": [1.0, 0.8, 0.7], "D": [0.7, 0.6, 0.6]}).to_csv(
        results / "checkpoints" / "a" / "0" / "losses.csv", index=False)
    plot_spec = {"tables": spec["tables"], "released": spec["released"], "grid_rows": 3,
                 "variants": {"a": {"seeds": [0], "style_aware": True}, "b": {"seeds": [0], "style_aware": False}},
                 "figure_tables": {"methods": "t", "ablation": "t", "dog": "t"}}
    made = make_plots(plot_spec, results, tiny_prepared / "manifest.parquet", tmp_path / "plots")
    names = {p.name for p in made}
    assert {"fid_lpips_per_style.png", "metrics_per_style_t.png", "metrics_by_attribute.png", "training_curves.png",
            "grid_methods.png", "grid_ablation.png", "grid_dog.png", "grid_styles.png"} == names
    for p in made:
        w, h = Image.open(p).size
        assert w > 300 and h > 150


def _per_image(variant: str, values_by_seed: dict[int, np.ndarray], fid_reps: dict[int, np.ndarray]) -> pd.DataFrame:
    rows = []
    for seed, values in values_by_seed.items():
        for i, v in enumerate(values):
            rows.append(dict(variant=variant, seed=seed, style_asked="Style1", style_gt="Style1",
                             image_id=f"photo1_image{i:04d}", metric="SCOOT", value=float(v), scope="image",
                             n_images=1, reason="", replicate=-1))
        reps = fid_reps[seed]
        for style in ("Style1", "all"):
            rows.append(dict(variant=variant, seed=seed, style_asked=style, style_gt=style, image_id="", metric="FID",
                             value=float(np.mean(reps)), scope="set", n_images=len(values), reason="", replicate=-1))
            rows += [dict(variant=variant, seed=seed, style_asked=style, style_gt=style, image_id="", metric="FID",
                          value=float(r), scope="set_boot", n_images=len(values), reason="", replicate=b)
                     for b, r in enumerate(reps)]
    return pd.DataFrame(rows)


def test_intervals_and_paired_comparisons_in_the_tables(tmp_path):
    """A constructed difference: B is A + 0.03 on every image (hidden by a per-image spread of 0.2),
    C is A plus noise; the reference row is A. FID replicates: B clearly above A, C overlapping."""
    from facesketch.report.plots import paired_differences

    rng = np.random.default_rng(0)
    n = 40
    base = rng.uniform(0.2, 0.8, n)
    values = {"a": {0: base + rng.normal(0, 0.005, n), 1: base + rng.normal(0, 0.005, n)},
              "b": {0: base + 0.03 + rng.normal(0, 0.005, n)},
              "c": {0: base + rng.normal(0, 0.005, n)}}
    fid = {"a": {0: rng.normal(20, 1, 50), 1: rng.normal(21, 1, 50)}, "b": {0: rng.normal(30, 1, 50)},
           "c": {0: rng.normal(20.5, 1, 50)}}
    files = []
    for v in values:
        files.append(tmp_path / f"{v}.parquet")
        _per_image(v, values[v], fid[v]).to_parquet(files[-1])
    spec = {"name": "unit", "metrics": {"framing": "aligned"}, "run_variants": ["a", "b", "c"], "released": {},
            "statistics": {"replicates": 1000, "alpha": 0.05},
            "tables": {"t": {"title": "T", "source": "", "note": "", "metrics": ["FID", "SCOOT"], "reference": "A",
                             "rows": [{"label": "A", "variant": "a"}, {"label": "B", "variant": "b"},
                                      {"label": "C", "variant": "c"}]}}}
    long = build_tables(spec, files, tmp_path / "tables")
    t = long[long["style"] == "all"].set_index(["label", "metric"])
    # every cell with results has an interval around its value
    for lab in "ABC":
        for m in ("FID", "SCOOT"):
            assert t.loc[(lab, m), "ours_lo"] <= t.loc[(lab, m), "ours"] <= t.loc[(lab, m), "ours_hi"], (lab, m)
    # two seeds of A: its SCOOT interval covers the seed-to-seed and image spread, wider than one seed's
    assert t.loc[("B", "SCOOT"), "vs"] == "A" and t.loc[("A", "SCOOT"), "vs"] == ""
    assert t.loc[("B", "SCOOT"), "ref_diff"] == pytest.approx(np.mean(values["b"][0]) - np.mean(
        [np.mean(values["a"][0]), np.mean(values["a"][1])]))
    assert t.loc[("B", "SCOOT"), "ref_lo"] > 0.02 and t.loc[("B", "SCOOT"), "ref_hi"] < 0.04
    assert t.loc[("B", "SCOOT"), "ref_sig"] and not t.loc[("C", "SCOOT"), "ref_sig"]
    # the unpaired intervals of A and B overlap: only the pairing shows the difference
    assert t.loc[("B", "SCOOT"), "ours_lo"] < t.loc[("A", "SCOOT"), "ours_hi"]
    assert t.loc[("B", "FID"), "ref_sig"] and not t.loc[("C", "FID"), "ref_sig"]
    # Holm: the adjusted p is never below the raw one
    ok = t[np.isfinite(t.ref_p)]
    assert (ok.ref_p_holm >= ok.ref_p).all()
    md = (tmp_path / "tables" / "t.md").read_text()
    b_row = next(line for line in md.splitlines() if line.startswith("| B |"))
    c_row = next(line for line in md.splitlines() if line.startswith("| C |"))
    assert b_row.count("†") == 2 and "†" not in c_row and " ± " in c_row
    assert r"$^\dagger$" in (tmp_path / "tables" / "t.tex").read_text()
    parquet = pd.read_parquet(tmp_path / "tables" / "t.parquet")
    assert {"ours_lo", "ours_hi", "ref_lo", "ref_hi", "ref_p", "ref_p_holm", "ref_sig"} <= set(parquet.columns)
    path = paired_differences(long, spec["tables"]["t"], tmp_path / "paired.png", "T")
    assert Image.open(path).size[0] > 300


def test_metrics_by_fs2k_annotation(tiny_prepared, tmp_path):
    from facesketch.report.tables import attribute_breakdown, attributes_markdown

    manifest = pd.read_parquet(tiny_prepared / "manifest.parquet")
    test = manifest[manifest.split == "test"]
    # two seeds: the group sizes count photos, not values
    rows = [dict(variant="v", seed=seed, style_asked="Style1", style_gt="Style1", image_id=r.id, metric="SCOOT",
                 value=0.2 + 0.4 * r.gender, scope="image", n_images=1, reason="")
            for r in test.itertuples() for seed in (0, 1)]
    rows.append(dict(variant="v", seed=0, style_asked="all", style_gt="all", image_id="", metric="FID", value=9.0,
                     scope="set", n_images=len(test), reason=""))
    df = attribute_breakdown(pd.DataFrame(rows), manifest)
    g = df[(df.attribute == "gender")].set_index("code")
    assert g.loc[0, "mean"] == pytest.approx(0.2) and g.loc[1, "mean"] == pytest.approx(0.6)
    assert g.n_images.sum() == len(test) and "FID" not in set(df.metric)
    md = attributes_markdown(df)
    # codes decoded as FS2K's README defines them (gender 0 = male, 1 = female)
    assert "| gender: male | gender: female |" in md and "gender=0" not in md and "0.600 (n=" in md


def test_loss_series_for_dvc_plots(tmp_path):
    from facesketch.report.plots import loss_series

    run = tmp_path / "ckpt" / "hida_full" / "0"
    run.mkdir(parents=True)
    pd.DataFrame({"epoch": [1, 2], "step": [5, 10], "G_gan": [1.0, 0.5], "G_l1": [2.0, 1.5], "D": [0.7, 0.6],
                  "lr_g": [2.0e-4, 2.0e-4], "images_per_s": [3.0, 3.0]}).to_csv(run / "losses.csv", index=False)
    [path] = loss_series({"hida_full": run, "missing": tmp_path / "none"}, tmp_path / "dvc_losses")
    got = pd.read_csv(path)
    assert path.name == "hida_full.csv" and list(got.columns) == ["epoch", "generator", "discriminator"]
    assert got.generator.tolist() == [3.0, 2.0] and got.discriminator.tolist() == [0.7, 0.6]  # by hand


def test_per_style_bars_show_only_methods_with_results_with_intervals_and_paper(spec, tmp_path):
    from facesketch.report.plots import bar_rows, metric_bars

    files = []
    for v, vals, seeds in (("a", {"Style1": [0.4], "Style2": [0.5], "Style3": [0.6]}, (0, 1)),
                           ("b", {"Style1": [0.7], "Style2": [0.8], "Style3": [0.9]}, (0,))):
        _metrics(v, vals, seeds=seeds, fid_all=30.0).to_parquet(tmp_path / f"{v}.parquet")
        files.append(tmp_path / f"{v}.parquet")
    long = build_tables(spec, files, tmp_path / "tables")
    present, ok = bar_rows(long[long.table == "t"], spec["tables"]["t"], "SCOOT")
    assert present == ["A", "B"]  # C, D, GENRE and Later have no SCOOT: not in bars or legend
    assert set(ok["style"]) == {"Style1", "Style2", "Style3", "all"}
    # the paper's SCOOT of A (0.5) is there to be marked on A's all-styles bar
    assert ok[(ok.label == "A") & (ok["style"] == "all")].paper.iloc[0] == 0.5
    path = metric_bars(long[long.table == "t"], spec["tables"]["t"], ["SCOOT", "LPIPS"], tmp_path / "bars.png", "t")
    assert path.stat().st_size > 0


def test_figures_name_variants_by_their_table_labels(spec):
    from facesketch.report.plots import variant_labels

    assert variant_labels(spec["tables"]) == {"a": "A", "b": "B", "c": "C", "d": "D"}
