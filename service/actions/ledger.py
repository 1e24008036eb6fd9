"""Ledger reads: a dataset's entries (admins: all; analysts: their own)."""

from __future__ import annotations

from typing import Any

from service.actions.access import check_page, visible_dataset
from service.context import ServiceContext
from service.store.keys import KeyRecord
from service.store.leases import sweep_orphans
from service.store.ledger import LedgerEntry, list_entries

__all__ = ["entry_out", "list_ledger"]


def entry_out(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "release_id": entry.release_id,
        "key_id": entry.key_id,
        "created_at": entry.created_at,
        "utility": entry.utility,
        "method": entry.method,
        "charged": {"epsilon": entry.charged_epsilon, "delta": entry.charged_delta},
        "certificate": entry.certificate,
        "status": entry.status,
    }


def list_ledger(
    ctx: ServiceContext, key: KeyRecord, dataset_id: str, limit: int, cursor: str | None
) -> dict[str, Any]:
    check_page(limit, cursor)
    with ctx.store.transaction() as conn:
        visible_dataset(conn, key, dataset_id)
        sweep_orphans(conn, ctx.settings.lease_seconds)  # show dead runs as aborted at once
        rows, next_cursor = list_entries(
            conn, dataset_id, None if key.role == "admin" else key.id, limit, cursor
        )
    return {"items": [entry_out(e) for e in rows], "next_cursor": next_cursor}
