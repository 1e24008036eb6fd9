"""The Alembic migrations build exactly the schema of ``service/store/tables.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.store.db import Store
from service.store.tables import metadata

OPTIONS = {"compare_type": True, "compare_server_default": True}


def _differences(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts=OPTIONS)
        return list(compare_metadata(context, metadata))


def _check_migrated(store: Store) -> None:
    store.migrate()
    assert _differences(store) == []
    store.migrate()  # idempotent: a second run changes nothing
    assert _differences(store) == []
    tables = set(sa.inspect(store.engine).get_table_names())
    assert tables == set(metadata.tables) | {"alembic_version"}
    # The comparison is not vacuous: a missing index is reported.
    with store.transaction() as conn:
        conn.execute(sa.text("DROP INDEX ix_ledger_status"))
    diffs = _differences(store)
    assert any(d[0] == "add_index" and d[1].name == "ix_ledger_status" for d in diffs), diffs


def test_sqlite_migrations_match_tables(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'schema.db'}")
    try:
        _check_migrated(store)
    finally:
        store.dispose()


def test_postgres_migrations_match_tables(postgres_url: str) -> None:
    store = Store(postgres_url)
    try:
        _check_migrated(store)
    finally:
        store.dispose()
