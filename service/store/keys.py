"""API keys: random secrets shown once and stored only as a SHA-256 hash (API.md "Auth").

Keys carry 256 random bits, so an unsalted SHA-256 is a sufficient one-way map (no dictionary
to attack). The bootstrap admin key from the settings is registered under a fixed id the first
time any process starts with it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from service.store.common import Page, new_id, now, page
from service.store.tables import keys

__all__ = [
    "BOOTSTRAP_ADMIN_ID",
    "KeyRecord",
    "create_key",
    "ensure_bootstrap_admin",
    "find_active_key",
    "get_key",
    "hash_key",
    "list_keys",
    "revoke_key",
]

BOOTSTRAP_ADMIN_ID = "key_admin"


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _record(row: object) -> KeyRecord:
    return KeyRecord(row.id, row.name, row.role, row.created_at, row.revoked_at)  # type: ignore[attr-defined]


def create_key(conn: Connection, name: str, role: str) -> tuple[KeyRecord, str]:
    """Insert a new key; returns its record and the secret (never stored)."""
    secret = "pf_" + secrets.token_urlsafe(32)
    key_id = new_id("key")
    conn.execute(
        keys.insert().values(
            id=key_id, name=name, role=role, key_hash=hash_key(secret), created_at=now()
        )
    )
    return KeyRecord(key_id, name, role, now(), None), secret


def ensure_bootstrap_admin(conn: Connection, secret: str) -> None:
    """Register the settings' admin key (idempotent; safe when replicas start together)."""
    digest = hash_key(secret)
    existing = conn.execute(select(keys.c.id).where(keys.c.key_hash == digest)).first()
    if existing is not None:
        return
    try:
        with conn.begin_nested():
            conn.execute(
                keys.insert().values(
                    id=new_id("key") if _bootstrap_taken(conn) else BOOTSTRAP_ADMIN_ID,
                    name="bootstrap admin (PRIVFLOW_ADMIN_KEY)",
                    role="admin",
                    key_hash=digest,
                    created_at=now(),
                )
            )
    except IntegrityError:
        pass  # another process registered it first


def _bootstrap_taken(conn: Connection) -> bool:
    return (
        conn.execute(select(keys.c.id).where(keys.c.id == BOOTSTRAP_ADMIN_ID)).first() is not None
    )


def find_active_key(conn: Connection, secret: str) -> KeyRecord | None:
    """The unrevoked key whose hash matches ``secret``."""
    row = conn.execute(
        select(keys).where(keys.c.key_hash == hash_key(secret), keys.c.revoked_at.is_(None))
    ).first()
    return None if row is None else _record(row)


def get_key(conn: Connection, key_id: str) -> KeyRecord | None:
    row = conn.execute(select(keys).where(keys.c.id == key_id)).first()
    return None if row is None else _record(row)


def list_keys(
    conn: Connection, limit: int, cursor: str | None
) -> tuple[list[KeyRecord], str | None]:
    result: Page = page(conn, keys, [], limit, cursor)
    return [_record(r) for r in result.rows], result.next_cursor


def revoke_key(conn: Connection, key_id: str) -> bool:
    """Revoke at once; False when no such key. Revoking twice is not an error."""
    if get_key(conn, key_id) is None:
        return False
    conn.execute(
        update(keys)
        .where(keys.c.id == key_id, keys.c.revoked_at.is_(None))
        .values(revoked_at=now())
    )
    return True
