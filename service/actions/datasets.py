"""Dataset actions: validate and encode records, create, read, list, grant, list grants."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.actions.access import check_page, visible_dataset
from service.context import ServiceContext
from service.errors import ApiError, FieldError
from service.schemas.datasets import CategoryColumn, DatasetCreate, GrantCreate
from service.store import datasets as store
from service.store.keys import KeyRecord, get_key
from service.store.ledger import budget_view

__all__ = [
    "create_dataset",
    "dataset_out",
    "get_dataset",
    "grant",
    "grant_out",
    "list_datasets",
    "list_grants",
]

MAX_REPORTED_ERRORS = 20
CONVERT_CHUNK = 65_536
"""Cells converted to float64 per step: a million at once is one GIL-holding C loop."""
MAX_EXACT_CELL = 10**300
"""Integers above this are refused as cells (no column bound reaches it; float() overflows)."""


def _number(value: Any) -> float:
    """A JSON number cell as a float; NaN (refused by the bounds check) for anything else: a
    string, a boolean, null, a nested list or object, or an integer beyond the float range."""
    if type(value) is float:
        return value
    if type(value) is int and abs(value) <= MAX_EXACT_CELL:
        return float(value)
    return math.nan


def _shown(value: Any) -> str:
    """A cell for an error message, cut to 80 characters (a cell may be a nested list)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def encode_records(body: DatasetCreate, max_points: int) -> np.ndarray:
    """Records as float64 (n, c), categories as indices; 422 naming row and column otherwise.

    Naming the offending row and value is allowed: the admin sending the records owns them.
    """
    n, c = len(body.records), len(body.columns)
    if n > max_points:
        raise ApiError(413, "too_large", f"At most {max_points} records per request.")
    if n > body.size_bound:
        raise ApiError.invalid("records", f"{n} records exceed size_bound {body.size_bound}")
    errors: list[FieldError] = []
    for i, row in enumerate(body.records):
        if type(row) is not list or len(row) != c:
            errors.append({"field": f"records[{i}]", "message": f"expected a list of {c} values"})
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
    if errors:
        raise ApiError(422, "invalid_request", "Records do not match the columns.", errors=errors)
    out = np.empty((n, c), dtype=np.float64)
    for j, column in enumerate(body.columns):
        values = [row[j] for row in body.records]
        if isinstance(column, CategoryColumn):
            index = {name: k for k, name in enumerate(column.categories)}
            codes = [index.get(v, -1) if type(v) is str else -1 for v in values]
            for start in range(0, n, CONVERT_CHUNK):
                out[start : start + CONVERT_CHUNK, j] = codes[start : start + CONVERT_CHUNK]
            bad = np.flatnonzero(out[:, j] < 0)
            message = f"is not one of the categories of column {column.name!r}"
        else:
            numeric = [_number(v) for v in values]
            for start in range(0, n, CONVERT_CHUNK):  # one C loop per slice: the GIL between
                out[start : start + CONVERT_CHUNK, j] = numeric[start : start + CONVERT_CHUNK]
            col = out[:, j]
            bad = np.flatnonzero(~((col >= column.lower) & (col <= column.upper)))
            message = f"must be a number in [{column.lower}, {column.upper}] ({column.name!r})"
        errors.extend(
            {"field": f"records[{i}][{j}]", "message": f"{_shown(values[i])} {message}"}
            for i in bad[: MAX_REPORTED_ERRORS - len(errors)]
        )
        if len(errors) >= MAX_REPORTED_ERRORS:
            break
    if errors:
        raise ApiError(422, "invalid_request", "Some records are invalid.", errors=errors)
    return out


def dataset_out(dataset: store.DatasetRecord, key: KeyRecord) -> dict[str, Any]:
    """A dataset's metadata as ``key`` may see it.

    ``n_records`` goes to admin keys (the data owners) only: under ``add_remove`` neighbouring
    the record count is exactly what DP protects, so an analyst sees the public ``size_bound``
    and the key is absent from its answer (privacy rule 3).
    """
    out: dict[str, Any] = {
        "id": dataset.id,
        "name": dataset.name,
        "columns": dataset.columns,
        "budget": budget_view(dataset),
        "neighbouring": dataset.neighbouring,
        "size_bound": dataset.size_bound,
        "accountant": dataset.accountant,
        "created_at": dataset.created_at,
    }
    if key.role == "admin":
        out["n_records"] = dataset.n_records
    return out


def create_dataset(ctx: ServiceContext, admin: KeyRecord, body: DatasetCreate) -> dict[str, Any]:
    records = encode_records(body, ctx.settings.max_points)
    with ctx.store.transaction() as conn:
        dataset = store.create_dataset(
            conn,
            name=body.name,
            columns=[c.model_dump() for c in body.columns],
            records=records,
            budget_epsilon=body.budget.epsilon,
            budget_delta=body.budget.delta,
            accountant=body.accountant,
            neighbouring=body.neighbouring,
            size_bound=body.size_bound,
            created_by=admin.id,
        )
    return dataset_out(dataset, admin)


def get_dataset(ctx: ServiceContext, key: KeyRecord, dataset_id: str) -> dict[str, Any]:
    with ctx.store.read() as conn:
        return dataset_out(visible_dataset(conn, key, dataset_id), key)


def list_datasets(
    ctx: ServiceContext, key: KeyRecord, limit: int, cursor: str | None
) -> dict[str, Any]:
    check_page(limit, cursor)
    with ctx.store.read() as conn:
        rows, next_cursor = store.list_datasets(
            conn, None if key.role == "admin" else key.id, limit, cursor
        )
    return {"items": [dataset_out(d, key) for d in rows], "next_cursor": next_cursor}


def grant_out(grant: store.GrantRecord) -> dict[str, Any]:
    return {
        "dataset_id": grant.dataset_id,
        "key_id": grant.key_id,
        "epsilon_cap": grant.epsilon_cap,
        "delta_cap": grant.delta_cap,
        "spent": {"epsilon": grant.spent_epsilon, "delta": grant.spent_delta},
        "created_at": grant.created_at,
    }


def grant(ctx: ServiceContext, dataset_id: str, body: GrantCreate) -> dict[str, Any]:
    with ctx.store.transaction() as conn:
        if store.get_dataset(conn, dataset_id, for_update=True) is None:
            raise ApiError(404, "not_found", f"No dataset with id {dataset_id!r}.")
        target = get_key(conn, body.key_id)
        if target is None or target.revoked_at is not None:
            raise ApiError.invalid("key_id", "no active key with this id")
        return grant_out(
            store.upsert_grant(conn, dataset_id, body.key_id, body.epsilon_cap, body.delta_cap)
        )


def list_grants(
    ctx: ServiceContext, key: KeyRecord, dataset_id: str, limit: int, cursor: str | None
) -> dict[str, Any]:
    """The dataset's grants with caps and spend: admins all, an analyst only its own."""
    check_page(limit, cursor)
    with ctx.store.transaction() as conn:
        visible_dataset(conn, key, dataset_id)
        rows, next_cursor = store.list_grants(
            conn, dataset_id, None if key.role == "admin" else key.id, limit, cursor
        )
    return {"items": [grant_out(g) for g in rows], "next_cursor": next_cursor}
