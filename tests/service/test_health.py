"""HTTP health surface: liveness, readiness gated on kernel warm-up, and per-route metrics."""

import logging
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import dp_core.engine
from service.app import create_app
from service.settings import Settings
from tests.service.conftest import ADMIN_KEY, auth

POLL_TIMEOUT_S = 10.0


def _wait_for(condition: Callable[[], bool], timeout: float = POLL_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _sample(client: TestClient, name: str, **labels: str) -> float | None:
    """Value of the sample ``name{labels}`` in the app's /metrics, or None when absent."""
    response = client.get("/metrics", headers=auth(ADMIN_KEY))
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def _assert_not_ready(client: TestClient) -> dict[str, object]:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == "not_ready"
    assert problem["type"] == "/errors/not_ready"
    assert problem["status"] == 503
    assert problem["title"] == "Service not ready"
    assert isinstance(problem["detail"], str) and problem["detail"]
    return problem


def test_healthz_answers_ok(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(warm_on_startup=False))) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ready_at_once_without_warm_up(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(warm_on_startup=False))) as client:
        response = client.get("/readyz")
        assert _sample(client, "privflow_kernels_ready") == 0.0  # nothing was compiled
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_readyz_waits_for_kernel_warm_up(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    release = threading.Event()
    started = threading.Event()

    def blocking_warm() -> SimpleNamespace:
        started.set()
        assert release.wait(timeout=30), "test never released warm-up"
        return SimpleNamespace(seconds=0.25, signatures=3)

    monkeypatch.setattr(dp_core.engine, "warm", blocking_warm, raising=False)
    try:
        with TestClient(create_app(make_settings(warm_on_startup=True))) as client:
            assert started.wait(timeout=POLL_TIMEOUT_S)
            _assert_not_ready(client)
            assert client.get("/healthz").status_code == 200  # alive while warming
            assert _sample(client, "privflow_kernels_ready") == 0.0

            release.set()
            assert _wait_for(lambda: client.get("/readyz").status_code == 200)
            assert client.get("/readyz").json() == {"status": "ready"}
            assert _sample(client, "privflow_kernels_ready") == 1.0
            assert _sample(client, "privflow_kernel_warm_seconds") == 0.25
    finally:
        release.set()


def test_readyz_stays_not_ready_when_warm_up_fails(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    make_settings: Callable[..., Settings],
) -> None:
    def failing_warm() -> SimpleNamespace:
        raise RuntimeError("no LLVM today")

    monkeypatch.setattr(dp_core.engine, "warm", failing_warm, raising=False)
    caplog.set_level(logging.ERROR, logger="service.app")
    with TestClient(create_app(make_settings(warm_on_startup=True))) as client:
        assert _wait_for(lambda: any("warm-up failed" in r.message for r in caplog.records))
        problem = _assert_not_ready(client)
        assert "no LLVM today" not in str(problem["detail"])  # error text stays in the log
        assert _sample(client, "privflow_kernels_ready") == 0.0


def test_metrics_count_requests_by_route_template(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(warm_on_startup=False))

    async def probe(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    app.add_api_route("/probe/{item_id}", probe, methods=["GET"])
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/probe/4217").status_code == 200
        assert client.get("/no/such/path/9931").status_code == 404
        assert client.post("/healthz").status_code == 405

        response = client.get("/metrics", headers=auth(ADMIN_KEY))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert "4217" not in response.text and "9931" not in response.text  # no raw URLs

        requests = "privflow_http_requests_total"
        assert _sample(client, requests, route="/healthz", method="GET", status="200") == 2.0
        assert _sample(client, requests, route="/probe/{item_id}", method="GET", status="200") == 1
        assert _sample(client, requests, route="unmatched", method="GET", status="404") == 1.0
        assert _sample(client, requests, route="/healthz", method="POST", status="405") == 1.0
        latency = "privflow_http_request_duration_seconds_count"
        assert _sample(client, latency, route="/healthz", method="GET") == 2.0


def test_each_app_has_its_own_registry(make_settings: Callable[..., Settings]) -> None:
    first = create_app(make_settings(warm_on_startup=False))
    second = create_app(make_settings(warm_on_startup=False))
    with TestClient(first) as a, TestClient(second) as b:
        a.get("/healthz")
        requests = "privflow_http_requests_total"
        assert _sample(a, requests, route="/healthz", method="GET", status="200") == 1.0
        assert _sample(b, requests, route="/healthz", method="GET", status="200") is None
