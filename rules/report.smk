# The papers' tables (Parquet, Markdown, LaTeX, HTML; metrics.json and per_style.csv for DVC),
# the figures, and the items of `snakemake --report`.


rule tables:
    input:
        metrics=metric_files() + APD_METRICS + MET_METRICS,
        manifest=f"{FS2K}/manifest.parquet",
    output:
        parquet=expand(f"{RES}/tables/{{table}}.parquet", table=TABLES),
        md=expand(f"{RES}/tables/{{table}}.md", table=TABLES),
        tex=expand(f"{RES}/tables/{{table}}.tex", table=TABLES),
        html=[
            report(
                f"{RES}/tables/{t}.html",
                caption="report/table.rst",
                category="Tables",
                subcategory=CFG["tables"][t]["title"],
            )
            for t in TABLES
        ],
        json=f"{RES}/metrics.json",
        csv=f"{RES}/per_style.csv",
        dvc_plots=directory(f"{RES}/dvc_plots"),
        attributes=f"{RES}/tables/attributes.parquet",
        attributes_md=f"{RES}/tables/attributes.md",
    log:
        f"{LOGS}/tables.log",
    conda:
        "../envs/report.yaml"
    params:
        spec=q(metfaces_table_spec(apdrawing_table_spec(table_spec(CFG, RELEASED_AVAILABLE), CFG), CFG)),
        out=lambda w, output: parent(output.parquet[0]),
        code=code_fingerprint("facesketch.report.tables"),
    shell:
        "facesketch tables --spec {params.spec} --metrics {input.metrics} --manifest {input.manifest}"
        " --out {params.out} --metrics-json {output.json} --plots-csv {output.csv} 2> {log}"


rule plots:
    input:
        tables=rules.tables.output.parquet,
        models=[sums(m) for m in rules.train_all.input],
        samples=[sums(d) for v in VARIANTS for d in samples(v)],
        cross=cross_samples(),
        manifest=f"{FS2K}/manifest.parquet",
    output:
        [
            report(
                f"{RES}/plots/{f}",
                caption=caption(n),
                category="Figures",
                subcategory=subcategory(n),
                labels={"figure": n},
            )
            for n, f in PLOTS.items()
        ],
        losses=directory(f"{RES}/dvc_losses"),
    log:
        f"{LOGS}/plots.log",
    conda:
        "../envs/report.yaml"
    params:
        spec=q(plot_spec(CFG, RELEASED_AVAILABLE)),
        results=lambda w, input: parent(input.tables[0], 2),
        out=lambda w, output: parent(output[0]),
        code=code_fingerprint("facesketch.report.plots"),
    shell:
        "facesketch plots --spec {params.spec} --results {params.results} --manifest {input.manifest} --out {params.out} 2> {log}"


rule study_summary:
    """The user study's Figure 5 and answers (report.study: a folder from `facesketch study create`)."""
    input:
        study=f"{STUDY}/study.json" if STUDY else [],
        answers=f"{STUDY}/answers.sqlite" if STUDY else [],
    output:
        figure=report(
            f"{RES}/study/figure5.png",
            caption="report/study.rst",
            category="Beyond the papers",
            subcategory="User study (HIDA Figure 5)",
        ),
        answers=f"{RES}/study/answers.parquet",
        preferences=f"{RES}/study/preferences.parquet",
    log:
        f"{LOGS}/study_summary.log",
    conda:
        "../envs/report.yaml"
    params:
        study=lambda w, input: parent(input.study),
        out=lambda w, output: parent(output.answers),
        code=code_fingerprint("facesketch.study.summary"),
    shell:
        "facesketch study summary {params.study:q} --out {params.out} 2> {log}"


rule report_all:
    input:
        rules.tables.output,
        rules.plots.output,
        rules.study_summary.output if STUDY else [],
        MET_GRID,
