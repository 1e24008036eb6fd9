"""A seeded privflow server for the dashboard tests: keys, datasets, grants and cheap releases.

Releases use the exact mechanisms (quantile on a grid, mode), which run in milliseconds and
need no Numba compilation, so a fresh checkout seeds in a few seconds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ADMIN_KEY = "pf_dashboard_test_admin_0123456789abcdef"

COLUMNS = [
    {"name": "age", "type": "float", "lower": 0, "upper": 100},
    {"name": "city", "type": "category", "categories": ["a", "b", "c"]},
]


def _records(n: int) -> list[list[Any]]:
    return [[float((7 * i) % 101), "abc"[i % 3]] for i in range(n)]


def auth(key: str) -> dict[str, str]:
    """Authorization headers for ``key``."""
    return {"Authorization": f"Bearer {key}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running ``privflow serve`` subprocess."""

    base_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


def start_server(workdir: Path, timeout: float = 90.0) -> Server:
    """Start ``privflow serve`` on a free loopback port with a fresh SQLite store."""
    port = free_port()
    env = {
        **os.environ,
        "PRIVFLOW_DATABASE_URL": f"sqlite:///{workdir / 'privflow.db'}",
        "PRIVFLOW_ADMIN_KEY": ADMIN_KEY,
        "PRIVFLOW_WARM_ON_STARTUP": "false",
        "PRIVFLOW_HOST": "127.0.0.1",
        "PRIVFLOW_PORT": str(port),
        "PRIVFLOW_LOG_LEVEL": "warning",
    }
    script = Path(sys.executable).with_name("privflow")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([*command, "serve"], env=env, stdout=out, stderr=out)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"privflow serve exited ({process.returncode}): {log.read_text()}")
        try:
            if httpx.get(f"{server.base_url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"privflow serve was not ready in {timeout} s: {log.read_text()}")


@dataclass
class Seeded:
    """What :func:`seed` created: keys (id and secret by name) and dataset ids by name."""

    keys: dict[str, dict[str, str]] = field(default_factory=dict)
    datasets: dict[str, str] = field(default_factory=dict)
    releases: dict[str, list[str]] = field(default_factory=dict)


def _ok(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()


def seed(base_url: str) -> Seeded:
    """Two analysts and an admin spending on two datasets.

    ``salaries`` (ε_B = 2.5, δ_B = 1e-6): alice (cap 2) and bob (cap 1) and the admin spend
    2.15, so the dataset is near exhaustion (86 %) and bob near his cap (85 %).
    ``visits`` (ε_B = 1, δ_B = 0): alice, uncapped, spends all of it (exhausted).
    """
    out = Seeded()
    with httpx.Client(base_url=base_url, timeout=60) as http:
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        for name in ("alice", "bob"):
            body = _ok(http.post("/v1/keys", json={"name": name, "role": "analyst"}, headers=admin))
            out.keys[name] = {"id": body["id"], "key": body["key"]}
            out.releases[name] = []
        out.keys["admin"] = {"id": "key_admin", "key": ADMIN_KEY}
        out.releases["admin"] = []
        budgets = {"salaries": (2.5, 1e-6), "visits": (1.0, 0.0)}
        for name, (epsilon, delta) in budgets.items():
            body = {
                "name": name,
                "columns": COLUMNS,
                "records": _records(300),
                "budget": {"epsilon": epsilon, "delta": delta},
            }
            out.datasets[name] = _ok(http.post("/v1/datasets", json=body, headers=admin))["id"]
        grants = [("salaries", "alice", 2.0), ("salaries", "bob", 1.0), ("visits", "alice", None)]
        for dataset, who, cap in grants:
            _ok(
                http.post(
                    f"/v1/datasets/{out.datasets[dataset]}/grants",
                    json={"key_id": out.keys[who]["id"], "epsilon_cap": cap},
                    headers=admin,
                )
            )
        median = {"family": "quantile", "column": "age", "q": 0.5}
        releases = [
            ("salaries", "alice", median, 0.5, 1),
            ("salaries", "bob", {"family": "mode", "column": "city"}, 0.25, 1),
            ("salaries", "alice", {"family": "quantile", "column": "age", "q": 0.9}, 0.5, 1),
            ("salaries", "bob", median, 0.6, 1),
            ("salaries", "admin", median, 0.3, 2),
            ("visits", "alice", median, 0.5, 1),
            ("visits", "alice", {"family": "mode", "column": "city"}, 0.5, 1),
        ]
        for dataset, who, utility, epsilon, n_samples in releases:
            body = {
                "utility": utility,
                "epsilon": epsilon,
                "delta": 1e-6,
                "n_samples": n_samples,
                "method": "exact",
            }
            headers = {"Authorization": f"Bearer {out.keys[who]['key']}"}
            response = http.post(
                f"/v1/datasets/{out.datasets[dataset]}/samples", json=body, headers=headers
            )
            out.releases[who].append(_ok(response)["release_id"])
    return out
