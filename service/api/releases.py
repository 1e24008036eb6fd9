"""Private releases: ``POST /v1/datasets/{id}/samples``, the ledger, its composition and stored
releases."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from service.actions import ledger as ledger_actions
from service.actions import releases as actions
from service.api._body import JsonBodyRoute
from service.api._common import Cursor, Limit, problems, run_work
from service.deps import ApiKey, Ctx, IdempotencyKey
from service.schemas.common import Page
from service.schemas.releases import (
    CompositionOut,
    JobAccepted,
    LedgerEntryOut,
    ReleaseOut,
    SampleRequest,
)

__all__ = ["router"]

router = APIRouter(
    route_class=JsonBodyRoute, tags=["releases"], responses=problems(401, 403, 404, 422)
)


@router.post(
    "/v1/datasets/{dataset_id}/samples",
    status_code=201,
    response_model=ReleaseOut,
    responses={
        202: {"model": JobAccepted, "description": 'Accepted as a job ("async": true)'},
        **problems(409, 413, 429, 504),
    },
    summary="Release samples of the exponential mechanism, with a certificate",
)
async def create_release(
    dataset_id: str,
    body: SampleRequest,
    ctx: Ctx,
    key: ApiKey,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    start = partial(actions.start_release, dataset_id=dataset_id)
    path = f"/v1/datasets/{dataset_id}/samples"
    return await run_work(start, path, body, ctx, key, idempotency_key)


@router.get(
    "/v1/datasets/{dataset_id}/ledger",
    response_model=Page[LedgerEntryOut],
    summary="Ledger entries (analysts see their own)",
)
async def list_ledger(
    dataset_id: str, ctx: Ctx, key: ApiKey, limit: Limit = 100, cursor: Cursor = None
) -> dict:
    return await run_in_threadpool(ledger_actions.list_ledger, ctx, key, dataset_id, limit, cursor)


Deltas = Annotated[
    list[Annotated[str, Query(max_length=2000)]] | None,
    Query(
        description=(
            "Target deltas in (0, 1), repeated or comma-separated (at most 64); "
            "default 1e-12 to 1e-1 by half decades, plus the budget's delta."
        ),
    ),
]


@router.get(
    "/v1/datasets/{dataset_id}/composition",
    response_model=CompositionOut,
    summary="The ledger's (epsilon, delta) curve: pure and zCDP composition of its charges",
)
async def composition(dataset_id: str, ctx: Ctx, key: ApiKey, deltas: Deltas = None) -> dict:
    return await run_in_threadpool(ledger_actions.composition, ctx, key, dataset_id, deltas)


@router.get(
    "/v1/releases/{release_id}",
    response_model=ReleaseOut,
    summary="A stored release (samples and certificate are public outputs)",
)
async def get_release(release_id: str, ctx: Ctx, key: ApiKey) -> dict:
    return await run_in_threadpool(actions.get_release_body, ctx, key, release_id)
