"""Service load: small private releases through a real ``privflow serve`` under client concurrency.

Prints one markdown section (the command, the machine, the load average, one table) and writes
the numbers as JSON (``--json``, default ``.benchmarks/bench_service.json``, git-ignored).

1. **Baseline, in-process**: the same release computed by
   ``ExponentialMechanism(Quantile(0.5, 0, 100), 1.0).sample(records, 1)`` in this process, one
   call after another (a single-threaded client; the Numba kernels use every core, as in the
   server), for the default sampler and for ``method="exact"``. Timed in small batches before
   every service level and after the last one, while the server idles, so that baseline and
   service see the same background load on a shared machine; the median of all batches is the
   baseline.
2. **Service**: ``python -m service.cli serve`` on a free loopback port with a temporary SQLite
   store, the bootstrap admin key and kernel warm-up on (``/readyz`` 200 before any load), one
   uvicorn worker and the default single job worker thread. One dataset of n = 1000 records
   (column ``x`` in [0, 100], budget ε = 10^6). Then ``POST /v1/datasets/{id}/samples`` with
   ``{"utility": {"family": "quantile", "column": "x", "q": 0.5}, "epsilon": 1.0}`` (default
   sampler) and the same with ``"method": "exact"``: 4 sequential warm-up requests, then for
   client concurrency 1, 8 and 32 a fixed number of requests (64; ``--quick``: 16) from that
   many ``httpx.AsyncClient`` tasks, each sending its next request when the last one answered
   (closed loop). Reported: releases/s (201 answers / wall time of the level), p50 and p99
   latency of the 201 answers, the count of other answers, and releases/s as a fraction of the
   in-process baseline.

Run from the repository root: ``.venv/bin/python bench/bench_service.py`` (3 minutes on a quiet
2-core machine, far longer on a loaded one: the SHK levels queue 64 releases each behind one
worker thread; ``--quick``: 16 requests per level).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import command_line, fmt_seconds, machine_description, markdown_table

from dp_core.privacy.mechanism import ExponentialMechanism
from dp_core.privacy.utilities import Quantile

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
N_RECORDS = 1000
LOWER, UPPER = 0.0, 100.0
CONCURRENCY = (1, 8, 32)
WARMUP_REQUESTS = 4
READY_TIMEOUT_S = 900.0  # warm-up compiles every kernel when the Numba cache is empty
REQUEST_TIMEOUT_S = 900.0  # 32 queued SHK releases behind one worker thread
VARIANTS: dict[str, dict[str, Any]] = {
    "default sampler (shk)": {},
    "exact": {"method": "exact"},
}


def records() -> np.ndarray:
    """The dataset's public-domain column: n values in [0, 100], fixed seed."""
    rng = np.random.default_rng(20240601)
    return np.clip(rng.normal(47.0, 18.0, N_RECORDS), LOWER, UPPER)


def release_body(extra: dict[str, Any]) -> dict[str, Any]:
    return {"utility": {"family": "quantile", "column": "x", "q": 0.5}, "epsilon": 1.0, **extra}


# ----------------------------------------------------------------------------- baseline


class InProcess:
    """The baseline: the same releases computed in this process, one call after another."""

    def __init__(self) -> None:
        self.data = records()[:, None]
        self.mechanisms = {
            name: ExponentialMechanism(
                Quantile(0.5, LOWER, UPPER), 1.0, method=extra.get("method", "shk")
            )
            for name, extra in VARIANTS.items()
        }
        for mechanism in self.mechanisms.values():
            mechanism.sample(self.data, 1)  # compile / load the kernels, warm the caches
        self.seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}

    def batch(self, name: str, repeats: int) -> None:
        """Time ``repeats`` releases (plan + sample) of variant ``name``."""
        for _ in range(repeats):
            start = time.perf_counter()
            self.mechanisms[name].sample(self.data, 1)
            self.seconds[name].append(time.perf_counter() - start)


# ----------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class Server:
    """``python -m service.cli serve`` on a free port; logs go to ``log_path``."""

    def __init__(self, workdir: Path, admin_key: str) -> None:
        self.port = free_port()
        self.log_path = workdir / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVFLOW_")}
        env.update(
            PRIVFLOW_DATABASE_URL=f"sqlite:///{workdir / 'privflow.db'}",
            PRIVFLOW_ADMIN_KEY=admin_key,
            PRIVFLOW_WARM_ON_STARTUP="true",
        )
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = f"http://{HOST}:{self.port}"

    def __enter__(self) -> Server:
        cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        started = time.monotonic()
        while time.monotonic() - started < READY_TIMEOUT_S:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early; log tail:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=5).status_code == 200:
                    self.ready_seconds = time.monotonic() - started
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.__exit__(None, None, None)
        raise RuntimeError(f"server not ready in {READY_TIMEOUT_S} s; log:\n{self.log_tail()}")

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# ----------------------------------------------------------------------------- load


async def run_level(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], concurrency: int, total: int
) -> dict[str, Any]:
    """``total`` requests from ``concurrency`` closed-loop tasks; latencies of the 201s."""
    remaining = total
    latencies: list[float] = []
    others: dict[int, int] = {}

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            response = await client.post(path, json=body)
            elapsed = time.perf_counter() - start
            if response.status_code == 201:
                latencies.append(elapsed)
            else:
                others[response.status_code] = others.get(response.status_code, 0) + 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "requests": total,
        "wall_s": wall,
        "ok": len(latencies),
        "releases_per_s": len(latencies) / wall,
        "p50_s": float(np.percentile(latencies, 50)) if latencies else None,
        "p99_s": float(np.percentile(latencies, 99)) if latencies else None,
        "non_201": others,
    }


