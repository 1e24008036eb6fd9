"""Throwaway PostgreSQL clusters for tests that need a real database server.

This module owns the whole life of a disposable cluster: finding the server binaries (on PATH
or under Debian's ``/usr/lib/postgresql/*/bin``), ``initdb`` into a fresh temporary directory,
starting ``postgres`` as a child process on a free loopback TCP port with its unix socket
inside that directory (``fsync=off``, ``max_connections=200``), creating uniquely named
databases and handing out their SQLAlchemy URLs, and finally stopping the server
(``pg_ctl stop -m immediate``), reaping it and deleting the directory.

``initdb``, ``pg_ctl`` and ``postgres`` refuse to run as root. When the tests run as root (CI
containers do), every server command runs as an unprivileged account instead (the Debian
``postgres`` user when it exists, else ``nobody``) through ``runuser -u USER --`` (or
``setpriv`` when runuser is missing), and the temporary directory is chowned to that account.

Test support only: nothing in ``dp_core/`` or ``service/`` imports it. The pytest fixtures that
use it live in ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

# psycopg and SQLAlchemy are imported where used, so that tests/conftest.py (which imports this
# module) loads, and tests not needing PostgreSQL run, in an environment without them.

SUPERUSER = "privflow"
HOST = "127.0.0.1"
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
START_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 120.0
START_ATTEMPTS = 3  # a new free port per attempt: another process may take the probed port


class PostgresStartError(RuntimeError):
    """The cluster could not be created, started or reached."""


@dataclass(frozen=True)
class PostgresBinaries:
    """One directory holding ``initdb``, ``pg_ctl`` and ``postgres`` of the same release."""

    bindir: Path

    @property
    def initdb(self) -> str:
        return str(self.bindir / "initdb")

    @property
    def pg_ctl(self) -> str:
        return str(self.bindir / "pg_ctl")

    @property
    def postgres(self) -> str:
        return str(self.bindir / "postgres")


def _has_server_programs(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in SERVER_PROGRAMS)


def _debian_version_key(bindir: str) -> tuple[int, ...]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin``: the numeric version, newest last."""
    version = Path(bindir).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version))


