# One job per variant and seed. The resume checkpoint (last.pt), losses.csv and sample grids live
# beside model.pt but are not declared outputs, so a killed job resumes instead of restarting.


rule train:
    input:
        unpack(model_inputs),
    output:
        model=f"{RES}/checkpoints/{{variant}}/{{seed}}/model.pt",
        sums=sums(f"{RES}/checkpoints/{{variant}}/{{seed}}/model.pt"),
    log:
        f"{LOGS}/train_{{variant}}_{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/train_{{variant}}_{{seed}}.tsv"
    conda:
        "../envs/train.yaml"
    resources:
        gpu=1,
    params:
        spec=lambda w: q(spec(w.variant)),
        out=run_dir,
        weights=WEIGHTS,
        maps=MAPS,
        device=DEVICE,
        code=code_fingerprint("facesketch.train.run"),
    shell:
        "facesketch train --spec {params.spec} --manifest {input.manifest} --maps {params.maps} --weights {params.weights}"
        " --out {params.out} --done {output.model} --seed {wildcards.seed} --device {params.device} 2> {log};"
        " facesketch checksums {output.model} --out {output.sums} 2>> {log}"


rule train_all:
    input:
        [f"{RES}/checkpoints/{v}/{s}/model.pt" for v in VARIANTS for s in seeds(v)],
