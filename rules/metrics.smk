# Per-image FID/LPIPS/SCOOT/FSIM/SSIM/MS-SSIM values into one Parquet per variant, and the
# released results of other methods scored the same way.


rule score:
    input:
        unpack(metrics_inputs),
    output:
        f"{RES}/metrics/{{variant}}.parquet",
    log:
        f"{LOGS}/score_{{variant}}.log",
    benchmark:
        f"{RES}/benchmarks/score_{{variant}}.tsv"
    conda:
        "../envs/metrics.yaml"
    threads: workflow.cores
    resources:
        gpu=1,
    params:
        spec=lambda w: q({"variant": w.variant, "metrics": CFG["metrics"]}),
        samples=lambda w, input: [target_of(f) for f in input.samples],
        weights=WEIGHTS,
        device=DEVICE,
        code=code_fingerprint("facesketch.metrics.evaluate"),
    shell:
        "facesketch score --spec {params.spec} --manifest {input.manifest} --samples {params.samples}"
        " --weights {params.weights} --out {output} --device {params.device} 2> {log}"


rule score_released:
    input:
        manifest=f"{FS2K}/manifest.parquet",
        raw=sums(f"{FS2K}/raw"),
    output:
        f"{RES}/metrics/released_{{released}}.parquet",
    log:
        f"{LOGS}/score_released_{{released}}.log",
    benchmark:
        f"{RES}/benchmarks/score_released_{{released}}.tsv"
    conda:
        "../envs/metrics.yaml"
    threads: workflow.cores
    resources:
        gpu=1,
    params:
        folder=lambda w: shlex.quote(CFG["released"][w.released]["path"]),
        framing=lambda w: CFG["released"][w.released]["framing"],
        label=lambda w: f"released:{w.released}",
        spec=q(CFG["metrics"]),
        weights=WEIGHTS,
        device=DEVICE,
        code=code_fingerprint("facesketch.metrics.evaluate"),
    shell:
        "facesketch evaluate {params.folder} --manifest {input.manifest} --out {output} --framing {params.framing}"
        " --label {params.label} --spec {params.spec} --weights {params.weights} --device {params.device} 2> {log}"


rule evaluate_all:
    input:
        metric_files(),
        cross_samples(),
