"""Cold start: a real ``privflow serve`` on an empty Numba cache, time to ``/readyz`` and to the
first release of each utility family.

Starts ``python -m service.cli serve`` from a source tree (``--source``, default this checkout)
with ``NUMBA_CACHE_DIR`` pointing to a fresh temporary directory (so every kernel compiles),
a temporary SQLite store, a bootstrap admin key and kernel warm-up on. Measured from the
``Popen`` call:

- **ready**: the first ``GET /readyz`` that answers 200 (polled every 0.1 s);
- **first release per family**: right after ready, one synchronous release per family (default
  sampler, in the order given by ``--families``), each timed from the request to its answer;
  families answer one after another, so a later family may find kernels already compiled by the
  background warm-up (that is the point of compiling in the background);
- **all kernels compiled**: when ``privflow_kernels_ready`` turns 1 in ``/metrics``.

Then the same releases once more (warm: kernels compiled), for comparison.

Run from the repository root: ``.venv/bin/python bench/bench_cold_start.py`` (3 to 6 minutes on
a busy 2-core machine); ``--source DIR`` measures another tree (e.g. an older commit exported
with ``git archive``), with this checkout's virtual environment. Prints one markdown section
and writes JSON to ``--json`` (default ``.benchmarks/bench_cold_start.json``, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import command_line, load_average, machine_description, markdown_table

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

COLUMNS = [
    {"name": "x", "type": "float", "lower": 0, "upper": 10},
    {"name": "y", "type": "float", "lower": -5, "upper": 5},
    {"name": "label", "type": "category", "categories": ["no", "yes"]},
    {"name": "city", "type": "category", "categories": ["paris", "rome", "oslo"]},
]
RELEASES: dict[str, dict[str, Any]] = {
    "quantile": {"utility": {"family": "quantile", "column": "x", "q": 0.5}, "epsilon": 1.0},
    "mean": {"utility": {"family": "mean", "columns": ["x", "y"]}, "epsilon": 1.0},
    "linear_regression": {
        "utility": {
            "family": "linear_regression",
            "features": ["x"],
            "target": "y",
            "radius": 2.0,
        },
        "epsilon": 1.0,
    },
    "logistic_regression": {
        "utility": {
            "family": "logistic_regression",
            "features": ["x", "y"],
            "label": "label",
            "radius": 1.5,
        },
        "epsilon": 1.0,
    },
    "kmeans": {
        "utility": {"family": "kmeans", "columns": ["x", "y"], "k": 2, "form": "loss"},
        "epsilon": 1.0,
    },
    "mode": {"utility": {"family": "mode", "column": "city"}, "epsilon": 1.0, "method": "exact"},
}


def _records(n: int) -> list[list[Any]]:
    return [
        [
            float((3 * i) % 11) * 10 / 11,
            float(((5 * i) % 9) - 4),
            ["no", "yes"][i % 2],
            ["paris", "rome", "oslo"][(i * i) % 3],
        ]
        for i in range(n)
    ]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _kernels_ready(client: httpx.Client, admin: dict[str, str]) -> bool:
    text = client.get("/metrics", headers=admin).text
    return "privflow_kernels_ready 1.0" in text.splitlines()


def measure(source: Path, families: list[str], n_records: int, timeout: float) -> dict[str, Any]:
    """One cold start of the server in ``source``; see the module docstring."""
    with tempfile.TemporaryDirectory(prefix="privflow-cold-") as tmp:
        admin_key = secrets.token_urlsafe(32)
        admin = {"Authorization": f"Bearer {admin_key}"}
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVFLOW_")}
        env.update(
            NUMBA_CACHE_DIR=str(Path(tmp) / "numba-cache"),
            PRIVFLOW_DATABASE_URL=f"sqlite:///{tmp}/privflow.db",
            PRIVFLOW_ADMIN_KEY=admin_key,
            PRIVFLOW_WARM_ON_STARTUP="true",
            PRIVFLOW_LOG_LEVEL="info",
        )
        log_path = Path(tmp) / "server.log"
        command = [sys.executable, "-m", "service.cli", "serve", "--host", HOST]
        command += ["--port", str(port)]
        result: dict[str, Any] = {"source": str(source), "first": {}, "warm": {}}
        with log_path.open("wb") as log:
            start = time.monotonic()
            process = subprocess.Popen(
                command, cwd=source, env=env, stdout=log, stderr=subprocess.STDOUT
            )
            try:
                client = httpx.Client(base_url=f"http://{HOST}:{port}", timeout=timeout)
                while True:
                    if process.poll() is not None:
                        raise RuntimeError(f"server exited:\n{log_path.read_text()[-3000:]}")
                    if time.monotonic() - start > timeout:
                        raise RuntimeError("server not ready in time")
                    try:
                        if client.get("/readyz", timeout=2.0).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.1)
                result["ready_s"] = time.monotonic() - start
                body = {
                    "name": "cold",
                    "columns": COLUMNS,
                    "records": _records(n_records),
                    "budget": {"epsilon": 1000.0, "delta": 1e-5},
                }
                created = client.post("/v1/datasets", json=body, headers=admin)
                created.raise_for_status()
                dataset_id = created.json()["id"]
                for label in ("first", "warm"):
                    for family in families:
                        t0 = time.monotonic()
                        answer = client.post(
                            f"/v1/datasets/{dataset_id}/samples",
                            json=RELEASES[family],
                            headers=admin,
                        )
                        if answer.status_code != 201:
                            raise RuntimeError(f"{family}: {answer.status_code} {answer.text}")
                        result[label][family] = time.monotonic() - t0
                        if label == "first":
                            result[label + "_at_s"] = time.monotonic() - start
                while not _kernels_ready(client, admin):
                    if time.monotonic() - start > timeout:
                        raise RuntimeError("kernels never all compiled")
                    time.sleep(0.5)
                result["all_compiled_s"] = time.monotonic() - start
            finally:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        result["compile_log"] = [
            line
            for line in log_path.read_text(errors="replace").splitlines()
            if "compiled" in line or "kernel" in line
        ]
    return result


def render(result: dict[str, Any], families: list[str]) -> str:
    """One markdown table: ready, first and warm release per family, all compiled."""
    rows: list[list[object]] = [["`/readyz` 200 after start", f"{result['ready_s']:.1f} s", ""]]
    for family in families:
        rows.append(
            [
                f"first `{family}` release",
                f"{result['first'][family]:.1f} s",
                f"{result['warm'][family]:.2f} s",
            ]
        )
    rows.append(["every kernel compiled after start", f"{result['all_compiled_s']:.0f} s", ""])
    return markdown_table(["step (empty Numba cache)", "cold", "warm (again)"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT)
    parser.add_argument("--families", nargs="+", default=list(RELEASES), choices=list(RELEASES))
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--json", type=Path, default=ROOT / ".benchmarks/bench_cold_start.json")
    args = parser.parse_args()
    load_before = load_average()
    result = measure(args.source.resolve(), args.families, args.records, args.timeout)
    result["load_average"] = [load_before, load_average()]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"## Cold start ({args.source})\n")
    print(f"`{command_line()}`\n")
    print("\n".join(machine_description()))
    print(f"- Load average before / after: {load_before} / {load_average()}\n")
    print(render(result, args.families))


if __name__ == "__main__":
    main()