async def load(
    server: Server, admin_key: str, total: int, baseline: InProcess, repeats: dict[str, int]
) -> dict[str, list[dict[str, Any]]]:
    """Every variant and level against the server; an in-process baseline batch before each
    level and after the last, so that both see the same background load over time."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    limits = httpx.Limits(max_connections=max(CONCURRENCY) + 4)
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=headers, timeout=REQUEST_TIMEOUT_S, limits=limits
    ) as client:
        created = await client.post(
            "/v1/datasets",
            json={
                "name": "bench",
                "columns": [{"name": "x", "type": "float", "lower": LOWER, "upper": UPPER}],
                "records": [[float(v)] for v in records()],
                "budget": {"epsilon": 1e6},
            },
        )
        created.raise_for_status()
        path = f"/v1/datasets/{created.json()['id']}/samples"
        results: dict[str, list[dict[str, Any]]] = {}
        for name, extra in VARIANTS.items():
            body = release_body(extra)
            for _ in range(WARMUP_REQUESTS):
                (await client.post(path, json=body)).raise_for_status()
            results[name] = []
            for concurrency in CONCURRENCY:
                baseline.batch(name, repeats[name])  # the server is idle meanwhile
                results[name].append(await run_level(client, path, body, concurrency, total))
            baseline.batch(name, repeats[name])
    return results


# ----------------------------------------------------------------------------- report


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 requests per level, not 64")
    parser.add_argument("--requests", type=int, help="requests per level (overrides --quick)")
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / ".benchmarks" / "bench_service.json",
        help="where to write the results (default: .benchmarks/bench_service.json)",
    )
    args = parser.parse_args()
    total = args.requests or (16 if args.quick else 64)
    repeats = {"default sampler (shk)": 1 if args.quick else 3, "exact": 16}
    load_start = load_average()
    started = dt.datetime.now(dt.UTC)

    in_process = InProcess()
    admin_key = "pf_bench_" + secrets.token_urlsafe(24)
    with (
        tempfile.TemporaryDirectory(prefix="privflow-bench-") as tmp,
        Server(Path(tmp), admin_key) as server,
    ):
        ready_s = server.ready_seconds
        results = asyncio.run(load(server, admin_key, total, in_process, repeats))
    load_end = load_average()

    baseline = {}
    for name in VARIANTS:
        times = in_process.seconds[name]
        median = statistics.median(times)
        baseline[name] = {
            "repeats": len(times),
            "median_s": median,
            "releases_per_s": 1.0 / median,
            "min_s": min(times),
            "max_s": max(times),
        }

    rows = []
    for name in VARIANTS:
        base = baseline[name]
        rows.append(
            [
                f"{name}, in-process baseline",
                "1 (sequential)",
                base["repeats"],
                f"{base['releases_per_s']:.2f}",
                fmt_seconds(base["median_s"]),
                f"(max {fmt_seconds(base['max_s'])})",
                "–",
                "1.00",
            ]
        )
        for level in results[name]:
            others = sum(level["non_201"].values())
            codes = ", ".join(f"{k}: {v}" for k, v in sorted(level["non_201"].items()))
            rows.append(
                [
                    f"{name}, service",
                    level["concurrency"],
                    level["requests"],
                    f"{level['releases_per_s']:.2f}",
                    fmt_seconds(level["p50_s"]) if level["p50_s"] is not None else "–",
                    fmt_seconds(level["p99_s"]) if level["p99_s"] is not None else "–",
                    f"{others}" + (f" ({codes})" if codes else ""),
                    f"{level['releases_per_s'] / base['releases_per_s']:.2f}",
                ]
            )

    print("## Service load: small releases through `privflow serve`\n")
    print(f"Command: `{command_line()}`\n")
    print(
        "\n".join(
            [
                *machine_description(),
                f"- Date: {started:%Y-%m-%d %H:%M} UTC; `nproc` = {os.cpu_count()}; load "
                f"average (1 / 5 / 15 min) {load_start} at start, {load_end} at end",
                f"- Server: 1 uvicorn worker, 1 job worker thread (defaults), SQLite store, "
                f"warm-up on (ready after {ready_s:.1f} s)",
            ]
        )
        + "\n"
    )
    print(
        f"Dataset: n = {N_RECORDS} records, column `x` in [{LOWER:g}, {UPPER:g}], size bound "
        "10^6 (default). Release: `quantile` q = 0.5, ε = 1.0, one sample; default sampler "
        "(SHK, 2000 particles) or `method: exact`. Per level: "
        f"{total} requests after {WARMUP_REQUESTS} warm-up requests; latency is per request "
        "as the client sees it; 'of baseline' = releases/s ÷ in-process releases/s.\n"
    )
    print(
        markdown_table(
            [
                "release",
                "client concurrency",
                "requests",
                "releases/s",
                "p50 latency",
                "p99 latency",
                "non-201",
                "of baseline",
            ],
            rows,
        )
        + "\n"
    )

    payload = {
        "command": command_line(),
        "date_utc": started.isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "load_average_start": load_start,
        "load_average_end": load_end,
        "server_ready_s": ready_s,
        "requests_per_level": total,
        "baseline": baseline,
        "service": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"JSON results: `{os.path.relpath(args.json, ROOT)}`\n")


if __name__ == "__main__":
    main()
