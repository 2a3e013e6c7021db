# syntax=docker/dockerfile:1
# disync-operator image: `docker build -t ghcr.io/disync-operator/disync-operator:0.1.0 .`
#
# Base: the official slim Python image, pinned by version tag (Python 3.11, the version the project is tested on).
# For fully reproducible builds, also pin its digest (python:3.11.14-slim-bookworm@sha256:...) after pulling and
# verifying it; it is not pinned here because it could not be verified where this file was written.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# Stage 1: build the operator's wheel. pip's build isolation fetches the build backend (setuptools) here; none of
# this stage reaches the final image.
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Stage 2: the runtime. Only a virtualenv with the wheel and its runtime dependencies (all of which ship binary
# wheels: no compiler is needed or present).
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
# The wheel is bind-mounted from the build stage rather than copied, so it never becomes a layer of this image;
# --no-cache-dir leaves no pip cache behind.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir /wheels/*.whl
# A numeric non-root user (no passwd entry needed): Kubernetes can verify runAsNonRoot against a number only, and
# the Deployment runs as the same 65532.
USER 65532:65532
WORKDIR /tmp
# 8080: kopf's liveness endpoint (/healthz); 9090: Prometheus metrics.
EXPOSE 8080 9090
ENTRYPOINT ["disync-operator", "run"]
