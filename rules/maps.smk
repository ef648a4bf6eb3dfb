# Depth (3DDFA_V2 or the MediaPipe face mesh), surface normals (DSINE or the face mesh) and HED
# edges for every aligned photo, plus a contact sheet per kind.


rule maps:
    input:
        manifest=f"{FS2K}/manifest.parquet",
        aligned=sums(f"{FS2K}/aligned"),
    output:
        maps=directory(f"{MAPS}/{{kind}}"),
        sums=sums(f"{MAPS}/{{kind}}"),
    log:
        f"{LOGS}/maps_{{kind}}.log",
    benchmark:
        f"{RES}/benchmarks/maps_{{kind}}.tsv"
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


rule contact_sheet:
    input:
        manifest=f"{FS2K}/manifest.parquet",
        maps=sums(f"{MAPS}/{{kind}}"),
    output:
        report(
            f"{RES}/maps/{{kind}}_contact_sheet.png",
            caption="report/contact_sheet.rst",
            category="Geometry maps",
            labels={"map": "{kind}"},
        ),
    log:
        f"{LOGS}/contact_sheet_{{kind}}.log",
    conda:
        "../envs/maps.yaml"
    params:
        per_style=CFG["maps"]["contact_sheet_per_style"],
        maps=lambda w, input: parent(input.maps),
        code=code_fingerprint("facesketch.maps.contact_sheet"),
    shell:
        "facesketch contact-sheet {wildcards.kind} --manifest {input.manifest} --maps {params.maps} --out {output}"
        " --per-style {params.per_style} 2> {log}"


rule maps_all:
    input:
        expand(f"{RES}/maps/{{kind}}_contact_sheet.png", kind=MAP_KINDS),
