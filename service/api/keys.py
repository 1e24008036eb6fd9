"""``/v1/keys``: create, list and revoke API keys (admin only); ``/v1/me``: the calling key.

``/v1/me`` sits outside ``/v1/keys`` so that it never shares a path with ``/v1/keys/{key_id}``.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from service.actions import keys as actions
from service.api._body import JsonBodyRoute
from service.api._common import Cursor, Limit, problems
from service.deps import AdminKey, ApiKey, Ctx
from service.schemas.common import Page
from service.schemas.keys import KeyCreate, KeyCreated, KeyOut

__all__ = ["me_router", "router"]

router = APIRouter(
    route_class=JsonBodyRoute, prefix="/v1/keys", tags=["keys"], responses=problems(401, 403, 422)
)
me_router = APIRouter(route_class=JsonBodyRoute, tags=["keys"], responses=problems(401))


@router.post("", status_code=201, response_model=KeyCreated, summary="Create an API key")
async def create_key(body: KeyCreate, ctx: Ctx, _: AdminKey) -> dict:
    return await run_in_threadpool(actions.create_key, ctx, body)


@router.get("", response_model=Page[KeyOut], summary="List keys (never their secrets)")
async def list_keys(ctx: Ctx, _: AdminKey, limit: Limit = 100, cursor: Cursor = None) -> dict:
    return await run_in_threadpool(actions.list_keys, ctx, limit, cursor)


@router.delete(
    "/{key_id}", status_code=204, responses=problems(404), summary="Revoke a key at once"
)
async def revoke_key(key_id: str, ctx: Ctx, _: AdminKey) -> Response:
    await run_in_threadpool(actions.revoke_key, ctx, key_id)
    return Response(status_code=204)


@me_router.get(
    "/v1/me",
    response_model=KeyOut,
    summary="The calling key (id, name, role): how a client learns what it may see",
)
async def who_am_i(key: ApiKey) -> dict:
    return actions.key_out(key)
