# facesketch: FS2K -> geometry maps -> every model variant -> sketches per style -> metrics
# -> the papers' tables beside the paper's numbers -> plots and an HTML report.
#
#   snakemake --cores all --resources gpu=1                      # the full reproduction (config.yaml)
#   snakemake --cores all --resources gpu=1 \
#       --configfile config.yaml src/facesketch/configs/demo.yaml  # the CPU demo (make demo)
#   snakemake --report results/report.html [same --configfile]   # the HTML report
#
# Rules only name files and call the `facesketch` CLI; the configuration is validated against
# schemas/config.schema.yaml before any rule is planned.

import sys

from snakemake.utils import min_version

min_version("9.0")


# The image of Dockerfile (the versions of constraints.txt): jobs run in it under
# `--sdm apptainer` and on Kubernetes (profiles/kubernetes names the same image).
container: "docker://ghcr.io/facesketch/facesketch:0.1.0"


# the front page of `snakemake --report`
report: "rules/report/workflow.rst"


if not workflow.config_settings.configfiles:
    from facesketch.config import yaml_problem

    if problem := yaml_problem("config.yaml"):  # Snakemake's own message would not name the file
        sys.exit(f"facesketch: configuration error: {problem}")

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/maps.smk"
include: "rules/train.smk"
include: "rules/infer.smk"
include: "rules/metrics.smk"
include: "rules/apdrawing.smk"
include: "rules/metfaces.smk"
include: "rules/report.smk"
include: "rules/draw.smk"


rule all:
    input:
        rules.data_all.input,
        rules.maps_all.input,
        rules.train_all.input,
        rules.evaluate_all.input,
        rules.report_all.input,
        rules.draw_all.input,
