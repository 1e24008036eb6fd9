"""Datasets and grants: public metadata, the private records blob, analysts' caps.

Records are stored as the bytes of one float64 ``(n, c)`` array (a category as its index in the
column's public category list) and read back only by :func:`load_records`, which the release
path calls after the budget is charged. No other function selects the ``records`` column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, select, update

from service.store.common import decode_cursor, encode_cursor, new_id, now, page
from service.store.tables import datasets, grants, keys

__all__ = [
    "DatasetRecord",
    "GrantRecord",
    "create_dataset",
    "dataset_from_row",
    "get_dataset",
    "get_grant",
    "list_datasets",
    "list_grants",
    "load_records",
    "public_columns",
    "upsert_grant",
]

_PUBLIC = [c for c in datasets.c if c.name != "records"]


@dataclass(frozen=True)
class DatasetRecord:
    """A dataset's public metadata and its ledger sums (never its records)."""

    id: str
    name: str
    columns: list[dict[str, Any]]
    n_records: int
    budget_epsilon: float
    budget_delta: float
    accountant: str
    neighbouring: str
    size_bound: int
    created_by: str
    created_at: datetime
    spent_pure_epsilon: float
    spent_zcdp_rho: float
    spent_delta: float
    release_count: int


@dataclass(frozen=True)
class GrantRecord:
    dataset_id: str
    key_id: str
    epsilon_cap: float | None
    delta_cap: float | None
    spent_epsilon: float
    spent_delta: float
    created_at: datetime


def public_columns() -> list[Any]:
    """Every column of ``datasets`` except the records."""
    return list(_PUBLIC)


def dataset_from_row(row: Any) -> DatasetRecord:
    return DatasetRecord(**{c.name: getattr(row, c.name) for c in _PUBLIC if c.name != "seq"})


def _grant(row: Any) -> GrantRecord:
    return GrantRecord(**{c.name: getattr(row, c.name) for c in grants.c})


def create_dataset(
    conn: Connection,
    *,
    name: str,
    columns: list[dict[str, Any]],
    records: np.ndarray,
    budget_epsilon: float,
    budget_delta: float,
    accountant: str,
    neighbouring: str,
    size_bound: int,
    created_by: str,
) -> DatasetRecord:
    """Insert a dataset whose records are already validated and encoded as float64 (n, c)."""
    values = {
        "id": new_id("ds"),
        "name": name,
        "columns": columns,
        "n_records": int(records.shape[0]),
        "records": np.ascontiguousarray(records, dtype=np.float64).tobytes(),
        "budget_epsilon": budget_epsilon,
        "budget_delta": budget_delta,
        "accountant": accountant,
        "neighbouring": neighbouring,
        "size_bound": size_bound,
        "created_by": created_by,
        "created_at": now(),
        "spent_pure_epsilon": 0.0,
        "spent_zcdp_rho": 0.0,
        "spent_delta": 0.0,
        "release_count": 0,
    }
    conn.execute(datasets.insert().values(**values))
    values.pop("records")
    return DatasetRecord(**values)


def get_dataset(
    conn: Connection, dataset_id: str, *, for_update: bool = False
) -> DatasetRecord | None:
    query = select(*_PUBLIC).where(datasets.c.id == dataset_id)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).first()
    return None if row is None else dataset_from_row(row)


def list_datasets(
    conn: Connection, key_id: str | None, limit: int, cursor: str | None
) -> tuple[list[DatasetRecord], str | None]:
    """Datasets in creation order; with ``key_id`` only those granted to that key."""
    where = []
    if key_id is not None:
        granted = select(grants.c.dataset_id).where(grants.c.key_id == key_id)
        where.append(datasets.c.id.in_(granted))
    result = page(conn, datasets, where, limit, cursor)
    return [dataset_from_row(r) for r in result.rows], result.next_cursor


def load_records(conn: Connection, dataset: DatasetRecord) -> np.ndarray:
    """The private records, float64 (n, c). Call only after the release's charge is committed."""
    blob = conn.execute(select(datasets.c.records).where(datasets.c.id == dataset.id)).scalar_one()
    return np.frombuffer(blob, dtype=np.float64).reshape(dataset.n_records, len(dataset.columns))


def get_grant(
    conn: Connection, dataset_id: str, key_id: str, *, for_update: bool = False
) -> GrantRecord | None:
    query = select(grants).where(grants.c.dataset_id == dataset_id, grants.c.key_id == key_id)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).first()
    return None if row is None else _grant(row)


def list_grants(
    conn: Connection, dataset_id: str, key_id: str | None, limit: int, cursor: str | None
) -> tuple[list[GrantRecord], str | None]:
    """A dataset's grants in the grantee keys' creation order; with ``key_id`` only that key's.

    The cursor is the grantee key's ``seq`` (grants have no sequence of their own).
    """
    query = (
        select(grants, keys.c.seq)
        .join(keys, keys.c.id == grants.c.key_id)
        .where(grants.c.dataset_id == dataset_id, keys.c.seq > decode_cursor(cursor))
    )
    if key_id is not None:
        query = query.where(grants.c.key_id == key_id)
    rows = conn.execute(query.order_by(keys.c.seq).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return [_grant(r) for r in rows], encode_cursor(rows[-1].seq) if more and rows else None


def upsert_grant(
    conn: Connection,
    dataset_id: str,
    key_id: str,
    epsilon_cap: float | None,
    delta_cap: float | None,
) -> GrantRecord:
    """Grant ``key_id`` the dataset, or replace the caps of an existing grant (spent is kept)."""
    existing = get_grant(conn, dataset_id, key_id, for_update=True)
    if existing is None:
        conn.execute(
            grants.insert().values(
                dataset_id=dataset_id,
                key_id=key_id,
                epsilon_cap=epsilon_cap,
                delta_cap=delta_cap,
                spent_epsilon=0.0,
                spent_delta=0.0,
                created_at=now(),
            )
        )
    else:
        conn.execute(
            update(grants)
            .where(grants.c.dataset_id == dataset_id, grants.c.key_id == key_id)
            .values(epsilon_cap=epsilon_cap, delta_cap=delta_cap)
        )
    grant = get_grant(conn, dataset_id, key_id)
    assert grant is not None
    return grant
