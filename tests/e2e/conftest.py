"""Fixtures for end-to-end tests against real ``privflow serve`` processes.

- ``serve``: start a server for one test (stopped and reaped at its teardown), e.g. to kill it.
- ``database_url``: a fresh store for one test, an SQLite file or a PostgreSQL database.
- ``sqlite_server`` and ``postgres_servers``: long-lived servers shared by the whole session, one
  process on an SQLite file and two processes sharing one PostgreSQL database. Tests using them
  make their own datasets and keys, so they do not see each other. Each process has served one
  release before it is handed out (the first release of a process imports the accounting
  libraries, seconds that would otherwise land in the middle of a measured burst). Their
  per-key share (``max_jobs_per_key``) is the whole job queue: the bursts send one key's 40
  releases at once to test the ledger, not the share (tests/service/test_work_limits.py does).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.api import EXACT_RELEASE, warm_up
from tests.e2e.server import Serve, ServerProcess, ServerSet
from tests.postgres_server import PostgresServer
from tests.service.conftest import ADMIN_KEY

SHARED_SETTINGS = {"max_jobs_per_key": 64}
"""Settings of the session's shared servers (module docstring)."""


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'privflow.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """A fresh store: an SQLite file, or a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return sqlite_url
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """``serve(database_url, name="server", warm=False, **settings)``: a started, ready server.

    Every process started through it is stopped and reaped at teardown, whatever the test did;
    its log is ``tmp_path / f"{name}.log"`` (appended to when a name is started again).
    """
    with ServerSet(tmp_path, ADMIN_KEY) as servers:
        yield servers.start


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server process on an SQLite file, shared by the session."""
    root = tmp_path_factory.mktemp("sqlite-server")
    with ServerSet(root, ADMIN_KEY) as servers:
        server = servers.start(
            f"sqlite:///{root / 'privflow.db'}", name="sqlite", **SHARED_SETTINGS
        )
        warm_up(server, EXACT_RELEASE)
        yield server


@pytest.fixture(scope="session")
def postgres_servers(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
) -> Iterator[list[ServerProcess]]:
    """Two server processes sharing one PostgreSQL database, shared by the session."""
    root = tmp_path_factory.mktemp("postgres-servers")
    url = postgres_server.create_database()
    try:
        with ServerSet(root, ADMIN_KEY) as servers:
            started = [servers.start(url, name=f"postgres{i}", **SHARED_SETTINGS) for i in range(2)]
            for server in started:
                warm_up(server, EXACT_RELEASE)
            yield started
    finally:
        postgres_server.drop_database(url)
