"""The ``privflow`` command line: help, warm report, settings overrides, and a real ``serve``."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import sqlalchemy
import uvicorn

import dp_core.engine
from service.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVE_TIMEOUT_S = 30.0


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "serve" in out and "warm" in out


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_warm_prints_what_it_compiled(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    report = SimpleNamespace(seconds=12.34, signatures=7)
    monkeypatch.setattr(dp_core.engine, "warm", lambda: report, raising=False)
    assert main(["warm"]) == 0
    assert capsys.readouterr().out == "compiled 7 kernel signatures in 12.3 s\n"


def test_serve_flags_override_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setenv("PRIVFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.setenv("PRIVFLOW_HOST", "0.0.0.0")
    monkeypatch.setenv("PRIVFLOW_PORT", "9000")
    monkeypatch.setenv("PRIVFLOW_LOG_LEVEL", "warning")

    assert main(["serve", "--port", "9100", "--workers", "2"]) == 0

    [(args, kwargs)] = calls
    assert args == ("service.app:create_app",)
    assert kwargs["factory"] is True
    assert (kwargs["host"], kwargs["port"], kwargs["workers"]) == ("0.0.0.0", 9100, 2)
    assert kwargs["log_level"] == "warning"
    assert kwargs["log_config"]["loggers"]["service"]["level"] == "WARNING"


def test_serve_rejects_invalid_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("server started"))
    assert main(["serve", "--port", "70000"]) == 2
    assert "port" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_answers_healthz_end_to_end(tmp_path: Path) -> None:
    port = _free_port()
    env = os.environ | {
        "PRIVFLOW_WARM_ON_STARTUP": "false",
        "PRIVFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
    }
    command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    log_path = tmp_path / "serve.log"
    with (
        log_path.open("wb") as log,
        subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log) as server,
    ):
        try:
            status = _poll_healthz(f"http://127.0.0.1:{port}", server)
            assert status == 200, log_path.read_text()
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5.0)
            assert ready.status_code == 200
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    log_text = log_path.read_text()
    assert server.returncode in (0, -signal.SIGTERM), log_text
    assert "Application shutdown complete." in log_text
    assert (tmp_path / "serve.db").exists()  # migrated before the workers started


def test_migrate_creates_the_schema(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    monkeypatch.setenv("PRIVFLOW_DATABASE_URL", url)
    assert main(["migrate"]) == 0
    assert main(["migrate"]) == 0  # idempotent
    tables = set(sqlalchemy.inspect(sqlalchemy.create_engine(url)).get_table_names())
    assert {"keys", "datasets", "grants", "ledger", "releases", "jobs", "idempotency"} <= tables


def _poll_healthz(base_url: str, server: subprocess.Popen[bytes]) -> int | None:
    """Status of the first answered GET /healthz, or None if the server died or timed out."""
    deadline = time.monotonic() + SERVE_TIMEOUT_S
    while time.monotonic() < deadline and server.poll() is None:
        try:
            return httpx.get(f"{base_url}/healthz", timeout=1.0).status_code
        except httpx.TransportError:
            time.sleep(0.1)
    return None


def test_create_key_prints_a_working_key_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from service.store.db import Store
    from service.store.keys import find_active_key

    url = f"sqlite:///{tmp_path / 'k.db'}"
    monkeypatch.setenv("PRIVFLOW_DATABASE_URL", url)
    assert main(["create-key", "--name", "owner", "--role", "admin"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["role"] == "admin" and printed["name"] == "owner"
    store = Store(url)
    with store.transaction() as conn:
        found = find_active_key(conn, printed["key"])
    store.dispose()
    assert found is not None and found.id == printed["id"]
