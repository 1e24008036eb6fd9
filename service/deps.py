"""FastAPI dependencies: the service context and the authenticated key, as Annotated aliases.

``ApiKey`` accepts any active key (401 ``unauthenticated`` otherwise); ``AdminKey`` also requires
the admin role (403 ``forbidden``). Keys are looked up by hash on every request, so a revoked key
fails at once on every replica.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from service.context import ServiceContext
from service.errors import ApiError
from service.store.keys import KeyRecord, find_active_key

__all__ = ["AdminKey", "ApiKey", "Ctx", "IdempotencyKey", "get_ctx"]


def get_ctx(request: Request) -> ServiceContext:
    return request.app.state.ctx


Ctx = Annotated[ServiceContext, Depends(get_ctx)]

_UNAUTHENTICATED = ApiError(
    401,
    "unauthenticated",
    "Send an active API key as 'Authorization: Bearer <key>'.",
    headers={"WWW-Authenticate": "Bearer"},
)


def _api_key(
    ctx: Ctx,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> KeyRecord:
    if authorization is None:
        raise _UNAUTHENTICATED
    scheme, _, secret = authorization.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or len(secret) > 200:
        raise _UNAUTHENTICATED
    with ctx.store.read() as conn:
        key = find_active_key(conn, secret)
    if key is None:
        raise _UNAUTHENTICATED
    return key


ApiKey = Annotated[KeyRecord, Depends(_api_key)]


def _admin_key(key: ApiKey) -> KeyRecord:
    if key.role != "admin":
        raise ApiError(403, "forbidden", "This operation needs an admin key.")
    return key


AdminKey = Annotated[KeyRecord, Depends(_admin_key)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="A retry with the same key and body returns the first response.",
    ),
]
