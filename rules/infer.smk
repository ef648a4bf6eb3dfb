# Each test photo drawn in its ground-truth style; style-aware models also draw a few photos in
# all three styles (cross/) for the report.


rule infer:
    input:
        unpack(model_inputs),
        model=f"{RES}/checkpoints/{{variant}}/{{seed}}/model.pt",
    output:
        directory(f"{RES}/samples/{{variant}}/{{seed}}/{{style}}"),
    params:
        spec=lambda w: q(spec(w.variant)),
        batch=CFG["infer"]["batch_size"],
    resources:
        gpu=1,
    conda:
        "../envs/train.yaml"
    log:
        f"{LOGS}/infer_{{variant}}_{{seed}}_{{style}}.log",
    benchmark:
        f"{RES}/benchmarks/infer_{{variant}}_{{seed}}_{{style}}.tsv"
    shell:
        "facesketch infer --spec {params.spec} --checkpoint {input.model} --manifest {input.manifest}"
        " --maps {MAPS} --out {output} --style {wildcards.style} --batch-size {params.batch}"
        " --device {CFG[device]} 2> {log}"


rule infer_cross:
    input:
        unpack(model_inputs),
        model=f"{RES}/checkpoints/{{variant}}/{{seed}}/model.pt",
    output:
        directory(f"{RES}/samples/{{variant}}/{{seed}}/cross"),
    params:
        spec=lambda w: q(spec(w.variant)),
        n=CFG["infer"]["cross_style"],
    resources:
        gpu=1,
    conda:
        "../envs/train.yaml"
    log:
        f"{LOGS}/infer_{{variant}}_{{seed}}_cross.log",
    shell:
        "facesketch infer --spec {params.spec} --checkpoint {input.model} --manifest {input.manifest}"
        " --maps {MAPS} --out {output} --style cross --cross-style {params.n} --device {CFG[device]} 2> {log}"


def cross_samples():
    if CFG["infer"]["cross_style"] == 0:
        return []
    return [f"{RES}/samples/{v}/{s}/cross" for v in VARIANTS if style_aware(spec(v)) for s in seeds(v)]
