# syntax=docker/dockerfile:1
# disync-operator image: `docker build --build-arg REVISION=$(git rev-parse HEAD) -t ghcr.io/disync-operator/disync-operator:0.1.0 .`
#
# Base: the official slim Python image, pinned by version tag (Python 3.11, the version the project is tested on).
# For fully reproducible builds, also pin its digest (python:3.11.14-slim-bookworm@sha256:...) after pulling and
# verifying it; it is not pinned here because it could not be verified where this file was written.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# Stage 1: build the operator's wheel. pip's build isolation fetches the build backend (setuptools) here; none of
# this stage reaches the final image.
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY operator/ operator/
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Stage 2: the runtime. Only a virtualenv with the wheel and its runtime dependencies, installed from
# requirements.lock: exact versions, each file checked against its hash (--require-hashes), binary wheels only (no
# compiler is needed or present). The operator's wheel goes in last without dependencies, and `pip check` proves the
# locked set satisfies what it declares.
FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="disync-operator" \
      org.opencontainers.image.description="Kubernetes operator for Alibaba Cloud DataWorks real-time synchronization (DISyncInstance)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/disync-operator/disync-operator" \
      org.opencontainers.image.documentation="https://github.com/disync-operator/disync-operator#readme" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
# The wheel is bind-mounted from the build stage rather than copied, so it never becomes a layer of this image;
# --no-cache-dir leaves no pip cache behind.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,source=requirements.lock,target=/requirements.lock \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: -r /requirements.lock \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps /wheels/*.whl \
    && /opt/venv/bin/pip check
# A numeric non-root user (no passwd entry needed): Kubernetes can verify runAsNonRoot against a number only, and
# the Deployment runs as the same 65532.
USER 65532:65532
WORKDIR /tmp
# 8080: kopf's liveness endpoint (/healthz); 9090: Prometheus metrics.
EXPOSE 8080 9090
ENTRYPOINT ["disync-operator", "run"]
