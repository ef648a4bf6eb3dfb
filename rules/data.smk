# FS2K: the archive (a local copy or a download), safe extraction, alignment and the manifest.


rule fetch_fs2k:
    output:
        f"{FS2K}/FS2K.zip",
    log:
        f"{LOGS}/fetch_fs2k.log",
    conda:
        "../envs/data.yaml"
    params:
        source=shlex.quote(archive_source(CFG) or ""),
        gdrive=CFG["fs2k"]["gdrive_id"],
        sha=CFG["fs2k"]["sha256"] or "",
    shell:
        "facesketch fetch --out {output} --source {params.source} --gdrive-id {params.gdrive}"
        " --sha256 '{params.sha}' 2> {log}"


rule extract_fs2k:
    input:
        f"{FS2K}/FS2K.zip",
    output:
        directory(f"{FS2K}/raw"),
    log:
        f"{LOGS}/extract_fs2k.log",
    conda:
        "../envs/data.yaml"
    shell:
        "facesketch extract {input} --out {output} 2> {log}"


rule align_fs2k:
    input:
        f"{FS2K}/raw",
    output:
        manifest=f"{FS2K}/manifest.parquet",
        aligned=directory(f"{FS2K}/aligned"),
        skipped=f"{FS2K}/skipped.csv",
    log:
        f"{LOGS}/align_fs2k.log",
    benchmark:
        f"{RES}/benchmarks/align_fs2k.tsv"
    conda:
        "../envs/data.yaml"
    threads: workflow.cores
    params:
        spec=q(CFG["fs2k"]),
        out=lambda w, output: parent(output.manifest),
        code=code_fingerprint("facesketch.data.fs2k"),
    shell:
        "facesketch align --raw {input} --out {params.out} --spec {params.spec} 2> {log}"


rule data_all:
    input:
        f"{FS2K}/manifest.parquet",
