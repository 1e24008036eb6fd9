"""The request gate and JSON decoding (issue "Trust hardening", item 6).

A ``/v1`` request with a body is authenticated from its headers before its body is read; the
body limit depends on the request (an admin's dataset upload, or anything else); large bodies
are decoded in a worker thread. The end-to-end timing against a real server is
``tests/e2e/test_body_limits.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from service.api import ROUTERS, _body
from service.api._body import INLINE_PARSE_BYTES, JsonBodyRoute
from service.app import create_app
from service.errors import BodyTooLarge
from service.limits import GATED_KEY, BodyLimits, RequestGate
from service.settings import Settings
from service.store.keys import KeyRecord
from tests.service.conftest import create_analyst

ADMIN = KeyRecord("key_a", "a", "admin", datetime.now(UTC), None)
ANALYST = KeyRecord("key_b", "b", "analyst", datetime.now(UTC), None)
LIMITS = BodyLimits(dataset_bytes=10_000, request_bytes=1_000)


class Recorder:
    """A fake ASGI app behind the gate, and the calls the gate made."""

    def __init__(self, keys: dict[str, KeyRecord]) -> None:
        self.keys = keys
        self.lookups: list[str | None] = []
        self.refusals: list[str] = []
        self.app_calls = 0
        self.scope: dict[str, Any] = {}
        self.receives = 0
        self.sent: list[dict[str, Any]] = []

    def authenticate(self, authorization: str | None) -> KeyRecord | None:
        self.lookups.append(authorization)
        return self.keys.get((authorization or "").removeprefix("Bearer "))

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        self.app_calls += 1
        self.scope = scope
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def gate(self) -> RequestGate:
        return RequestGate(self.app, self.authenticate, LIMITS, self.refusals.append)

    def run(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        chunks: list[bytes] | None = None,
    ) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        chunks = chunks or []
        self.sent = []
        self.receives = 0

        async def receive() -> dict[str, Any]:
            self.receives += 1
            index = self.receives - 1
            if index >= len(chunks):
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.request", "body": chunks[index], "more_body": True}

        async def send(message: dict[str, Any]) -> None:
            self.sent.append(message)

        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }
        asyncio.run(self.gate()(scope, receive, send))
        start = self.sent[0]
        answer = {k.decode(): v.decode() for k, v in start["headers"]}
        body = b"".join(m.get("body", b"") for m in self.sent[1:])
        problem = json.loads(body) if answer.get("content-type", "").endswith("json") else None
        return start["status"], answer, problem


def test_an_unauthenticated_body_is_refused_unread() -> None:
    recorder = Recorder({"good": ADMIN})
    for auth in ({}, {"Authorization": "Bearer wrong"}):
        status, headers, problem = recorder.run(
            "POST", "/v1/datasets", {"Content-Length": "5000000", **auth}
        )
        assert status == 401 and problem is not None and problem["code"] == "unauthenticated"
        assert headers["www-authenticate"] == "Bearer"
        assert headers["connection"] == "close"  # the rest of the body is not drained
    # Chunked (no Content-Length) is gated the same way.
    status, _, _ = recorder.run("POST", "/v1/flows/mmd", {"Transfer-Encoding": "chunked"})
    assert status == 401 and recorder.receives == 0 and recorder.app_calls == 0
    assert recorder.refusals == ["unauthenticated"] * 3


def test_the_limit_depends_on_the_key_and_the_route() -> None:
    recorder = Recorder({"admin": ADMIN, "analyst": ANALYST})
    admin, analyst = {"Authorization": "Bearer admin"}, {"Authorization": "Bearer analyst"}
    # An admin's dataset upload may use the dataset limit ...
    status, _, _ = recorder.run(
        "POST", "/v1/datasets", {**admin, "Content-Length": "5000"}, [b"x" * 5000]
    )
    assert status == 200 and recorder.scope[GATED_KEY] == ADMIN
    # ... but not past it, nor anywhere else, and an analyst never.
    for method, path, headers, size in (
        ("POST", "/v1/datasets", admin, 10_001),
        ("POST", "/v1/flows/mmd", admin, 1_001),
        ("POST", "/v1/datasets/ds_x/grants", admin, 1_001),
        ("POST", "/v1/datasets", analyst, 1_001),
    ):
        calls = recorder.app_calls
        status, headers_out, problem = recorder.run(
            method, path, {**headers, "Content-Length": str(size)}
        )
        limit = 10_000 if size > 10_000 else 1_000
        assert status == 413 and problem is not None, (path, size)
        assert problem["code"] == "too_large" and str(limit) in problem["detail"]
        assert headers_out["connection"] == "close"
        assert recorder.app_calls == calls  # refused by Content-Length, nothing read


def test_a_streamed_body_is_counted() -> None:
    recorder = Recorder({"analyst": ANALYST})
    status, headers, problem = recorder.run(
        "POST",
        "/v1/flows/mmd",
        {"Authorization": "Bearer analyst", "Transfer-Encoding": "chunked"},
        [b"x" * 400] * 10,
    )
    assert status == 413 and problem is not None and problem["code"] == "too_large"
    assert headers["connection"] == "close"
    assert recorder.receives == 3  # 1,200 bytes > 1,000: the third chunk tripped the limit


def test_bodiless_and_non_v1_requests_need_no_lookup() -> None:
    recorder = Recorder({})
    assert recorder.run("GET", "/v1/datasets", {})[0] == 200  # the route's dependency decides
    assert recorder.run("DELETE", "/v1/jobs/x", {"Content-Length": "0"})[0] == 200
    assert recorder.run("POST", "/healthz", {"Content-Length": "10"}, [b"x" * 10])[0] == 200
    assert recorder.lookups == []
    # Outside /v1 the request limit still holds.
    status, _, _ = recorder.run("POST", "/dashboard", {"Content-Length": "1001"})
    assert status == 413


def test_body_too_large_is_an_http_exception_naming_the_limit() -> None:
    assert BodyTooLarge(8 * 2**20).status_code == 413
    assert "8388608" in str(BodyTooLarge(8 * 2**20).detail)


# ------------------------------------------------------------------------ the real app


def test_non_dataset_routes_have_the_small_limit(
    make_settings: Callable[..., Settings], admin: dict[str, str]
) -> None:
    settings = make_settings(max_request_bytes=64 * 1024, max_body_bytes=1024 * 1024)
    with TestClient(create_app(settings)) as client:
        points = [[0.123456789, 0.987654321]] * 3000  # about 80 KB of JSON
        body = {"source": points, "target": points, "kernel": {"name": "gaussian"}}
        response = client.post("/v1/flows/mmd", json=body, headers=admin)
        assert response.status_code == 413, response.text
        assert response.json()["code"] == "too_large"
        assert str(64 * 1024) in response.json()["detail"]
        # The same size is fine for an admin's dataset upload ...
        records = [[float(i % 100), "a"] for i in range(8000)]
        dataset = {
            "name": "d",
            "columns": [
                {"name": "age", "type": "float", "lower": 0, "upper": 100},
                {"name": "city", "type": "category", "categories": ["a"]},
            ],
            "records": records,
            "budget": {"epsilon": 1.0},
        }
        assert len(json.dumps(dataset)) > 64 * 1024
        created = client.post("/v1/datasets", json=dataset, headers=admin)
        assert created.status_code == 201, created.text
        # ... and refused unread to an analyst.
        _, analyst = create_analyst(client)
        refused = client.post("/v1/datasets", json=dataset, headers=analyst)
        assert refused.status_code == 413 and refused.json()["code"] == "too_large"
        metrics = client.get("/metrics", headers=admin).text
    assert 'privflow_refusals_total{code="too_large"} 2.0' in metrics


def test_large_bodies_are_decoded_off_the_event_loop(
    client: TestClient, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    on_loop: list[tuple[int, bool]] = []
    parse = _body.parse_json

    def recording_parse(body: bytes) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append((len(body), True))
        except RuntimeError:
            on_loop.append((len(body), False))
        return parse(body)

    monkeypatch.setattr(_body, "parse_json", recording_parse)
    small = client.post("/v1/keys", json={"name": "k", "role": "analyst"}, headers=admin)
    assert small.status_code == 201
    big = client.post(
        "/v1/keys", json={"name": "k" * (INLINE_PARSE_BYTES + 10), "role": "analyst"}, headers=admin
    )
    assert big.status_code == 422  # the name is too long; decoded all the same
    (small_size, small_on_loop), (big_size, big_on_loop) = on_loop
    assert small_size < INLINE_PARSE_BYTES and small_on_loop
    assert big_size > INLINE_PARSE_BYTES and not big_on_loop


def test_every_route_with_a_body_decodes_through_parse_json() -> None:
    routes = [route for router in ROUTERS for route in router.routes]
    with_body = [r for r in routes if isinstance(r, APIRoute) and r.body_field is not None]
    assert len(with_body) >= 10
    assert [r.path for r in with_body if not isinstance(r, JsonBodyRoute)] == []
