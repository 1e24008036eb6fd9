"""Shared bits of the routers: pagination query parameters and problem response docs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from service.errors import PROBLEM_MEDIA_TYPE
from service.store.common import MAX_PAGE

__all__ = ["Cursor", "Limit", "problems"]

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")]
Cursor = Annotated[
    str | None, Query(max_length=200, description="next_cursor of the previous page.")
]

_DESCRIPTIONS = {
    401: "Missing, unknown or revoked API key (unauthenticated)",
    403: "Authenticated but not allowed (forbidden)",
    404: "No such resource (not_found)",
    409: "Budget exceeded: nothing spent, nothing run (budget_exceeded)",
    413: "Request too large (too_large)",
    422: "Invalid request (invalid_request, idempotency_conflict)",
    429: "Queue full; see Retry-After (overloaded)",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting problem+json answers."""
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        status: {
            "description": _DESCRIPTIONS[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}},
        }
        for status in statuses
    }
