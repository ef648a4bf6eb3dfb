# HIDA Table 4, pen drawings: the user's APDrawingDB.zip -> photo|drawing pairs and a manifest ->
# depth maps (the same predictors as FS2K) -> apdrawing.variants trained by the same engine ->
# drawings of the 70 test photos -> FID and LPIPS, and other methods' released results scored
# the same way. Without the archive nothing here runs and Table 4's rows say where it goes.

from facesketch.data.apdrawing import archive_path as apdrawing_archive
from facesketch.data.apdrawing import model_inputs as apdrawing_inputs
from facesketch.data.apdrawing import missing_reason as apdrawing_missing
from facesketch.data.apdrawing import released_available as apdrawing_released
from facesketch.data.apdrawing import run_variants as apdrawing_variants
from facesketch.data.apdrawing import table_spec as apdrawing_table_spec

APD = f"{DATA}/apdrawing"
APD_MAPS = f"{APD}/maps"
APD_RES = f"{RES}/apdrawing"
APD_READY = not apdrawing_missing(CFG)
APD_VARIANTS = apdrawing_variants(CFG) if APD_READY else []
APD_RELEASED = [n for n, ok in apdrawing_released(CFG).items() if ok] if APD_READY else []
# scored as Table 4 scores them; the aligned 512x512 pairs are APDrawing's native framing
APD_METRICS_SPEC = {**CFG["metrics"], "names": ["FID", "LPIPS"], "framing": "aligned"}
APD_METRICS = [f"{RES}/metrics/apdrawing/{v}.parquet" for v in APD_VARIANTS] + [
    f"{RES}/metrics/apdrawing/released_{n}.parquet" for n in APD_RELEASED
]


rule apdrawing_extract:
    input:
        ancient(apdrawing_archive(CFG) or "APDrawingDB.zip"),  # only planned when the archive exists
    output:
        raw=directory(f"{APD}/raw"),
        sums=sums(f"{APD}/raw"),
    log:
        f"{LOGS}/apdrawing_extract.log",
    conda:
        "../envs/data.yaml"
    shell:
        "facesketch apdrawing-extract {input} --out {output.raw} 2> {log};"
        " facesketch checksums {output.raw} --out {output.sums} 2>> {log}"


rule apdrawing_prepare:
    input:
        sums(f"{APD}/raw"),
    output:
        manifest=f"{APD}/manifest.parquet",
        aligned=directory(f"{APD}/aligned"),
        aligned_sums=sums(f"{APD}/aligned"),
    log:
        f"{LOGS}/apdrawing_prepare.log",
    conda:
        "../envs/data.yaml"
    params:
        spec=q({k: CFG["apdrawing"][k] for k in ("size", "expected")}),
        raw=lambda w, input: target_of(input[0]),
        out=lambda w, output: parent(output.manifest),
        code=code_fingerprint("facesketch.data.apdrawing"),
    shell:
        "facesketch apdrawing-prepare --raw {params.raw} --out {params.out} --spec {params.spec} 2> {log};"
        " facesketch checksums {output.aligned} --out {output.aligned_sums} 2>> {log}"


rule apdrawing_maps:
    input:
        manifest=f"{APD}/manifest.parquet",
        aligned=sums(f"{APD}/aligned"),
    output:
        maps=directory(f"{APD_MAPS}/{{kind}}"),
        sums=sums(f"{APD_MAPS}/{{kind}}"),
    log:
        f"{LOGS}/apdrawing_maps_{{kind}}.log",
    conda:
        "../envs/maps.yaml"
    resources:
        gpu=1,
    params:
        spec=q(CFG["maps"]),
        weights=WEIGHTS,
        device=DEVICE,
        code=code_fingerprint("facesketch.maps.run"),
    shell:
        "facesketch maps {wildcards.kind} --manifest {input.manifest} --out {output.maps} --weights {params.weights}"
        " --spec {params.spec} --device {params.device} 2> {log};"
        " facesketch checksums {output.maps} --out {output.sums} 2>> {log}"


