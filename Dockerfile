# privflow image. The builder stage installs the project into /opt/venv; the slim runtime stage
# copies that venv, runs as the non-root user `privflow` and ships the compiled Numba kernels:
# `privflow warm` runs at build time into NUMBA_CACHE_DIR, so start-up loads them from disk.
# Numba's cache is keyed to the build host's CPU model; on another CPU the kernels recompile at
# start-up and /readyz answers 503 until they are done (the health check's start period covers it).

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dp_core ./dp_core
COPY service ./service
RUN pip install .

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/opt/privflow/numba-cache
RUN groupadd --system privflow \
    && useradd --system --gid privflow --home-dir /var/lib/privflow --create-home \
        --shell /usr/sbin/nologin privflow \
    && mkdir -p "$NUMBA_CACHE_DIR" \
    && chown privflow:privflow "$NUMBA_CACHE_DIR"
COPY --from=builder /opt/venv /opt/venv
USER privflow
WORKDIR /var/lib/privflow
RUN privflow warm

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["privflow", "serve", "--host", "0.0.0.0", "--port", "8000"]
