"""How JSON request bodies are decoded: :class:`JsonBodyRoute`, the route class of every router.

FastAPI decodes a JSON body with ``request.json()`` before it validates it. The routes of this
service hand it a :class:`JsonBodyRequest` instead, whose ``json()`` decodes with
:func:`parse_json`: bodies over :data:`INLINE_PARSE_BYTES` are decoded in a worker thread, not on
the event loop. The decoder's number hooks are Python functions, so the thread runs Python code
every few bytes and gives the event loop the GIL at every switch interval (5 ms); the C decoder
alone would hold it for the whole body.

The size of a body is limited before it is read (``service.limits``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["INLINE_PARSE_BYTES", "JsonBodyRequest", "JsonBodyRoute", "parse_json"]

INLINE_PARSE_BYTES = 64 * 1024
"""Bodies up to this size are decoded on the event loop (a thread hop would cost more)."""


def _float(text: str) -> float:
    return float(text)


def _int(text: str) -> int:
    return int(text)


def parse_json(body: bytes) -> Any:
    """Decode a JSON request body (raises ``json.JSONDecodeError`` when it is not JSON)."""
    return json.loads(body, parse_float=_float, parse_int=_int)


class JsonBodyRequest(Request):
    """A request whose ``json()`` is :func:`parse_json`, in a worker thread for large bodies."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            if len(body) > INLINE_PARSE_BYTES:
                self._json = await run_in_threadpool(parse_json, body)
            else:
                self._json = parse_json(body)
        return self._json


class JsonBodyRoute(APIRoute):
    """An ``APIRoute`` whose handler reads the body through :class:`JsonBodyRequest`; every
    router of the service is built with ``route_class=JsonBodyRoute``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def decode_with_parse_json(request: Request) -> Response:
            return await handler(JsonBodyRequest(request.scope, request.receive))

        return decode_with_parse_json