def find_postgres_binaries() -> PostgresBinaries | None:
    """The first directory holding all server programs: ``initdb``'s directory on PATH, then
    ``/usr/lib/postgresql/*/bin`` newest version first; None when there is none."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
        candidates.append(Path(on_path).parent)
    debian = sorted(glob.glob(DEBIAN_BIN_GLOB), key=_debian_version_key, reverse=True)
    candidates.extend(Path(d) for d in debian)
    for bindir in candidates:
        if _has_server_programs(bindir):
            return PostgresBinaries(bindir)
    return None


def _unprivileged_account() -> pwd.struct_passwd:
    """The account to run the server as when we are root: ``postgres`` if it exists, else
    ``nobody``."""
    for name in ("postgres", "nobody"):
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            continue
        if account.pw_uid != 0:
            return account
    raise PostgresStartError(
        "running as root, and neither a 'postgres' nor a 'nobody' account exists to run "
        "initdb/postgres as (they refuse to run as root)"
    )


def _run_as_prefix(account: pwd.struct_passwd) -> list[str]:
    """Command prefix that runs a program as ``account`` (we are root)."""
    runuser = shutil.which("runuser")
    if runuser is not None:
        return [runuser, "-u", account.pw_name, "--"]
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        return [
            setpriv,
            f"--reuid={account.pw_uid}",
            f"--regid={account.pw_gid}",
            "--clear-groups",
            "--",
        ]
    raise PostgresStartError(
        "running as root, and neither runuser nor setpriv is available to run "
        f"initdb/postgres as {account.pw_name!r} (they refuse to run as root)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _is_postgres_process(pid: int) -> bool:
    """Whether ``pid`` is still a postgres process (a stale pid file may name a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"postgres" in cmdline.split(b"\0", 1)[0]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


class PostgresServer:
    """A throwaway cluster in a temporary directory, reachable on ``127.0.0.1:<port>``.

    Use as a context manager, or call ``start()`` and ``stop()``. The superuser is
    ``privflow`` with trust authentication, so URLs carry no password.
    """

    def __init__(self, binaries: PostgresBinaries) -> None:
        self.binaries = binaries
        self.port: int | None = None
        self._root: Path | None = None
        self._prefix: list[str] = []
        self._process: subprocess.Popen[bytes] | None = None

    # -- paths -----------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        if self._root is None:
            raise PostgresStartError("the server is not started")
        return self._root

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Create the cluster, start the server and wait until it accepts connections."""
        if self._root is not None:
            raise PostgresStartError("the server is already started")
        self._root = Path(tempfile.mkdtemp(prefix="privflow-pg-"))
        try:
            self.socket_dir.mkdir()
            if os.geteuid() == 0:
                account = _unprivileged_account()
                self._prefix = _run_as_prefix(account)
                for path in (self.root, self.socket_dir):
                    os.chown(path, account.pw_uid, account.pw_gid)
            self._initdb()
            self._start_server()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m immediate``), reap it and delete its directory;
        safe to call twice."""
        if self._root is None:
            return
        try:
            if self._process is not None:
                try:
                    self._pg_ctl_stop()
                finally:
                    self._reap()
        finally:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
            self.port = None

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- databases -------------------------------------------------------------------------

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of database ``dbname`` on this server."""
        if self.port is None:
            raise PostgresStartError("the server is not started")
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/{dbname}"

    def create_database(self) -> str:
        """Create a fresh, uniquely named database and return its SQLAlchemy URL."""
        from psycopg import sql

        dbname = f"privflow_test_{secrets.token_hex(8)}"
        with self._admin_connection() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return self.url(dbname)

    def drop_database(self, url: str) -> None:
        """Drop the database named in ``url``, closing any connections still open to it."""
        from psycopg import sql
        from sqlalchemy.engine import make_url

        dbname = make_url(url).database
        if not dbname:
            raise ValueError(f"no database name in {url!r}")
        with self._admin_connection() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )

    # -- internals -------------------------------------------------------------------------

    def _admin_connection(self, connect_timeout: int = 10) -> psycopg.Connection:
        import psycopg

        if self.port is None:
            raise PostgresStartError("the server is not started")
        return psycopg.connect(
            host=HOST,
            port=self.port,
            user=SUPERUSER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=connect_timeout,
        )

    def _run(self, args: list[str], what: str) -> None:
        """Run a server program (as the unprivileged account when root); raise on failure."""
        try:
            done = subprocess.run(
                [*self._prefix, *args],
                cwd=self.root,  # readable by the account, unlike the caller's cwd maybe
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise PostgresStartError(f"{what} timed out after {COMMAND_TIMEOUT_S:.0f} s") from error
        if done.returncode != 0:
            raise PostgresStartError(
                f"{what} failed (exit {done.returncode}): {shlex.join(args)}\n"
                f"{done.stdout}{done.stderr}\nserver log tail:\n{_tail(self.log_file)}"
            )

    def _initdb(self) -> None:
        self._run(
            [
                self.binaries.initdb,
                "-D",
                str(self.data_dir),
                "-A",
                "trust",
                "-U",
                SUPERUSER,
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",  # CI images often have no generated locales
            ],
            "initdb",
        )

    def _start_server(self) -> None:
        """Start ``postgres`` as our own child process (so we reap it: no zombie is left for
        PID 1 to collect), on a fresh free port per attempt."""
        for attempt in range(1, START_ATTEMPTS + 1):
            self.port = _free_port()
            command = [
                self.binaries.postgres,
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={HOST}",
                "-c",
                f"unix_socket_directories={self.socket_dir}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ]
            with self.log_file.open("ab") as log:
                self._process = subprocess.Popen(
                    [*self._prefix, *command],
                    cwd=self.root,  # readable by the account, unlike the caller's cwd maybe
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_until_accepting():
                return
            self._reap()
            log_tail = _tail(self.log_file)
            if "could not bind" in log_tail and attempt < START_ATTEMPTS:
                continue  # another process took the probed port
            raise PostgresStartError(
                f"postgres exited during start-up: {shlex.join(command)}\n"
                f"server log tail:\n{log_tail}"
            )

    def _wait_until_accepting(self) -> bool:
        """True once the server accepts connections; False when it exited first."""
        import psycopg

        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._process.poll() is not None:
                return False
            try:
                with self._admin_connection(connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return True
            except psycopg.OperationalError as error:
                if time.monotonic() >= deadline:
                    raise PostgresStartError(
                        f"server on {HOST}:{self.port} not accepting connections after "
                        f"{START_TIMEOUT_S:.0f} s: {error}\n"
                        f"server log tail:\n{_tail(self.log_file)}"
                    ) from error
                time.sleep(0.05)

    def _reap(self) -> None:
        """Wait for the started process (runuser, or postgres itself) to exit."""
        if self._process is None:
            return
        try:
            self._process.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pid = self._postmaster_pid()  # under runuser, killing our child spares postgres
            if pid is not None and _is_postgres_process(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self._process.kill()
            self._process.wait()
        self._process = None

    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            return int(first)
        except (OSError, IndexError, ValueError):
            return None

    def _pg_ctl_stop(self) -> None:
        """``pg_ctl stop -m immediate``; SIGKILL the postmaster this server started if that
        fails, so no server outlives the tests. Nothing to do when no server is running."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        try:
            self._run(
                [self.binaries.pg_ctl, "stop", "-D", str(self.data_dir), "-m", "immediate", "-w"],
                "pg_ctl stop",
            )
        except PostgresStartError:
            if not _is_postgres_process(pid):
                raise
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
