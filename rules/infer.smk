# Each test photo drawn in its ground-truth style; style-aware models also draw a few photos in
# all three styles (cross/) for the report.


rule infer:
    input:
        unpack(model_inputs),
        model=sums(f"{RES}/checkpoints/{{variant}}/{{seed}}/model.pt"),
    output:
        samples=directory(f"{RES}/samples/{{variant}}/{{seed}}/{{style}}"),
        sums=sums(f"{RES}/samples/{{variant}}/{{seed}}/{{style}}"),
    log:
        f"{LOGS}/infer_{{variant}}_{{seed}}_{{style}}.log",
    benchmark:
        f"{RES}/benchmarks/infer_{{variant}}_{{seed}}_{{style}}.tsv"
    conda:
        "../envs/train.yaml"
    resources:
        gpu=1,
    params:
        spec=lambda w: q(spec(w.variant)),
        model=lambda w, input: target_of(input.model),
        batch=CFG["infer"]["batch_size"],
        maps=MAPS,
        device=DEVICE,
        code=code_fingerprint("facesketch.train.infer"),
    shell:
        "facesketch infer --spec {params.spec} --checkpoint {params.model} --manifest {input.manifest}"
        " --maps {params.maps} --out {output.samples} --style {wildcards.style} --batch-size {params.batch}"
        " --device {params.device} 2> {log}; facesketch checksums {output.samples} --out {output.sums} 2>> {log}"


rule infer_cross:
    input:
        unpack(model_inputs),
        model=sums(f"{RES}/checkpoints/{{variant}}/{{seed}}/model.pt"),
    output:
        samples=directory(f"{RES}/samples/{{variant}}/{{seed}}/cross"),
        sums=sums(f"{RES}/samples/{{variant}}/{{seed}}/cross"),
    log:
        f"{LOGS}/infer_{{variant}}_{{seed}}_cross.log",
    conda:
        "../envs/train.yaml"
    resources:
        gpu=1,
    params:
        spec=lambda w: q(spec(w.variant)),
        model=lambda w, input: target_of(input.model),
        n=CFG["infer"]["cross_style"],
        maps=MAPS,
        device=DEVICE,
        code=code_fingerprint("facesketch.train.infer"),
    shell:
        "facesketch infer --spec {params.spec} --checkpoint {params.model} --manifest {input.manifest}"
        " --maps {params.maps} --out {output.samples} --style cross --cross-style {params.n} --device {params.device}"
        " 2> {log}; facesketch checksums {output.samples} --out {output.sums} 2>> {log}"
