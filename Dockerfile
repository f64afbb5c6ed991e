# syntax=docker/dockerfile:1
# xentcore: the loss-scoring service, `xent serve` on port 8000.
#
#   docker build -t xentcore:0.1.0 .
#   docker run --rm -p 127.0.0.1:8000:8000 xentcore:0.1.0   # SQLite store in the /data volume
#
# Stage "builder" turns the sources into a wheel (compiling its one C extension, the row kernels
# of xentcore/_rowops.c) and installs it, with the exact versions of constraints.txt, into the
# venv /opt/venv; the final stage is the same base image plus that venv and an unprivileged
# user: no compiler, no pip cache, no sources, no build tools.
# tests/deploy/test_image_env.py replays this file's builder RUN lines outside Docker (with the
# ARG paths pointed at a temporary directory), so keep them to plain shell on those ARGs.

FROM python:3.11-slim-bookworm AS builder

# Where the build tools, the wheel and the runtime venv go. VENV must be the same path in both
# stages: the venv's console scripts name its interpreter by absolute path.
ARG BUILD_VENV=/opt/build
ARG WHEELS=/wheels
ARG VENV=/opt/venv

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1

# The C compiler for xentcore/_rowops.c, in this stage only. Debian's current bookworm builds:
# pinned versions would stop the build at the next point release, and only the compiled module
# reaches the final image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

COPY constraints.txt ./

# Build tools at the versions constraints.txt pins. The wheel is then built without build
# isolation, so no unpinned setuptools is fetched for it.
RUN python -m venv "$BUILD_VENV" \
    && "$BUILD_VENV/bin/pip" install --no-cache-dir -c constraints.txt pip setuptools wheel

COPY pyproject.toml setup.py README.md ./
COPY xentcore/ ./xentcore/
COPY service/ ./service/

# The project's wheel, then the runtime venv. That venv gets no pip of its own: the build venv's
# pip installs into it. Binary wheels only for the dependencies, every version fixed by
# constraints.txt. Importing xentcore._rowops proves the row kernels were compiled (the extension
# is optional, so a failed compile would otherwise leave the slower numpy fallback; -I keeps the
# sources in /src off sys.path); `xent --help` proves the console script runs.
RUN "$BUILD_VENV/bin/pip" wheel --no-cache-dir --no-deps --no-build-isolation \
        --check-build-dependencies --wheel-dir "$WHEELS" . \
    && python -m venv --without-pip "$VENV" \
    && "$BUILD_VENV/bin/pip" --python "$VENV/bin/python" install --no-cache-dir \
        --only-binary=:all: -c constraints.txt "$WHEELS"/xentcore-*.whl \
    && "$VENV/bin/python" -I -c "import xentcore._rowops" \
    && "$VENV/bin/xent" --help >/dev/null


FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="xentcore" \
      org.opencontainers.image.description="Loss-scoring microservice: cross-entropy, confidence and flags for model outputs" \
      org.opencontainers.image.licenses="Apache-2.0"

# XENT_* are the service's settings (README, "Settings"); override any of them at run time.
# PROMETHEUS_MULTIPROC_DIR is prometheus_client's own variable: with XENT_WORKERS > 1 every worker
# writes its metrics there and /metrics adds them up. It lies under /tmp, which compose and the
# Kubernetes manifests mount as tmpfs; `xent serve` creates it and clears stale files at start.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XENT_HOST=0.0.0.0 \
    XENT_PORT=8000 \
    XENT_WORKERS=1 \
    XENT_DATA_DIR=/data \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus

# A fixed, unprivileged uid/gid (10001), so volume ownership and Kubernetes' runAsUser agree.
RUN groupadd --system --gid 10001 xent \
    && useradd --system --no-log-init --uid 10001 --gid xent --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin xent \
    && mkdir /data \
    && chown xent:xent /data

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /data

# The default SQLite store (XENT_DATA_DIR); unused when XENT_DATABASE_URL names PostgreSQL.
VOLUME ["/data"]

EXPOSE 8000

# Liveness only (no dependency checked): the slim image has no curl, so Python asks /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('XENT_PORT', '8000') + '/healthz', timeout=4)"]

CMD ["xent", "serve"]
