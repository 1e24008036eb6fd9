"""The store's connection: engine set-up per backend, transactions and migrations.

SQLite (the default, one host): WAL journal, a busy timeout, foreign keys on, and every
transaction opened with ``BEGIN IMMEDIATE`` so writers serialise at ``BEGIN`` instead of failing
on a lock upgrade half-way. PostgreSQL (several processes or replicas): ``READ COMMITTED`` plus
explicit row locks (``SELECT ... FOR UPDATE``) where a read decides a write (the ledger).
Migrations are Alembic's, run by ``privflow migrate`` and at start-up; on PostgreSQL they hold
an advisory lock so replicas starting together do not race.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

__all__ = ["Store", "normalise_url"]

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 74_201_001  # PostgreSQL advisory lock id for migrations


def normalise_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 (the driver the project installs)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Store:
    """One engine per process; ``transaction()`` yields a connection inside one transaction."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(self.url)
        elif self.dialect == "postgresql":
            # More connections than request threads (40, anyio's default) plus the worker pool
            # and the sweeper, so no request waits on the pool.
            self.engine = create_engine(
                self.url, pool_size=20, max_overflow=40, pool_timeout=60, pool_pre_ping=True
            )
        else:
            raise ValueError(f"unsupported database backend {self.dialect!r}")

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A read-write transaction (SQLite: ``BEGIN IMMEDIATE``, the write lock up front)."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (SQLite: ``BEGIN DEFERRED``; with WAL it never waits for a
        writer). Writing in it is a programming error: on SQLite it may fail with "locked"."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(privflow_read_only=True)
            with conn.begin():
                yield conn

    def ping(self) -> None:
        """Raise unless the database answers a trivial query."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK})
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get("privflow_read_only", False)
        conn.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")

    return engine
