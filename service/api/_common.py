"""Shared bits of the routers: pagination query parameters and problem response docs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Query
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.actions.access import MAX_PAGE, KeyRecord
from service.actions.outcome import Started
from service.actions.work import request_digest, wait_for_answer
from service.context import ServiceContext
from service.errors import PROBLEM_MEDIA_TYPE

__all__ = ["Cursor", "Limit", "answer", "problems", "run_work"]

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")]
Cursor = Annotated[
    str | None, Query(max_length=200, description="next_cursor of the previous page.")
]

_DESCRIPTIONS = {
    401: "Missing, unknown or revoked API key (unauthenticated)",
    403: "Authenticated but not allowed (forbidden)",
    404: "No such resource (not_found)",
    409: "Budget exceeded: nothing spent, nothing run (budget_exceeded)",
    413: "Request too large (too_large) or its public work estimate too high (too_expensive)",
    422: "Invalid request (invalid_request, idempotency_conflict)",
    429: "Queue full or the key's share of it taken; see Retry-After (overloaded)",
    504: "Stopped at the service's deadline (deadline); a release's charge stands",
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


REPLAY_WAIT_SECONDS = 600.0

Starter = Callable[[ServiceContext, KeyRecord, Any, str | None, str], Started]
"""An action that starts work: ``(ctx, key, body, idempotency_key, request_digest)``."""


async def run_work(
    start: Starter,
    path: str,
    body: BaseModel,
    ctx: ServiceContext,
    key: KeyRecord,
    idempotency_key: str | None,
) -> JSONResponse:
    """Start work from a validated body and answer with its outcome (or 202). A retry whose
    first request is still running waits for that request's answer."""
    digest = request_digest(path, body.model_dump(mode="json", by_alias=True, exclude_none=True))
    started = await run_in_threadpool(start, ctx, key, body, idempotency_key, digest)
    if started.replay:
        assert idempotency_key is not None
        started = Started(
            outcome=await run_in_threadpool(
                wait_for_answer, ctx, key, idempotency_key, REPLAY_WAIT_SECONDS
            )
        )
    return await answer(started)
