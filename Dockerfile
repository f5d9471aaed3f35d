# syntax=docker/dockerfile:1
# The trainsmart operator image: `trainsmart operator` (controllers, report endpoint, admission webhook).
#
# Build from the repository root:   docker build -t trainsmart-operator:0.1.0 .
# Another base (a mirror, a digest): --build-arg BASE_IMAGE=registry.example.com/python:3.11-slim-bookworm
# A package index mirror:            --build-arg PIP_INDEX_URL=https://pypi.example.com/simple
#
# Runs as uid 65532 with a read-only root filesystem: nothing is written under / at run time (bytecode is
# compiled at build time). The operator writes only its self-issued webhook certificate, under $TMPDIR
# (/tmp): mount an emptyDir there, as the Helm chart does. See docs/image.md.

# Any Debian-based image with python3 (>= 3.11) and the venv module; the same one for both stages, so the
# virtual environment's interpreter links resolve in the final image.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- build stage: the operator and its dependencies in one virtual environment (wheels only) ---------------
FROM ${BASE_IMAGE} AS build
# Unset by default (pip then uses PyPI); set them to build behind a mirror or a TLS-intercepting proxy.
ARG PIP_INDEX_URL
ARG PIP_CERT
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY trainer_image/trainsmart_trainer ./trainer_image/trainsmart_trainer
# The client: the zipapp the operator mounts into wrapped jobs is built from it.
COPY client/trainsmart_client ./client/trainsmart_client
# --only-binary: every dependency must come as a wheel, so no compiler is ever needed (or present).
# The project itself is built from source by setuptools, which pip fetches into an isolated build env.
# pip compiles bytecode as it installs. Its download cache is a build cache mount, never an image layer.
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/trainsmart \
 && /opt/trainsmart/bin/python -m pip install --disable-pip-version-check \
      --only-binary=:all: --no-binary=trainsmart /src \
 && /opt/trainsmart/bin/trainsmart --version \
 && /opt/trainsmart/bin/python -c "import trainsmart.main"

# ---- final stage: the base image plus the virtual environment; no compilers, no pip caches ---------------
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="trainsmart-operator" \
      org.opencontainers.image.description="Kubernetes operator for PyTorch TrainingJobs and HyperparamSweeps" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/trainsmart /opt/trainsmart
ENV PATH=/opt/trainsmart/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric uid:gid, so Kubernetes can check runAsNonRoot without a passwd entry.
USER 65532:65532
WORKDIR /tmp
# 8080: the trainers' report endpoint (and /healthz); the webhook and metrics ports are set by flags.
EXPOSE 8080
ENTRYPOINT ["trainsmart", "operator"]
