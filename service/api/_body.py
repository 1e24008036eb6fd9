"""How JSON request bodies are decoded: :class:`JsonBodyRoute`, the route class of every router.

FastAPI decodes a JSON body with ``request.json()`` before it validates it. The routes of this
service hand it a :class:`JsonBodyRequest` instead, whose ``json()`` decodes with
:func:`parse_json`: bodies over :data:`INLINE_PARSE_BYTES` are decoded in a worker thread, not on
the event loop. The decoder's number hooks are Python functions, so the thread runs Python code
every few bytes and gives the event loop the GIL at every switch interval (5 ms); the C decoder
alone would hold it for the whole body.

:func:`parse_json` also refuses, with 422 ``invalid_request`` naming the field, what Python's
decoder would accept silently: an object that repeats a key (``{"epsilon": 1, "epsilon": 2}``
would otherwise be read as its last value, and charged), and a NUL character in any string or key
(PostgreSQL cannot store one in a text column: a dataset or key name holding one was a 500 there
and stored on SQLite).

The size of a body is limited before it is read (``service.limits``). A large body is decoded
with the cyclic garbage collector paused (:func:`_decode_large`) and freed in a worker thread
too (:func:`release_parsed`).
"""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from service.errors import InvalidBody

__all__ = [
    "INLINE_PARSE_BYTES",
    "JsonBodyRequest",
    "JsonBodyRoute",
    "parse_json",
    "release_parsed",
]

INLINE_PARSE_BYTES = 64 * 1024
"""Bodies up to this size are decoded on the event loop (a thread hop would cost more)."""


def _float(text: str) -> float:
    return float(text)


def _int(text: str) -> int:
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidBody(key, "appears more than once in the same object")
            seen.add(key)
    return out


def _nul_field(value: Any, path: str = "") -> str | None:
    """The field name (``columns[0].name``) of the first string or key holding a NUL."""
    if isinstance(value, str):
        return (path or "body") if "\x00" in value else None
    if isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _nul_field(item, f"{path}[{index}]")) is not None:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else key
            if "\x00" in key:
                return name.replace("\x00", "\\u0000")
            if (found := _nul_field(item, name)) is not None:
                return found
    return None


def parse_json(body: bytes) -> Any:
    """Decode a JSON request body.

    Raises
    ------
    json.JSONDecodeError
        Not JSON (FastAPI answers 422).
    service.errors.InvalidBody
        An object repeats a key, or a string or key holds a NUL character (422 naming it).
    """
    value = json.loads(body, object_pairs_hook=_unique_keys, parse_float=_float, parse_int=_int)
    # A NUL can only come in escaped (raw control characters are not JSON) or in a UTF-16/32 body.
    if b"\\u0000" in body or b"\x00" in body:
        field = _nul_field(value)
        if field is not None:
            raise InvalidBody(field, "must not contain the NUL character (\\u0000)")
    return value


_collection_lock = threading.Lock()
_decoding = 0  # large bodies being decoded now (the collector is off while any is)
_alive = 0  # large bodies decoded and not yet released (what the collector may not traverse)


def _decode_large(body: bytes) -> Any:
    """:func:`parse_json` of a large body with the cyclic garbage collector paused, and what it
    built frozen (``gc.freeze``: collections leave it alone) until :func:`release_parsed`.

    A 16 MiB dataset body decodes to a million row lists; while they were built, and after,
    the collector's full collections traversed all of them, each a pause of 0.3–0.6 s in which no
    other thread ran (the event loop included: ``/healthz`` stalled 1.2 s). The rows hold no
    cycles and are freed by reference counting. The collector turns back on when no large body
    is being decoded; the frozen objects are handed back to it (``gc.unfreeze``) when no large
    body is alive."""
    global _decoding, _alive
    with _collection_lock:
        _decoding += 1
        _alive += 1
        gc.disable()
    try:
        return parse_json(body)
    finally:
        with _collection_lock:
            _decoding -= 1
            gc.freeze()
            if _decoding == 0:
                gc.enable()


RELEASE_CHUNK = 65_536
"""Items freed per step when a large decoded body is let go (:func:`release_parsed`)."""


def release_parsed(value: Any) -> None:
    """Free a large decoded body a chunk at a time, in the calling (worker) thread, then give
    the frozen objects back to the collector if no other large body is alive.

    Freeing a million row lists is one C loop that holds the GIL for 0.1–0.35 s; run where the
    last reference drops (the event loop, once the answer is sent), it stalls every request.
    Emptying the long lists in slices gives other threads the GIL between slices."""
    global _alive
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list) and len(item) > RELEASE_CHUNK:
            while item:
                del item[-RELEASE_CHUNK:]
    with _collection_lock:
        _alive = max(0, _alive - 1)  # 0 already: the decoding never started (a cancellation)
        if _alive == 0:
            gc.unfreeze()


class JsonBodyRequest(Request):
    """A request whose ``json()`` is :func:`parse_json`, in a worker thread for large bodies."""

    large_body: bool = False

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            if len(body) > INLINE_PARSE_BYTES:
                self.large_body = True
                self._json = await run_in_threadpool(_decode_large, body)
            else:
                self._json = parse_json(body)
        return self._json


class JsonBodyRoute(APIRoute):
    """An ``APIRoute`` whose handler reads the body through :class:`JsonBodyRequest`; every
    router of the service is built with ``route_class=JsonBodyRoute``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def decode_with_parse_json(request: Request) -> Response:
            decoding = JsonBodyRequest(request.scope, request.receive)
            try:
                return await handler(decoding)
            finally:
                if decoding.large_body:  # the handler is done with it: free it off the loop
                    parsed = decoding.__dict__.pop("_json", None)
                    await run_in_threadpool(release_parsed, parsed)

        return decode_with_parse_json
