"""The request gate: who sends a body, and how large it may be, decided from the headers alone.

FastAPI reads and parses a request's JSON body before any dependency runs, so a key checked by a
dependency is checked only after the whole body has been received and decoded. :class:`RequestGate`
is a pure ASGI middleware in front of the app that, before one byte of the body is read,

1. authenticates every ``/v1`` request that carries a body (``Content-Length`` > 0 or a
   ``Transfer-Encoding``) from its ``Authorization`` header: no active key is 401
   ``unauthenticated`` at once, the body unread. The lookup (one indexed read) runs in a worker
   thread, never on the event loop; the key found is left in the scope (:data:`GATED_KEY`) for
   the route's own dependency, which then does not look it up again;
2. picks the body limit: ``dataset_bytes`` for ``POST /v1/datasets`` with an admin key (the one
   request that carries records), ``request_bytes`` for every other request;
3. refuses a ``Content-Length`` over the limit with 413 ``too_large`` at once, and counts the
   bytes of a body that streams in (chunked, or longer than declared): past the limit the app's
   read fails with :class:`~service.errors.BodyTooLarge`, answered 413 too.

A path holding a NUL character is 404 ``not_found`` (no resource has one; PostgreSQL cannot
even compare such a string, which was a 500) and a query string holding one 422
``invalid_request``, before any route runs.

Every answer given with the body (partly) unread says ``Connection: close``: the server then
closes the connection instead of receiving and discarding the rest, which for 100 MB takes
seconds of event-loop time in uvicorn's HTTP parser.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import anyio.to_thread

from service.errors import BodyTooLarge, problem_body
from service.metrics import ASGIApp, Message, Receive, Scope, Send
from service.store.keys import KeyRecord

__all__ = ["GATED_KEY", "BodyLimits", "RequestGate"]

GATED_KEY = "privflow.gated_key"
"""Scope entry holding the :class:`KeyRecord` the gate authenticated (absent: not gated)."""

_DATASET_UPLOAD = ("POST", "/v1/datasets")
_CLOSE = (b"connection", b"close")


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """Largest bodies, in bytes: an admin's dataset upload, and every other request."""

    dataset_bytes: int
    request_bytes: int


class RequestGate:
    """ASGI middleware: authenticate ``/v1`` bodies from their headers, then limit their size.

    Parameters
    ----------
    app
        The wrapped application.
    authenticate
        ``Authorization`` header (or None) -> the active key, or None; blocking (it reads the
        store), so it is called in a worker thread.
    limits
        The body limits.
    on_refusal
        Called with the problem code of every request the gate answers itself (metrics).
    """

    def __init__(
        self,
        app: ASGIApp,
        authenticate: Callable[[str | None], KeyRecord | None],
        limits: BodyLimits,
        on_refusal: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.authenticate = authenticate
        self.limits = limits
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if "\x00" in path:
            await self._refuse(
                send, 404, "not_found", "No resource has a NUL character in its path."
            )
            return
        if b"\x00" in unquote_to_bytes(scope.get("query_string", b"")):
            message = "must not contain the NUL character"
            await self._refuse(
                send, 422, "invalid_request", f"query: {message}", field=("query", message)
            )
            return
        declared: int | None = None
        chunked = False
        authorization: str | None = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None  # the server refuses a malformed length before the app
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"authorization":
                authorization = value.decode("latin-1")

        limit = self.limits.request_bytes
        if (chunked or (declared or 0) > 0) and path.startswith("/v1/"):
            key = await anyio.to_thread.run_sync(self.authenticate, authorization)
            if key is None:
                await self._refuse(
                    send,
                    401,
                    "unauthenticated",
                    "Send an active API key as 'Authorization: Bearer <key>'.",
                    headers=[(b"www-authenticate", b"Bearer")],
                )
                return
            scope[GATED_KEY] = key
            if key.role == "admin" and (scope["method"], path.rstrip("/")) == _DATASET_UPLOAD:
                limit = self.limits.dataset_bytes
        if declared is not None and declared > limit:
            await self._refuse(send, 413, "too_large", _too_large(limit))
            return

        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if exceeded:  # the rest of the body is unread: close, do not drain it
                    message = {**message, "headers": [*message["headers"], _CLOSE]}
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, 413, "too_large", _too_large(limit))

    async def _refuse(
        self,
        send: Send,
        status: int,
        code: str,
        detail: str,
        *,
        field: tuple[str, str] | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        if self.on_refusal is not None:
            self.on_refusal(code)
        errors = None if field is None else [{"field": field[0], "message": field[1]}]
        body = json.dumps(problem_body(status, code, detail, errors)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    _CLOSE,  # the body is (partly) unread: close, do not drain it
                    *(headers or []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _too_large(limit: int) -> str:
    return BodyTooLarge(limit).detail
