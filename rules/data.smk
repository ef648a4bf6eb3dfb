# FS2K: the archive (a local copy or a download), safe extraction, alignment and the manifest.

# Where the original archive lies is read when the job runs, from the environment, never a param:
# a moved archive or a shell without FS2K_ARCHIVE must not invalidate the verified copy (the input
# of everything else). `facesketch fetch` keeps an existing copy whose checksum matches.
os.environ["FACESKETCH_FS2K_SOURCE"] = archive_source(CFG) or ""


envvars:
    "FACESKETCH_FS2K_SOURCE",


rule fetch_fs2k:
    output:
        f"{FS2K}/FS2K.zip",
    log:
        f"{LOGS}/fetch_fs2k.log",
    conda:
        "../envs/data.yaml"
    params:
        gdrive=CFG["fs2k"]["gdrive_id"],
        sha=CFG["fs2k"]["sha256"] or "",
    shell:
        'facesketch fetch --out {output} --source "${{FACESKETCH_FS2K_SOURCE:-}}" --gdrive-id {params.gdrive}'
        " --sha256 '{params.sha}' 2> {log}"


rule extract_fs2k:
    input:
        ancient(f"{FS2K}/FS2K.zip"),  # verified by checksum: a fresh copy of the same archive reruns nothing
    output:
        raw=directory(f"{FS2K}/raw"),
        sums=sums(f"{FS2K}/raw"),
    log:
        f"{LOGS}/extract_fs2k.log",
    conda:
        "../envs/data.yaml"
    shell:
        "facesketch extract {input} --out {output.raw} 2> {log}; facesketch checksums {output.raw} --out {output.sums} 2>> {log}"


rule align_fs2k:
    input:
        sums(f"{FS2K}/raw"),
    output:
        manifest=f"{FS2K}/manifest.parquet",
        aligned=directory(f"{FS2K}/aligned"),
        aligned_sums=sums(f"{FS2K}/aligned"),
        skipped=f"{FS2K}/skipped.csv",
    log:
        f"{LOGS}/align_fs2k.log",
    benchmark:
        f"{RES}/benchmarks/align_fs2k.tsv"
    conda:
        "../envs/data.yaml"
    threads: workflow.cores
    params:
        spec=q({**CFG["fs2k"], "archive": None}),  # the original's path is not part of the data
        raw=lambda w, input: target_of(input[0]),
        out=lambda w, output: parent(output.manifest),
        code=code_fingerprint("facesketch.data.fs2k"),
    shell:
        "facesketch align --raw {params.raw} --out {params.out} --spec {params.spec} 2> {log};"
        " facesketch checksums {output.aligned} --out {output.aligned_sums} 2>> {log}"


rule data_all:
    input:
        f"{FS2K}/manifest.parquet",
