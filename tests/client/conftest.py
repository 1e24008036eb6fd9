"""Fixtures for SDK tests: one real ``privflow serve`` process per session, and helpers.

The server runs as a subprocess on a free port with a throwaway SQLite file, a random admin key,
kernel warm-up off (kernels compile or load from the Numba cache on first use), one release
worker (so a second job queues behind a running one) and a small
request-body limit (``BODY_LIMIT``) so a 413 is cheap to provoke. Tests reach it only through
``privflow_client`` (and, for the CLI, through ``privflow-client``).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from privflow_client import Client, Dataset, KeyCreated

REPO_ROOT = Path(__file__).resolve().parents[2]
BODY_LIMIT = 200_000
START_TIMEOUT_S = 90.0
COLUMNS: list[dict[str, Any]] = [
    {"name": "age", "type": "float", "lower": 0, "upper": 100},
    {"name": "city", "type": "category", "categories": ["a", "b", "c"]},
]
CHEAP_SHK = {"particles": 64}
"""SHK releases in these tests: few particles (a release then takes well under a second once the
kernels are loaded; the first one in a fresh process loads or compiles them)."""


@dataclass(frozen=True)
class Server:
    url: str
    admin_key: str
    port: int
    log: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"privflow serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"privflow serve not ready after {START_TIMEOUT_S} s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real ``privflow serve`` for the whole session; terminated (then killed) at its end."""
    tmp = tmp_path_factory.mktemp("privflow-server")
    port = free_port()
    admin_key = "pf_" + secrets.token_urlsafe(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVFLOW_")}
    env |= {
        "PRIVFLOW_DATABASE_URL": f"sqlite:///{tmp / 'privflow.db'}",
        "PRIVFLOW_ADMIN_KEY": admin_key,
        "PRIVFLOW_WARM_ON_STARTUP": "false",
        "PRIVFLOW_MAX_BODY_BYTES": str(BODY_LIMIT),
        "PRIVFLOW_LOG_LEVEL": "warning",
        "PRIVFLOW_JOB_WORKERS": "1",
    }
    command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    log = tmp / "serve.log"
    with (
        log.open("wb") as sink,
        subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=sink, stderr=sink) as process,
    ):
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, process, log)
            yield Server(url=url, admin_key=admin_key, port=port, log=log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(autouse=True)
def _no_privflow_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests set ``PRIVFLOW_URL`` / ``PRIVFLOW_API_KEY`` themselves when they want them."""
    for name in ("PRIVFLOW_URL", "PRIVFLOW_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def admin(server: Server) -> Iterator[Client]:
    with Client(server.url, server.admin_key) as client:
        yield client


def records(n: int) -> list[list[Any]]:
    """``n`` public-looking rows for ``COLUMNS`` (ages spread over [0, 100], cities cycling)."""
    return [[float((7 * i) % 101), "abc"[i % 3]] for i in range(n)]


@pytest.fixture
def make_dataset(admin: Client) -> Callable[..., Dataset]:
    def make(*, epsilon: float = 10.0, n: int = 50, **extra: Any) -> Dataset:
        return admin.datasets.create("people", COLUMNS, records(n), epsilon=epsilon, **extra)

    return make


@pytest.fixture
def make_analyst(
    admin: Client, server: Server
) -> Iterator[Callable[..., tuple[KeyCreated, Client]]]:
    """An analyst key and a client using it, optionally granted datasets."""
    opened: list[Client] = []

    def make(*granted: str, **caps: float | None) -> tuple[KeyCreated, Client]:
        key = admin.keys.create(f"analyst-{len(opened)}")
        for dataset_id in granted:
            admin.datasets.grant(dataset_id, key.id, **caps)
        client = Client(server.url, key.key)
        opened.append(client)
        return key, client

    yield make
    for client in opened:
        client.close()
