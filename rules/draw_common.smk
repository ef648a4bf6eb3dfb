# Helpers of rules/draw.smk: which folders and variants are drawn, and each job's options.
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
    return [sums(draw_dir(figure_kind(w), v)) for v in draw_variants()]


def draw_methods(w):
    """LABEL=FOLDER per method, in the figure's column order, shell-quoted."""
    return " ".join(shlex.quote(f"{v}={draw_dir(figure_kind(w), v)}") for v in draw_variants())


def draw_title(w):
    return shlex.quote(DRAW_TITLES[figure_kind(w)])


def draw_figures():
    return [f"{RES}/plots/{DRAW_KINDS[k]}.png" for k in draw_kinds()] if draw_variants() else []
