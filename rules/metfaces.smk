# HIDA Table 4, exemplar-based translation: the user's MetFaces release (folder or zip) -> paintings,
# edge maps, split and retrieved exemplars in a manifest -> depth maps (for CoCosNet + HIDA) ->
# metfaces.variants trained -> the test edge maps painted in their exemplars' style -> FID, LPIPS
# and Sem. -> Table 4's MetFaces block and Figure 12's grid. Without the release nothing here runs
# and the table's rows say where it goes.

from facesketch.data.metfaces import archive_path as metfaces_archive
from facesketch.data.metfaces import missing_reason as metfaces_missing
from facesketch.data.metfaces import model_inputs as metfaces_inputs
from facesketch.data.metfaces import table_spec as metfaces_table_spec
from facesketch.data.metfaces import variant_names as metfaces_variants
from facesketch.data.metfaces import variant_spec as metfaces_spec

MET = f"{DATA}/metfaces"
MET_MAPS = f"{MET}/maps"
MET_RES = f"{RES}/metfaces"
MET_READY = not metfaces_missing(CFG)
MET_SOURCE = metfaces_archive(CFG) or "metfaces-dataset"
MET_IS_ZIP = MET_READY and Path(MET_SOURCE).expanduser().is_file()
MET_VARIANTS = metfaces_variants(CFG) if MET_READY else []
MET_METRICS = [f"{RES}/metrics/metfaces/{v}.parquet" for v in MET_VARIANTS]
MET_GRID = [f"{RES}/plots/metfaces_grid.png"] if MET_VARIANTS else []


rule metfaces_extract:
    input:
        ancient(MET_SOURCE),  # planned only when metfaces.archive is a zip that exists
    output:
        raw=directory(f"{MET}/raw"),
        sums=sums(f"{MET}/raw"),
    log:
        f"{LOGS}/metfaces_extract.log",
    conda:
        "../envs/data.yaml"
    shell:
        "facesketch metfaces-extract {input} --out {output.raw} 2> {log};"
        " facesketch checksums {output.raw} --out {output.sums} 2>> {log}"


rule metfaces_prepare:
    input:
        sums(f"{MET}/raw") if MET_IS_ZIP else ancient(MET_SOURCE),
    output:
        manifest=f"{MET}/manifest.parquet",
        aligned=directory(f"{MET}/aligned"),
        aligned_sums=sums(f"{MET}/aligned"),
    log:
        f"{LOGS}/metfaces_prepare.log",
    conda:
        "../envs/data.yaml"
    params:
        spec=q({k: v for k, v in CFG["metfaces"].items() if k not in ("archive", "variants", "url")}),
        raw=lambda w, input: target_of(input[0]) if MET_IS_ZIP else input[0],
        out=lambda w, output: parent(output.manifest),
        code=code_fingerprint("facesketch.data.metfaces"),
    shell:
        "facesketch metfaces-prepare --raw {params.raw} --out {params.out} --spec {params.spec} 2> {log};"
        " facesketch checksums {output.aligned} --out {output.aligned_sums} 2>> {log}"


rule metfaces_maps:
    input:
        manifest=f"{MET}/manifest.parquet",
        aligned=sums(f"{MET}/aligned"),
    output:
        maps=directory(f"{MET_MAPS}/{{kind}}"),
        sums=sums(f"{MET_MAPS}/{{kind}}"),
    log:
        f"{LOGS}/metfaces_maps_{{kind}}.log",
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


rule metfaces_train:
    input:
        unpack(lambda w: metfaces_inputs(metfaces_spec(CFG, w.mfvariant), MET)),
    output:
        model=f"{MET_RES}/checkpoints/{{mfvariant}}/{{seed}}/model.pt",
        sums=sums(f"{MET_RES}/checkpoints/{{mfvariant}}/{{seed}}/model.pt"),
    log:
        f"{LOGS}/metfaces_train_{{mfvariant}}_{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/metfaces_train_{{mfvariant}}_{{seed}}.tsv"
    wildcard_constraints:
        mfvariant="|".join(MET_VARIANTS) or "NONE",
    conda:
        "../envs/train.yaml"
    resources:
        gpu=1,
    params:
        spec=lambda w: q(metfaces_spec(CFG, w.mfvariant)),
        out=lambda w, output: parent(output.model),
        weights=WEIGHTS,
        maps=MET_MAPS,
        device=DEVICE,
        code=code_fingerprint("facesketch.exemplar.train"),
    shell:
        "facesketch exemplar-train --spec {params.spec} --manifest {input.manifest} --maps {params.maps}"
        " --weights {params.weights} --out {params.out} --seed {wildcards.seed} --device {params.device} 2> {log};"
        " facesketch checksums {output.model} --out {output.sums} 2>> {log}"


