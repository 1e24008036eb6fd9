"""``/v1/memories``: store Sinkhorn associative memories and retrieve from queries."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.actions import memories as actions
from service.api._body import JsonBodyRoute
from service.api._common import problems
from service.api.flows import run_work
from service.deps import ApiKey, Ctx, IdempotencyKey
from service.schemas.flows import MemoryCreate, MemoryCreated, MemoryRetrieve
from service.schemas.releases import JobAccepted

__all__ = ["router"]

router = APIRouter(
    route_class=JsonBodyRoute,
    prefix="/v1/memories",
    tags=["memories"],
    responses=problems(401, 413, 422),
)


@router.post(
    "",
    status_code=201,
    response_model=MemoryCreated,
    responses=problems(429, 504),
    summary="Store patterns (weighted point clouds) as a Sinkhorn associative memory",
)
async def create_memory(
    body: MemoryCreate, ctx: Ctx, key: ApiKey, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    return await run_work(actions.start_create, "/v1/memories", body, ctx, key, idempotency_key)


@router.post(
    "/{memory_id}/retrieve",
    responses={
        202: {"model": JobAccepted, "description": 'Accepted as a job ("async": true)'},
        **problems(404, 429, 504),
    },
    summary="Retrieve from a query by SHK Sinkhorn dynamics",
)
async def retrieve(
    memory_id: str,
    body: MemoryRetrieve,
    ctx: Ctx,
    key: ApiKey,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    start = partial(actions.start_retrieval, memory_id=memory_id)
    path = f"/v1/memories/{memory_id}/retrieve"
    return await run_work(start, path, body, ctx, key, idempotency_key)
