"""Helpers every store module shares: ids, clocks, cursors and keyset pagination."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, select

__all__ = ["Page", "decode_cursor", "encode_cursor", "iso", "new_id", "now", "page"]

MAX_PAGE = 1000


def now() -> datetime:
    return datetime.now(UTC)


def iso(stamp: datetime) -> str:
    """A UTC timestamp as API.md JSON: ISO 8601 with ``Z`` (what pydantic emits elsewhere)."""
    return stamp.astimezone(UTC).isoformat().replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    """A public id such as ``rel_3kTq...``: 128 random bits, URL-safe."""
    return f"{prefix}_{secrets.token_urlsafe(16)}"


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The ``seq`` after which a page starts; ``ValueError`` for a cursor we did not issue."""
    if cursor is None:
        return 0
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.encode()).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not a cursor") from exc
    if not raw.startswith("s") or not raw[1:].isdigit():
        raise ValueError("not a cursor")
    seq = int(raw[1:])
    if encode_cursor(seq) != cursor:  # the decoder is lenient: accept only what we issue
        raise ValueError("not a cursor")
    return seq


@dataclass(frozen=True)
class Page:
    rows: Sequence[Any]
    next_cursor: str | None


def page(
    conn: Connection,
    table: Table,
    where: Sequence[ColumnElement[bool]],
    limit: int,
    cursor: str | None,
) -> Page:
    """Rows of ``table`` matching ``where`` in insertion order, ``limit`` at a time."""
    after = decode_cursor(cursor)
    rows = conn.execute(
        select(table).where(table.c.seq > after, *where).order_by(table.c.seq).limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1].seq) if more and rows else None)
