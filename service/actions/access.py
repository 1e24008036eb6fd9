"""Who may see what: dataset visibility by role and grant, pagination arguments."""

from __future__ import annotations

from sqlalchemy import Connection

from service.errors import ApiError
from service.store.common import MAX_PAGE, decode_cursor
from service.store.datasets import DatasetRecord, get_dataset, get_grant
from service.store.keys import KeyRecord

__all__ = ["MAX_PAGE", "KeyRecord", "check_page", "visible_dataset"]
"""``MAX_PAGE`` and ``KeyRecord`` are re-exported for the routers, which never import the
store (tests/test_layout.py)."""


def visible_dataset(conn: Connection, key: KeyRecord, dataset_id: str) -> DatasetRecord:
    """The dataset if ``key`` may use it: admins always, analysts with a grant (else 403)."""
    dataset = get_dataset(conn, dataset_id)
    if dataset is None:
        raise ApiError(404, "not_found", f"No dataset with id {dataset_id!r}.")
    if key.role != "admin" and get_grant(conn, dataset_id, key.id) is None:
        raise ApiError(403, "forbidden", "This key has no grant on the dataset.")
    return dataset


def check_page(limit: int, cursor: str | None) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError.invalid("limit", f"must be an integer in [1, {MAX_PAGE}]")
    try:
        decode_cursor(cursor)
    except ValueError:
        raise ApiError.invalid("cursor", "is not a cursor this service issued") from None
