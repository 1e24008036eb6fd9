"""HTTP health surface: liveness, readiness (not held back by kernel compilation; 503 when it
failed), and per-route metrics."""

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


def test_readyz_does_not_wait_for_kernel_compilation(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    make_settings: Callable[..., Settings],
) -> None:
    """Ready once the store is; the kernels compile family by family in the background, each
    family's time in the log, and the metrics say when all are compiled."""
    release = threading.Event()
    started: list[str] = []

    def blocking_family(name: str) -> SimpleNamespace:
        started.append(name)
        if name == "second":
            assert release.wait(timeout=30), "test never released warm-up"
        return SimpleNamespace(family=name, seconds=0.25, signatures=3)

    families = {"first": None, "second": None}
    monkeypatch.setattr(dp_core.engine, "SIGNATURES", families, raising=False)
    monkeypatch.setattr(dp_core.engine, "warm_family", blocking_family, raising=False)
    caplog.set_level(logging.INFO, logger="service.app")
    try:
        with TestClient(create_app(make_settings(warm_on_startup=True))) as client:
            assert _wait_for(lambda: started == ["first", "second"], timeout=120)
            response = client.get("/readyz")  # the second family is still compiling
            assert response.status_code == 200
            assert response.json() == {"status": "ready"}
            assert _sample(client, "privflow_kernels_ready") == 0.0

            release.set()
            assert _wait_for(lambda: _sample(client, "privflow_kernels_ready") == 1.0)
            assert client.get("/readyz").status_code == 200
            assert _sample(client, "privflow_kernel_warm_seconds") > 0.0
    finally:
        release.set()
    messages = [r.getMessage() for r in caplog.records]
    assert "kernel family first ready: 3 signatures in 0.2 s" in messages
    assert "kernel family second ready: 3 signatures in 0.2 s" in messages


def test_readyz_stays_not_ready_when_warm_up_fails(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    make_settings: Callable[..., Settings],
) -> None:
    def failing_family(name: str) -> SimpleNamespace:
        raise RuntimeError("no LLVM today")

    monkeypatch.setattr(dp_core.engine, "warm_family", failing_family, raising=False)
    caplog.set_level(logging.ERROR, logger="service.app")
    with TestClient(create_app(make_settings(warm_on_startup=True))) as client:
        assert _wait_for(
            lambda: any("warm-up failed" in r.message for r in caplog.records), timeout=120
        )
        problem = _assert_not_ready(client)
        assert "no LLVM today" not in str(problem["detail"])  # error text stays in the log
        assert _sample(client, "privflow_kernels_ready") == 0.0


def test_a_family_that_fails_once_is_tried_again(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    """A transient error (e.g. an import racing a request's) does not leave /readyz at 503."""
    calls: list[str] = []

    def flaky_family(name: str) -> SimpleNamespace:
        calls.append(name)
        if len(calls) == 1:
            raise RuntimeError("deadlock detected by _ModuleLock")
        return SimpleNamespace(family=name, seconds=0.1, signatures=1)

    monkeypatch.setattr(dp_core.engine, "SIGNATURES", {"only": None}, raising=False)
    monkeypatch.setattr(dp_core.engine, "warm_family", flaky_family, raising=False)
    with TestClient(create_app(make_settings(warm_on_startup=True))) as client:
        assert _wait_for(lambda: _sample(client, "privflow_kernels_ready") == 1.0, timeout=120)
        assert client.get("/readyz").status_code == 200
    assert calls == ["only", "only"]


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
