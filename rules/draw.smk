# Photos outside FS2K (HIDA section 4.6): `facesketch draw` on the config's folder of faces in
# the wild and its folder of natural images, with HIDA and the baselines the run trains, and the
# Figure 10 (faces) and Figure 11 (scenes) grids in the report. A kind whose folder is not
# configured (nor $FACESKETCH_WILD / $FACESKETCH_SCENES set) is left out.


include: "draw_common.smk"


rule draw_photos:
    input:
        model=lambda w: sums(f"{RES}/checkpoints/{w.variant}/{seeds(w.variant)[0]}/model.pt"),
    output:
        drawn=directory(f"{RES}/draw/{{kind}}/{{variant}}"),
        sums=sums(f"{RES}/draw/{{kind}}/{{variant}}"),
    log:
        f"{LOGS}/draw_{{kind}}_{{variant}}.log",
    benchmark:
        f"{RES}/benchmarks/draw_{{kind}}_{{variant}}.tsv"
    wildcard_constraints:
        kind="faces|scenes",
    conda:
        "../envs/maps.yaml"
    resources:
        gpu=1,
    params:
        options=draw_options,
        model=lambda w, input: target_of(input.model),
        weights=WEIGHTS,
        device=CFG["device"],
        code=code_fingerprint("facesketch.draw.run"),
    shell:
        "facesketch draw {params.options} --checkpoint {params.model} --out {output.drawn} --weights {params.weights}"
        " --device {params.device} --exit-zero 2> {log}; facesketch checksums {output.drawn} --out {output.sums} 2>> {log}"


rule draw_figure:
    input:
        draw_figure_inputs,
    output:
        report(
            f"{RES}/plots/{{figure}}.png",
            caption="report/draw_figure.rst",
            category="Figures",
            subcategory="Drawing any photo (HIDA section 4.6)",
            labels={"figure": "{figure}"},
        ),
    log:
        f"{LOGS}/draw_figure_{{figure}}.log",
    wildcard_constraints:
        figure="|".join(DRAW_KINDS.values()),
    conda:
        "../envs/report.yaml"
    params:
        methods=draw_methods,
        rows=CFG["draw"]["grid_rows"],
        title=draw_title,
        code=code_fingerprint("facesketch.draw.figure"),
    shell:
        "facesketch draw-figure --methods {params.methods} --out {output} --rows {params.rows}"
        " --title {params.title} 2> {log}"


rule draw_all:
    input:
        draw_figures(),
