"""``/v1/jobs/{id}``: status, progress and result of long work; ``DELETE`` cancels."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from service.actions import jobs as actions
from service.api._body import JsonBodyRoute
from service.api._common import problems
from service.deps import ApiKey, Ctx
from service.schemas.releases import JobOut

__all__ = ["router"]

router = APIRouter(
    route_class=JsonBodyRoute, prefix="/v1/jobs", tags=["jobs"], responses=problems(401, 404)
)


@router.get("/{job_id}", response_model=JobOut, summary="A job's status and result")
async def get_job(job_id: str, ctx: Ctx, key: ApiKey) -> dict:
    return await run_in_threadpool(actions.get_job, ctx, key, job_id)


@router.delete("/{job_id}", response_model=JobOut, summary="Cancel a job (charges stay spent)")
async def cancel_job(job_id: str, ctx: Ctx, key: ApiKey) -> dict:
    return await run_in_threadpool(actions.cancel_job, ctx, key, job_id)
