# The papers' tables (Parquet, Markdown, LaTeX, HTML; metrics.json and per_style.csv for DVC),
# the figures, and the items of `snakemake --report`.
from facesketch.report.plots import plot_spec
from facesketch.report.tables import table_spec

TABLES = list(CFG["tables"])
PLOTS = plot_files(CFG)


def caption(figure):
    if figure.startswith("paired_"):
        return "report/paired.rst"
    return "report/metrics_per_style.rst" if figure.startswith("metrics_per_style") else f"report/{figure}.rst"


def subcategory(figure):
    """Figures grouped as the tables are: a table's per-style figure under its title."""
    if figure.startswith("metrics_per_style_"):
        return CFG["tables"][figure.removeprefix("metrics_per_style_")]["title"]
    if figure.startswith("paired_"):
        return CFG["tables"][figure.removeprefix("paired_")]["title"]
    if figure == "fid_lpips_per_style":
        return CFG["tables"][CFG["report"]["figures"]["methods"]]["title"] if "methods" in CFG["report"]["figures"] \
            else "Per style"
    if figure == "metrics_by_attribute":
        return "Beyond the papers"
    return "Image grids" if figure.startswith("grid") else "Training"


rule tables:
    input:
        metrics=metric_files(),
        manifest=f"{FS2K}/manifest.parquet",
    output:
        parquet=expand(f"{RES}/tables/{{table}}.parquet", table=TABLES),
        md=expand(f"{RES}/tables/{{table}}.md", table=TABLES),
        tex=expand(f"{RES}/tables/{{table}}.tex", table=TABLES),
        html=[report(f"{RES}/tables/{t}.html", caption="report/table.rst", category="Tables",
                     subcategory=CFG["tables"][t]["title"]) for t in TABLES],
        json=f"{RES}/metrics.json",
        csv=f"{RES}/per_style.csv",
        attributes=f"{RES}/tables/attributes.parquet",
        attributes_md=f"{RES}/tables/attributes.md",
    params:
        spec=q(table_spec(CFG, RELEASED_AVAILABLE)),
    conda:
        "../envs/report.yaml"
    log:
        f"{LOGS}/tables.log",
    shell:
        "facesketch tables --spec {params.spec} --metrics {input.metrics} --manifest {input.manifest}"
        " --out {RES}/tables --metrics-json {output.json} --plots-csv {output.csv} 2> {log}"


rule plots:
    input:
        tables=rules.tables.output.parquet,
        models=rules.train_all.input,
        samples=[d for v in VARIANTS for d in samples(v)],
        cross=cross_samples(),
        manifest=f"{FS2K}/manifest.parquet",
    output:
        [report(f"{RES}/plots/{f}", caption=caption(n), category="Figures", subcategory=subcategory(n),
                labels={"figure": n}) for n, f in PLOTS.items()],
    params:
        spec=q(plot_spec(CFG, RELEASED_AVAILABLE)),
    conda:
        "../envs/report.yaml"
    log:
        f"{LOGS}/plots.log",
    shell:
        "facesketch plots --spec {params.spec} --results {RES} --manifest {input.manifest} --out {RES}/plots 2> {log}"


STUDY = CFG["report"].get("study")


rule study_summary:
    """The user study's Figure 5 and answers (report.study: a folder from `facesketch study create`)."""
    input:
        study=f"{STUDY}/study.json" if STUDY else [],
        answers=f"{STUDY}/answers.sqlite" if STUDY else [],
    output:
        figure=report(f"{RES}/study/figure5.png", caption="report/study.rst", category="Beyond the papers",
                      subcategory="User study (HIDA Figure 5)"),
        answers=f"{RES}/study/answers.parquet",
        preferences=f"{RES}/study/preferences.parquet",
    conda:
        "../envs/report.yaml"
    log:
        f"{LOGS}/study_summary.log",
    shell:
        "facesketch study summary {STUDY:q} --out {RES}/study 2> {log}"


rule report_all:
    input:
        rules.tables.output,
        rules.plots.output,
        rules.study_summary.output if STUDY else [],
