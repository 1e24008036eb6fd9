"""Stored generators: fitted state over public points, fit report, provenance, owner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select

from service.store.common import new_id, now, page
from service.store.tables import generators

__all__ = [
    "GeneratorRecord",
    "create_generator",
    "delete_generator",
    "get_generator",
    "list_generators",
]


@dataclass(frozen=True)
class GeneratorRecord:
    id: str
    key_id: str
    n_points: int
    dim: int
    epsilon: float
    method: str
    source: str
    fit: dict[str, Any]
    provenance: dict[str, Any]
    state: dict[str, Any]
    created_at: datetime


def _record(row: Any) -> GeneratorRecord:
    return GeneratorRecord(
        **{name: getattr(row, name) for name in GeneratorRecord.__dataclass_fields__}
    )


def create_generator(conn: Connection, key_id: str, **values: Any) -> GeneratorRecord:
    record = GeneratorRecord(id=new_id("gen"), key_id=key_id, created_at=now(), **values)
    conn.execute(generators.insert().values(**record.__dict__))
    return record


def get_generator(conn: Connection, generator_id: str) -> GeneratorRecord | None:
    row = conn.execute(select(generators).where(generators.c.id == generator_id)).first()
    return None if row is None else _record(row)


def list_generators(
    conn: Connection, key_id: str | None, limit: int, cursor: str | None
) -> tuple[list[GeneratorRecord], str | None]:
    where = [] if key_id is None else [generators.c.key_id == key_id]
    result = page(conn, generators, where, limit, cursor)
    return [_record(r) for r in result.rows], result.next_cursor


def delete_generator(conn: Connection, generator_id: str) -> None:
    conn.execute(delete(generators).where(generators.c.id == generator_id))
