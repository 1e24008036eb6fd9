"""Shared bits of the routers: pagination query parameters and problem response docs."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from service.actions.outcome import Started
from service.errors import PROBLEM_MEDIA_TYPE
from service.store.common import MAX_PAGE

__all__ = ["Cursor", "Limit", "answer", "problems"]

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


async def answer(started: Started) -> JSONResponse:
    """The HTTP response for an action's outcome, awaiting its work when it is still running."""
    outcome = started.outcome
    if outcome is None:
        assert started.future is not None
        outcome = await asyncio.wrap_future(started.future)
    return JSONResponse(
        jsonable_encoder(outcome.body),
        status_code=outcome.status,
        media_type=PROBLEM_MEDIA_TYPE if outcome.status >= 400 else None,
        headers=outcome.headers,
    )
