# privflow image (docs/deploy.md).
#
# builder: installs the project from its own files (pyproject.toml, dp_core/, service/) into the
#          virtual environment /opt/venv. torch is pinned as pyproject.toml pins it and taken from
#          PyTorch's CPU wheel index (TORCH_INDEX_URL): PyPI's Linux wheel of the same version is
#          the CUDA build, several GB that the CPU-only kernels never use. Everything else comes
#          from PyPI.
# runtime: the same slim Python, the venv copied over, the non-root user `privflow`, and the
#          Numba kernels compiled at build time (`privflow warm`) into NUMBA_CACHE_DIR, a
#          directory the runtime user owns: start-up loads them from disk instead of compiling.
#          Numba keys its cache to the build host's CPU; on a different CPU model the kernels
#          recompile once, in the background after start-up (into the same, writable directory;
#          /readyz answers 200 meanwhile and a request compiles what it needs first).
#
# No secret is baked in: PRIVFLOW_ADMIN_KEY and the database password (PGPASSWORD, or inside
# PRIVFLOW_DATABASE_URL) are given only when a container starts. tests/deploy/ reads the runtime
# stage's ENV, CMD and HEALTHCHECK below and runs exactly that command in CI, against PostgreSQL.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The large, rarely changing layer first, so an edit to the source does not download torch again.
RUN pip install --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dp_core ./dp_core
COPY service ./service
# torch==TORCH_VERSION is already satisfied, so this takes nothing more from the CPU index.
RUN pip install . \
    && python -c "import torch; assert torch.__version__.split('+')[0] == '${TORCH_VERSION}', torch.__version__"

FROM ${PYTHON_IMAGE} AS runtime
# libgomp1: Numba's OpenMP threading layer (the one CI uses); without it Numba would fall back
# to its workqueue layer.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system privflow \
    && useradd --system --gid privflow --home-dir /var/lib/privflow --create-home \
        --shell /usr/sbin/nologin privflow \
    && mkdir -p /opt/privflow/numba-cache \
    && chown privflow:privflow /opt/privflow/numba-cache
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/opt/privflow/numba-cache \
    PRIVFLOW_LOG_LEVEL=info \
    PRIVFLOW_WARM_ON_STARTUP=true \
    PRIVFLOW_DATABASE_URL=sqlite:////var/lib/privflow/privflow.db
USER privflow
WORKDIR /var/lib/privflow
RUN privflow warm

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["privflow", "serve", "--host", "0.0.0.0", "--port", "8000"]
