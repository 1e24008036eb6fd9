"""Key actions (admin only): create, list, revoke."""

from __future__ import annotations

from typing import Any

from service.actions.access import check_page
from service.context import ServiceContext
from service.errors import ApiError
from service.schemas.keys import KeyCreate
from service.store import keys as store

__all__ = ["create_key", "key_out", "list_keys", "revoke_key"]


def key_out(key: store.KeyRecord) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "role": key.role,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }


def create_key(ctx: ServiceContext, body: KeyCreate) -> dict[str, Any]:
    with ctx.store.transaction() as conn:
        key, secret = store.create_key(conn, body.name, body.role)
    return {"id": key.id, "name": key.name, "role": key.role, "key": secret}


def list_keys(ctx: ServiceContext, limit: int, cursor: str | None) -> dict[str, Any]:
    check_page(limit, cursor)
    with ctx.store.read() as conn:
        rows, next_cursor = store.list_keys(conn, limit, cursor)
    return {"items": [key_out(k) for k in rows], "next_cursor": next_cursor}


def revoke_key(ctx: ServiceContext, key_id: str) -> None:
    with ctx.store.transaction() as conn:
        if not store.revoke_key(conn, key_id):
            raise ApiError(404, "not_found", f"No key with id {key_id!r}.")
