"""``/v1/flows/*``: particle flows on caller-supplied point clouds (no budget; seeds allowed)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.actions import flows as actions
from service.api._body import JsonBodyRoute
from service.api._common import problems, run_work
from service.deps import ApiKey, Ctx, IdempotencyKey
from service.schemas.flows import DrMMDRequest, MMDRequest, MuonRequest
from service.schemas.releases import JobAccepted

__all__ = ["router"]

router = APIRouter(
    route_class=JsonBodyRoute,
    prefix="/v1/flows",
    tags=["flows"],
    responses=problems(401, 413, 422, 429, 504),
)

_ACCEPTED = {202: {"model": JobAccepted, "description": 'Accepted as a job ("async": true)'}}


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


@router.post("/muon", responses=_ACCEPTED, summary="Regularised Muon Hamiltonian particle flow")
async def muon(
    body: MuonRequest, ctx: Ctx, key: ApiKey, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    return await run_work(actions.start_muon, "/v1/flows/muon", body, ctx, key, idempotency_key)
