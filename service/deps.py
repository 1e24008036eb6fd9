"""FastAPI dependencies: the service context and the authenticated key, as Annotated aliases.

``ApiKey`` accepts any active key (401 ``unauthenticated`` otherwise); ``AdminKey`` also requires
the admin role (403 ``forbidden``). Keys are looked up by hash on every request, so a revoked key
fails at once on every replica; where the request gate (``service.limits``) already found the key
of a request with a body, before reading it, that lookup is reused. ``MetricsReader``
(``/metrics``) accepts an admin key or the scrape token of the setting ``metrics_key``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from service.auth import authenticate, matches
from service.context import ServiceContext
from service.errors import ApiError
from service.limits import GATED_KEY
from service.store.keys import KeyRecord

__all__ = ["AdminKey", "ApiKey", "Ctx", "IdempotencyKey", "MetricsReader", "get_ctx"]


def get_ctx(request: Request) -> ServiceContext:
    return request.app.state.ctx


Ctx = Annotated[ServiceContext, Depends(get_ctx)]

_UNAUTHENTICATED = ApiError(
    401,
    "unauthenticated",
    "Send an active API key as 'Authorization: Bearer <key>'.",
    headers={"WWW-Authenticate": "Bearer"},
)


Authorization = Annotated[str | None, Header(include_in_schema=False)]


def _api_key(request: Request, ctx: Ctx, authorization: Authorization = None) -> KeyRecord:
    key = request.scope.get(GATED_KEY)
    if key is None:  # not gated (a request without a body): sync, FastAPI runs it in a thread
        key = authenticate(ctx.store, authorization)
    if key is None:
        raise _UNAUTHENTICATED
    return key


ApiKey = Annotated[KeyRecord, Depends(_api_key)]


def _admin_key(key: ApiKey) -> KeyRecord:
    if key.role != "admin":
        raise ApiError(403, "forbidden", "This operation needs an admin key.")
    return key


AdminKey = Annotated[KeyRecord, Depends(_admin_key)]


def _metrics_reader(request: Request, ctx: Ctx, authorization: Authorization = None) -> None:
    token = ctx.settings.metrics_key
    if token is not None and matches(authorization, token.get_secret_value()):
        return
    _admin_key(_api_key(request, ctx, authorization))


MetricsReader = Annotated[None, Depends(_metrics_reader)]
"""``/metrics``: an admin key (403 for others) or the ``metrics_key`` scrape token."""

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="A retry with the same key and body returns the first response.",
    ),
]
