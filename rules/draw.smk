# Photos outside FS2K (HIDA section 4.6): `facesketch draw` on the config's folder of faces in
# the wild and its folder of natural images, with HIDA and the baselines the run trains, and the
# Figure 10 (faces) and Figure 11 (scenes) grids in the report. A kind whose folder is not
# configured (nor $FACESKETCH_WILD / $FACESKETCH_SCENES set) is left out.
from facesketch.draw.figure import folder as draw_folder
from facesketch.draw.figure import variants as draw_variants_of

DRAW_KINDS = {"faces": "figure10_wild_faces", "scenes": "figure11_natural_images"}
DRAW_TITLES = {"faces": "HIDA Figure 10: faces in the wild", "scenes": "HIDA Figure 11: natural images"}


def draw_kinds():
    return [k for k in DRAW_KINDS if draw_folder(CFG, k)]


def draw_variants():
    return draw_variants_of(CFG, VARIANTS)


def draw_dir(kind, variant):
    return f"{RES}/draw/{kind}/{variant}"


def draw_options(w):
    """The CLI options of one drawing job, shell-quoted."""
    opts = [draw_folder(CFG, w.kind), "--depth", CFG["maps"]["depth"]["predictor"]]
    if w.kind == "scenes":
        opts.append("--scene")
        if CFG["draw"].get("scene_size"):
            opts += ["--scene-size", str(CFG["draw"]["scene_size"])]
    if CFG["draw"].get("limit"):
        opts += ["--limit", str(CFG["draw"]["limit"])]
    return " ".join(shlex.quote(o) for o in opts)


def figure_kind(w):
    return next(k for k, f in DRAW_KINDS.items() if f == w.figure)


def draw_figure_inputs(w):
    return [draw_dir(figure_kind(w), v) for v in draw_variants()]


def draw_methods(w):
    """LABEL=FOLDER per method, in the figure's column order, shell-quoted."""
    return " ".join(shlex.quote(f"{v}={draw_dir(figure_kind(w), v)}") for v in draw_variants())


def draw_title(w):
    return shlex.quote(DRAW_TITLES[figure_kind(w)])


def draw_figures():
    return [f"{RES}/plots/{DRAW_KINDS[k]}.png" for k in draw_kinds()] if draw_variants() else []


rule draw_photos:
    input:
        model=lambda w: f"{RES}/checkpoints/{w.variant}/{seeds(w.variant)[0]}/model.pt",
    output:
        directory(f"{RES}/draw/{{kind}}/{{variant}}"),
    wildcard_constraints:
        kind="faces|scenes",
    params:
        options=draw_options,
        weights=WEIGHTS,
        device=CFG["device"],
    resources:
        gpu=1,
    conda:
        "../envs/maps.yaml"
    log:
        f"{LOGS}/draw_{{kind}}_{{variant}}.log",
    benchmark:
        f"{RES}/benchmarks/draw_{{kind}}_{{variant}}.tsv"
    shell:
        "facesketch draw {params.options} --checkpoint {input.model} --out {output} --weights {params.weights}"
        " --device {params.device} --exit-zero 2> {log}"


rule draw_figure:
    input:
        draw_figure_inputs,
    output:
        report(f"{RES}/plots/{{figure}}.png", caption="report/draw_figure.rst", category="Figures",
               subcategory="Drawing any photo (HIDA section 4.6)", labels={"figure": "{figure}"}),
    wildcard_constraints:
        figure="|".join(DRAW_KINDS.values()),
    params:
        methods=draw_methods,
        rows=CFG["draw"]["grid_rows"],
        title=draw_title,
    conda:
        "../envs/report.yaml"
    log:
        f"{LOGS}/draw_figure_{{figure}}.log",
    shell:
        "facesketch draw-figure --methods {params.methods} --out {output} --rows {params.rows}"
        " --title {params.title} 2> {log}"


rule draw_all:
    input:
        draw_figures(),