rule apdrawing_train:
    input:
        unpack(lambda w: apdrawing_inputs(spec(w.apvariant), APD)),
    output:
        model=f"{APD_RES}/checkpoints/{{apvariant}}/{{seed}}/model.pt",
        sums=sums(f"{APD_RES}/checkpoints/{{apvariant}}/{{seed}}/model.pt"),
    log:
        f"{LOGS}/apdrawing_train_{{apvariant}}_{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/apdrawing_train_{{apvariant}}_{{seed}}.tsv"
    wildcard_constraints:
        apvariant="|".join(APD_VARIANTS) or "NONE",
    conda:
        "../envs/train.yaml"
    resources:
        gpu=1,
    params:
        spec=lambda w: q(spec(w.apvariant)),
        out=lambda w, output: parent(output.model),
        weights=WEIGHTS,
        maps=APD_MAPS,
        device=DEVICE,
        code=code_fingerprint("facesketch.train.run"),
    shell:
        "facesketch train --spec {params.spec} --manifest {input.manifest} --maps {params.maps} --weights {params.weights}"
        " --out {params.out} --done {output.model} --seed {wildcards.seed} --device {params.device} 2> {log};"
        " facesketch checksums {output.model} --out {output.sums} 2>> {log}"


rule apdrawing_infer:
    input:
        unpack(lambda w: apdrawing_inputs(spec(w.apvariant), APD)),
        model=sums(f"{APD_RES}/checkpoints/{{apvariant}}/{{seed}}/model.pt"),
    output:
        samples=directory(f"{APD_RES}/samples/{{apvariant}}/{{seed}}/Style1"),
        sums=sums(f"{APD_RES}/samples/{{apvariant}}/{{seed}}/Style1"),
    log:
        f"{LOGS}/apdrawing_infer_{{apvariant}}_{{seed}}.log",
    wildcard_constraints:
        apvariant="|".join(APD_VARIANTS) or "NONE",
    conda:
        "../envs/train.yaml"
    resources:
        gpu=1,
    params:
        spec=lambda w: q(spec(w.apvariant)),
        model=lambda w, input: target_of(input.model),
        batch=CFG["infer"]["batch_size"],
        maps=APD_MAPS,
        device=DEVICE,
        code=code_fingerprint("facesketch.train.infer"),
    shell:
        "facesketch infer --spec {params.spec} --checkpoint {params.model} --manifest {input.manifest}"
        " --maps {params.maps} --out {output.samples} --style Style1 --batch-size {params.batch}"
        " --device {params.device} 2> {log}; facesketch checksums {output.samples} --out {output.sums} 2>> {log}"


rule apdrawing_score:
    input:
        manifest=f"{APD}/manifest.parquet",
        samples=lambda w: [sums(f"{APD_RES}/samples/{w.apvariant}/{s}/Style1") for s in seeds(w.apvariant)],
    output:
        f"{RES}/metrics/apdrawing/{{apvariant}}.parquet",
    log:
        f"{LOGS}/apdrawing_score_{{apvariant}}.log",
    wildcard_constraints:
        apvariant="|".join(APD_VARIANTS) or "NONE",
    conda:
        "../envs/metrics.yaml"
    threads: workflow.cores
    resources:
        gpu=1,
    params:
        spec=lambda w: q({"variant": w.apvariant, "metrics": APD_METRICS_SPEC}),
        samples=lambda w, input: [target_of(f) for f in input.samples],
        weights=WEIGHTS,
        device=DEVICE,
        code=code_fingerprint("facesketch.metrics.evaluate"),
    shell:
        "facesketch score --spec {params.spec} --manifest {input.manifest} --samples {params.samples}"
        " --weights {params.weights} --out {output} --device {params.device} 2> {log}"


rule apdrawing_score_released:
    input:
        manifest=f"{APD}/manifest.parquet",
    output:
        f"{RES}/metrics/apdrawing/released_{{apreleased}}.parquet",
    log:
        f"{LOGS}/apdrawing_score_released_{{apreleased}}.log",
    wildcard_constraints:
        apreleased="|".join(APD_RELEASED) or "NONE",
    conda:
        "../envs/metrics.yaml"
    threads: workflow.cores
    resources:
        gpu=1,
    params:
        folder=lambda w: shlex.quote(CFG["apdrawing"]["released"][w.apreleased]["path"]),
        label=lambda w: f"released:apdrawing_{w.apreleased}",
        spec=q(APD_METRICS_SPEC),
        weights=WEIGHTS,
        device=DEVICE,
        code=code_fingerprint("facesketch.metrics.evaluate"),
    shell:
        "facesketch evaluate {params.folder} --manifest {input.manifest} --out {output} --framing aligned --ids stem"
        " --label {params.label} --spec {params.spec} --weights {params.weights} --device {params.device} 2> {log}"


rule apdrawing_all:
    input:
        APD_METRICS,