rule metfaces_infer:
    input:
        unpack(lambda w: metfaces_inputs(metfaces_spec(CFG, w.mfvariant), MET)),
        model=sums(f"{MET_RES}/checkpoints/{{mfvariant}}/{{seed}}/model.pt"),
    output:
        samples=directory(f"{MET_RES}/samples/{{mfvariant}}/{{seed}}"),
        sums=sums(f"{MET_RES}/samples/{{mfvariant}}/{{seed}}"),
    log:
        f"{LOGS}/metfaces_infer_{{mfvariant}}_{{seed}}.log",
    wildcard_constraints:
        mfvariant="|".join(MET_VARIANTS) or "NONE",
    conda:
        "../envs/train.yaml"
    resources:
        gpu=1,
    params:
        model=lambda w, input: target_of(input.model),
        batch=CFG["infer"]["batch_size"],
        maps=MET_MAPS,
        device=DEVICE,
        code=code_fingerprint("facesketch.exemplar.train"),
    shell:
        "facesketch exemplar-infer --checkpoint {params.model} --manifest {input.manifest} --maps {params.maps}"
        " --out {output.samples} --batch-size {params.batch} --device {params.device} 2> {log};"
        " facesketch checksums {output.samples} --out {output.sums} 2>> {log}"


rule metfaces_score:
    input:
        manifest=f"{MET}/manifest.parquet",
        samples=lambda w: [
            sums(f"{MET_RES}/samples/{w.mfvariant}/{s}") for s in metfaces_spec(CFG, w.mfvariant)["seeds"]
        ],
    output:
        f"{RES}/metrics/metfaces/{{mfvariant}}.parquet",
    log:
        f"{LOGS}/metfaces_score_{{mfvariant}}.log",
    wildcard_constraints:
        mfvariant="|".join(MET_VARIANTS) or "NONE",
    conda:
        "../envs/metrics.yaml"
    resources:
        gpu=1,
    params:
        spec=q({"allow_missing": CFG["metrics"]["allow_missing"], "semantic": CFG["metfaces"]["semantic"]}),
        samples=lambda w, input: [target_of(f) for f in input.samples],
        weights=WEIGHTS,
        device=DEVICE,
        code=code_fingerprint("facesketch.exemplar.score"),
    shell:
        "facesketch exemplar-score --variant {wildcards.mfvariant} --manifest {input.manifest}"
        " --samples {params.samples} --weights {params.weights} --spec {params.spec} --out {output}"
        " --device {params.device} 2> {log}"


rule metfaces_grid:
    input:
        manifest=f"{MET}/manifest.parquet",
        samples=[sums(f"{MET_RES}/samples/{v}/{metfaces_spec(CFG, v)['seeds'][0]}") for v in MET_VARIANTS],
    output:
        report(
            f"{RES}/plots/metfaces_grid.png",
            caption="report/metfaces_grid.rst",
            category="Figures",
            subcategory="HIDA Table 4: MetFaces",
        ),
    log:
        f"{LOGS}/metfaces_grid.log",
    conda:
        "../envs/report.yaml"
    params:
        samples=q({v: f"{MET_RES}/samples/{v}/{metfaces_spec(CFG, v)['seeds'][0]}" for v in MET_VARIANTS}),
        rows=CFG["report"]["grid_rows"],
        code=code_fingerprint("facesketch.exemplar.grid"),
    shell:
        "facesketch metfaces-grid --manifest {input.manifest} --samples {params.samples} --rows {params.rows}"
        " --out {output} 2> {log}"


rule metfaces_all:
    input:
        MET_METRICS,
        MET_GRID,
