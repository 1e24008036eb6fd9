"""``/v1/flows/*``: particle flows on caller-supplied point clouds (no budget; seeds allowed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.actions import flows as actions
from service.actions.outcome import Started
from service.actions.work import wait_for_answer
from service.api._common import answer, problems
from service.context import ServiceContext
from service.deps import ApiKey, Ctx, IdempotencyKey
from service.schemas.flows import DrMMDRequest, MMDRequest
from service.schemas.releases import JobAccepted
from service.store.idempotency import request_hash
from service.store.keys import KeyRecord

__all__ = ["router", "run_work"]

router = APIRouter(prefix="/v1/flows", tags=["flows"], responses=problems(401, 413, 422, 429))

REPLAY_WAIT_SECONDS = 600.0
_ACCEPTED = {202: {"model": JobAccepted, "description": 'Accepted as a job ("async": true)'}}

Starter = Callable[[ServiceContext, KeyRecord, Any, str | None, str], Started]


async def run_work(
    start: Starter,
    path: str,
    body: BaseModel,
    ctx: ServiceContext,
    key: KeyRecord,
    idempotency_key: str | None,
) -> JSONResponse:
    """Start public work from a validated body and answer with its outcome (or 202)."""
    digest = request_hash("POST", path, body.model_dump(mode="json", by_alias=True))
    started = await run_in_threadpool(start, ctx, key, body, idempotency_key, digest)
    if started.replay:
        assert idempotency_key is not None
        started = Started(
            outcome=await run_in_threadpool(
                wait_for_answer, ctx, key, idempotency_key, REPLAY_WAIT_SECONDS
            )
        )
    return await answer(started)


@router.post("/mmd", responses=_ACCEPTED, summary="MMD gradient flow with noise injection")
async def mmd(
    body: MMDRequest, ctx: Ctx, key: ApiKey, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    return await run_work(actions.start_mmd, "/v1/flows/mmd", body, ctx, key, idempotency_key)


@router.post("/drmmd", responses=_ACCEPTED, summary="De-regularised MMD flow")
async def drmmd(
    body: DrMMDRequest, ctx: Ctx, key: ApiKey, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    return await run_work(actions.start_drmmd, "/v1/flows/drmmd", body, ctx, key, idempotency_key)
