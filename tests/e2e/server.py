"""Real ``privflow serve`` processes for end-to-end tests.

:class:`ServerProcess` starts ``python -m service.cli serve`` on a free loopback port, with the
store at ``database_url`` (SQLite file or PostgreSQL), the given bootstrap admin key (or none),
kernel warm-up off unless asked for, its stdout and stderr going to a log file. Used as a context
manager it waits until ``GET /readyz`` answers 200 and, on exit, stops the process (SIGTERM,
then SIGKILL) and reaps it, so no server outlives its test. :meth:`ServerProcess.kill` is the
fault injection: ``kill -9`` and reap (a zombie would still look alive to the lease sweep).

Only the environment built here reaches the server: every ``PRIVFLOW_*`` variable of the test
run's own environment is dropped first.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

__all__ = ["REPO_ROOT", "Serve", "ServerProcess", "ServerSet", "ServerStartError", "free_port"]

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
READY_TIMEOUT_S = 120.0
"""A server is ready once migrated, with or without warm-up (kernels compile in the background):
a few seconds, longer on a busy 2-core machine."""
WARM_READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
START_ATTEMPTS = 3  # a new port each time: another process may take the probed one


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class ServerStartError(RuntimeError):
    """The server exited, or did not become ready, before the deadline."""


class ServerProcess:
    """One ``privflow serve`` process; see the module docstring.

    Parameters
    ----------
    database_url
        ``PRIVFLOW_DATABASE_URL`` of the process; several processes may share one.
    log_path
        File receiving the process's stdout and stderr (appended to across restarts).
    admin_key
        ``PRIVFLOW_ADMIN_KEY``, the bootstrap admin key; None leaves it unset (the server then
        creates one in an empty store).
    warm
        ``PRIVFLOW_WARM_ON_STARTUP``: with True the kernels compile in the background.
    env
        Further ``PRIVFLOW_*`` settings.
    """

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *,
        admin_key: str | None,
        warm: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.log_path = log_path
        self.warm = warm
        self.env = {
            "PRIVFLOW_DATABASE_URL": database_url,
            "PRIVFLOW_WARM_ON_STARTUP": "true" if warm else "false",
            **({} if admin_key is None else {"PRIVFLOW_ADMIN_KEY": admin_key}),
            **(env or {}),
        }
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.readyz_answers: list[tuple[int, Any]] = []
        """(status, JSON body) of every ``/readyz`` answer seen while waiting, oldest first."""

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server is not started")
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the server is not started")
        return self.process.pid

    def client(self, timeout: float = 60.0) -> httpx.Client:
        """A sync client for this server (the caller closes it)."""
        return httpx.Client(base_url=self.base_url, timeout=timeout)

    def start(self, ready_timeout: float | None = None) -> ServerProcess:
        """Start the process and wait until ``/readyz`` is 200; retries on a taken port."""
        if ready_timeout is None:
            ready_timeout = WARM_READY_TIMEOUT_S if self.warm else READY_TIMEOUT_S
        for attempt in range(1, START_ATTEMPTS + 1):
            self._spawn()
            try:
                self.wait_ready(ready_timeout)
                return self
            except ServerStartError:
                exited = self.process is not None and self.process.poll() is not None
                self.stop()
                if not (exited and attempt < START_ATTEMPTS and self._port_was_taken()):
                    raise
            except BaseException:  # interrupted: never leave the process behind
                self.stop()
                raise
        raise AssertionError("unreachable")

    def wait_ready(self, timeout: float) -> None:
        """Poll ``GET /readyz`` until it answers 200; raise if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise ServerStartError(f"privflow serve exited early\n{self.log_tail()}")
            try:
                answer = httpx.get(f"{self.base_url}/readyz", timeout=2.0)
            except httpx.TransportError:
                pass
            else:
                self.readyz_answers.append((answer.status_code, answer.json()))
                if answer.status_code == 200:
                    return
            time.sleep(0.1)
        raise ServerStartError(f"privflow serve not ready after {timeout:.0f} s\n{self.log_tail()}")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a grace period; reap. Returns the exit status."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def kill(self) -> None:
        """``kill -9`` the server and reap it (the fault the ledger must survive)."""
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGKILL)  # a no-op once the process is reaped
        process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn(self) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVFLOW_")}
        env.update(self.env)
        command = [sys.executable, "-m", "service.cli", "serve"]
        command += ["--host", HOST, "--port", str(self.port)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- privflow serve on port {self.port}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def _port_was_taken(self) -> bool:
        return "address already in use" in self.log_tail(10).lower()


class ServerSet:
    """Servers started for one test (or module), all stopped and reaped by :meth:`close`.

    ``start(database_url, name, warm=False, **settings)`` starts ``privflow serve`` with the
    extra settings ``PRIVFLOW_<NAME>=value`` and its log at ``log_dir / f"{name}.log"``.
    """

    def __init__(self, log_dir: Path, admin_key: str) -> None:
        self.log_dir = log_dir
        self.admin_key = admin_key
        self.started: list[ServerProcess] = []

    def start(
        self, database_url: str, name: str = "server", warm: bool = False, **settings: object
    ) -> ServerProcess:
        server = ServerProcess(
            database_url,
            self.log_dir / f"{name}.log",
            admin_key=self.admin_key,
            warm=warm,
            env={f"PRIVFLOW_{key.upper()}": str(value) for key, value in settings.items()},
        )
        self.started.append(server)
        return server.start()

    def close(self) -> None:
        for server in self.started:
            server.stop()

    def __enter__(self) -> ServerSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


Serve = Callable[..., ServerProcess]
"""The type of :meth:`ServerSet.start` (the ``serve`` fixture)."""
