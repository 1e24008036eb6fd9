"""``/v1/datasets``: register datasets (admin), read metadata and budgets, grant analysts and
list grants (admins: all; analysts: their own)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from service.actions import datasets as actions
from service.api._body import JsonBodyRoute
from service.api._common import Cursor, Limit, problems
from service.deps import AdminKey, ApiKey, Ctx
from service.schemas.common import Page
from service.schemas.datasets import DatasetCreate, DatasetOut, GrantCreate, GrantOut

__all__ = ["router"]

router = APIRouter(
    route_class=JsonBodyRoute,
    prefix="/v1/datasets",
    tags=["datasets"],
    responses=problems(401, 403, 422),
)


@router.post(
    "",
    status_code=201,
    response_model=DatasetOut,
    responses=problems(413),
    summary="Register a dataset with its budget (records are never returned)",
)
async def create_dataset(body: DatasetCreate, ctx: Ctx, admin: AdminKey) -> dict:
    return await run_in_threadpool(actions.create_dataset, ctx, admin, body)


@router.get(
    "",
    response_model=Page[DatasetOut],
    response_model_exclude_unset=True,  # n_records is absent for analysts (DatasetOut)
    summary="Datasets this key may see",
)
async def list_datasets(ctx: Ctx, key: ApiKey, limit: Limit = 100, cursor: Cursor = None) -> dict:
    return await run_in_threadpool(actions.list_datasets, ctx, key, limit, cursor)


@router.get(
    "/{dataset_id}",
    response_model=DatasetOut,
    response_model_exclude_unset=True,
    responses=problems(404),
    summary="Dataset metadata and budget (n_records for admin keys only)",
)
async def get_dataset(dataset_id: str, ctx: Ctx, key: ApiKey) -> dict:
    return await run_in_threadpool(actions.get_dataset, ctx, key, dataset_id)


@router.post(
    "/{dataset_id}/grants",
    status_code=201,
    response_model=GrantOut,
    responses=problems(404),
    summary="Grant a key the dataset, with optional caps (replaces an existing grant's caps)",
)
async def grant(dataset_id: str, body: GrantCreate, ctx: Ctx, _: AdminKey) -> dict:
    return await run_in_threadpool(actions.grant, ctx, dataset_id, body)


@router.get(
    "/{dataset_id}/grants",
    response_model=Page[GrantOut],
    responses=problems(404),
    summary="Grants with caps and spend (analysts see their own)",
)
async def list_grants(
    dataset_id: str, ctx: Ctx, key: ApiKey, limit: Limit = 100, cursor: Cursor = None
) -> dict:
    return await run_in_threadpool(actions.list_grants, ctx, key, dataset_id, limit, cursor)
