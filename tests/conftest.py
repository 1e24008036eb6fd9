"""Suite-wide fixtures: a throwaway PostgreSQL server and a fresh database per test; a check that
the system packages the selected tests need are installed (``tests/system_deps.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres_server import PostgresServer, find_postgres_binaries
from tests.system_deps import missing_packages


def pytest_collection_finish(session: pytest.Session) -> None:
    """Stop with one line when a selected test needs a system package that is missing."""
    missing = missing_packages(session.items)
    if missing:
        packages = " ".join(missing)
        raise pytest.UsageError(
            f"missing system packages for the selected tests: {packages}. Install them "
            f"(sudo apt-get install --no-install-recommends {packages}) or run .ci/run, "
            "which does."
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL cluster for the session, stopped and deleted at its end.

    Fails when no PostgreSQL server binaries are installed (``.ci/run`` installs them).
    """
    binaries = find_postgres_binaries()
    if binaries is None:
        message = (
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or under "
            "/usr/lib/postgresql/*/bin. Install PostgreSQL (.ci/run does: apt-get install "
            "postgresql)."
        )
        pytest.fail(message, pytrace=False)
    with PostgresServer(binaries) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database, dropped after the test."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)
