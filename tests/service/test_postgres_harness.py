"""The PostgreSQL test harness: a real server is reachable, and each database is separate."""

from __future__ import annotations

import sqlalchemy as sa

from tests.postgres_server import PostgresServer


def test_postgres_url_reaches_a_real_server(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            version = conn.execute(sa.text("select version()")).scalar_one()
    finally:
        engine.dispose()
    assert version.startswith("PostgreSQL")


def test_created_databases_are_distinct(postgres_server: PostgresServer) -> None:
    first_url = postgres_server.create_database()
    second_url = postgres_server.create_database()
    assert first_url != second_url
    first = sa.create_engine(first_url)
    second = sa.create_engine(second_url)
    try:
        with first.begin() as conn:
            conn.execute(sa.text("create table marker (id integer primary key)"))
        assert sa.inspect(first).has_table("marker")
        assert not sa.inspect(second).has_table("marker")
    finally:
        first.dispose()
        second.dispose()
        postgres_server.drop_database(first_url)
        postgres_server.drop_database(second_url)
