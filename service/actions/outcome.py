"""What an action hands back to its router: a finished answer, or work still running."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

__all__ = ["Outcome", "Started"]


@dataclass(frozen=True)
class Outcome:
    """A finished HTTP answer: status and JSON body (problem+json when status >= 400)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class Started:
    """An answer now (``outcome``), work to await (``future``), or a replay to wait for (the
    first request with the same Idempotency-Key is still running)."""

    outcome: Outcome | None = None
    future: Future[Outcome] | None = None
    replay: bool = False
