"""``/v1/generators``: fit semi-discrete OT generators on public points or a release; sample."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from service.actions import generators as actions
from service.api._body import JsonBodyRoute
from service.api._common import Cursor, Limit, problems, run_work
from service.deps import ApiKey, Ctx, IdempotencyKey
from service.schemas.common import Page
from service.schemas.generators import GeneratorCreate, GeneratorOut, GeneratorSamplesRequest
from service.schemas.releases import JobAccepted

__all__ = ["router"]

router = APIRouter(
    route_class=JsonBodyRoute,
    prefix="/v1/generators",
    tags=["generators"],
    responses=problems(401, 422),
)


@router.post(
    "",
    status_code=201,
    response_model=GeneratorOut,
    responses={
        202: {"model": JobAccepted, "description": 'Accepted as a job ("async": true)'},
        **problems(404, 413, 429, 504),
    },
    summary="Fit a generator on public points or a stored release's samples (charges nothing)",
)
async def fit(
    body: GeneratorCreate, ctx: Ctx, key: ApiKey, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    return await run_work(actions.start_fit, "/v1/generators", body, ctx, key, idempotency_key)


@router.post(
    "/{generator_id}/samples",
    responses=problems(404, 413, 429, 504),
    summary="Samples from a generator (the same seed gives the same samples)",
)
async def sample(
    generator_id: str,
    body: GeneratorSamplesRequest,
    ctx: Ctx,
    key: ApiKey,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    start = partial(actions.start_sampling, generator_id=generator_id)
    path = f"/v1/generators/{generator_id}/samples"
    return await run_work(start, path, body, ctx, key, idempotency_key)


@router.get("", response_model=Page[GeneratorOut], summary="Generators this key may see")
async def list_generators(ctx: Ctx, key: ApiKey, limit: Limit = 100, cursor: Cursor = None) -> dict:
    return await run_in_threadpool(actions.list_generators, ctx, key, limit, cursor)


@router.get("/{generator_id}", response_model=GeneratorOut, responses=problems(404))
async def get_generator(generator_id: str, ctx: Ctx, key: ApiKey) -> dict:
    return await run_in_threadpool(actions.get_generator, ctx, key, generator_id)


@router.delete("/{generator_id}", status_code=204, responses=problems(404))
async def delete_generator(generator_id: str, ctx: Ctx, key: ApiKey) -> Response:
    await run_in_threadpool(actions.delete_generator, ctx, key, generator_id)
    return Response(status_code=204)
