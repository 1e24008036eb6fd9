"""Idempotency records (API.md ``Idempotency-Key``): per API key, the request's hash and the
first response, so a retry returns that response and spends nothing more.

A record is written in the same transaction as the charge it guards; until the work finishes
it holds the release id (``status_code`` null) and a retry waits for the outcome.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from service.store.common import now
from service.store.tables import idempotency

__all__ = ["IdempotencyRecord", "complete", "lookup", "record", "request_hash"]


@dataclass(frozen=True)
class IdempotencyRecord:
    request_hash: str
    status_code: int | None
    response: dict[str, Any] | None
    release_id: str | None


def request_hash(method: str, path: str, body: Any) -> str:
    """Hash of what makes two requests "the same": method, path and canonical JSON body."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def lookup(conn: Connection, key_id: str, idem_key: str) -> IdempotencyRecord | None:
    row = conn.execute(
        select(idempotency).where(
            idempotency.c.key_id == key_id, idempotency.c.idempotency_key == idem_key
        )
    ).first()
    if row is None:
        return None
    return IdempotencyRecord(row.request_hash, row.status_code, row.response, row.release_id)


def record(
    conn: Connection,
    key_id: str,
    idem_key: str,
    digest: str,
    *,
    status_code: int | None = None,
    response: dict[str, Any] | None = None,
    release_id: str | None = None,
) -> None:
    conn.execute(
        idempotency.insert().values(
            key_id=key_id,
            idempotency_key=idem_key,
            request_hash=digest,
            status_code=status_code,
            response=response,
            release_id=release_id,
            created_at=now(),
        )
    )


def complete(
    conn: Connection, key_id: str, idem_key: str, status_code: int, response: dict[str, Any]
) -> None:
    conn.execute(
        update(idempotency)
        .where(idempotency.c.key_id == key_id, idempotency.c.idempotency_key == idem_key)
        .values(status_code=status_code, response=response)
    )
