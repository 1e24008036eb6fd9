"""Stored Sinkhorn memories: their public patterns, blur and inverse temperature, and owner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from service.store.common import new_id, now
from service.store.tables import memories

__all__ = ["MemoryRecord", "create_memory", "get_memory"]


@dataclass(frozen=True)
class MemoryRecord:
    id: str
    key_id: str
    blur: float
    beta: float
    n_patterns: int
    dim: int
    patterns: list[dict[str, Any]]


def create_memory(
    conn: Connection,
    key_id: str,
    patterns: list[dict[str, Any]],
    blur: float,
    beta: float,
    dim: int,
) -> MemoryRecord:
    record = MemoryRecord(new_id("mem"), key_id, blur, beta, len(patterns), dim, patterns)
    conn.execute(
        memories.insert().values(
            id=record.id,
            key_id=key_id,
            blur=blur,
            beta=beta,
            n_patterns=record.n_patterns,
            dim=dim,
            patterns=patterns,
            created_at=now(),
        )
    )
    return record


def get_memory(conn: Connection, memory_id: str) -> MemoryRecord | None:
    row = conn.execute(select(memories).where(memories.c.id == memory_id)).first()
    if row is None:
        return None
    return MemoryRecord(
        row.id, row.key_id, row.blur, row.beta, row.n_patterns, row.dim, row.patterns
    )
