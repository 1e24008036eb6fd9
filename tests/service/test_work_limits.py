"""Bounded work: the public work estimate and its 413, the deadline, per-key limits, lanes.

ARCHITECTURE "Service": over the public work estimate is 413 ``too_expensive`` (nothing charged,
nothing run), every job has a deadline, one key cannot starve others, and public compute cannot
hold the worker a release waits for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.cost import SUMMARY_RECORDS
from service.settings import Settings
from tests.service.conftest import (
    ADMIN_KEY,
    EXACT,
    QUANTILE,
    SMALL_SHK,
    auth,
    create_analyst,
    create_dataset,
    grant,
    ledger,
    wait_job,
)

# A release that runs for many seconds unless stopped (each of its steps polls for cancellation).
LONG_SHK = {"utility": QUANTILE, "epsilon": 0.05, "sampler": {"particles": 20000}, "async": True}
WAIT_S = 300.0


def _flow(steps: int, **extra: Any) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "source": rng.normal(size=(40, 2)).tolist(),
        "target": (rng.normal(size=(50, 2)) + 1.5).tolist(),
        "kernel": {"bandwidth": 1.0},
        "steps": steps,
        "seed": 3,
        **extra,
    }


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code and body["status"] == status
    return body


def _release(client: TestClient, dataset_id: str, body: dict[str, Any], headers: Any) -> Any:
    return client.post(f"/v1/datasets/{dataset_id}/samples", json=body, headers=headers)


def _budget(client: TestClient, dataset_id: str) -> dict[str, Any]:
    return client.get(f"/v1/datasets/{dataset_id}", headers=auth(ADMIN_KEY)).json()["budget"]


def _stop(client: TestClient, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    client.delete(f"/v1/jobs/{job_id}", headers=headers)
    return wait_job(client, job_id, headers)


@pytest.fixture
def app_with(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., TestClient]]:
    """``app_with(**settings)``: a started app on those settings, closed after the test."""
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        client = TestClient(create_app(make_settings(**overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


# --------------------------------------------------------------------------- the estimate


def test_release_answers_carry_the_public_work_estimate(
    app_with: Callable[..., TestClient], admin: dict[str, str]
) -> None:
    client = app_with(work_units_per_second=1e9)
    dataset = create_dataset(client, n=30, size_bound=1000)
    response = _release(client, dataset["id"], SMALL_SHK, admin)
    assert response.status_code == 201, response.text
    body = response.json()
    sampler, work = body["sampler"], body["work"]
    # The quantile reads sorted records (a summary): N (S + M) R d + N² S d with R = 16, d = 1.
    n, steps, moves = sampler["particles"], sampler["steps"], sampler["relaxation_moves"]
    expected = n * (steps + moves) * SUMMARY_RECORDS + n * n * steps
    assert work["units"] == expected
    assert work["estimated_seconds"] == pytest.approx(expected / 1e9, rel=1e-2)
    # The stored release and an async job report the same estimate; the job from its start.
    stored = client.get(f"/v1/releases/{body['release_id']}", headers=admin).json()
    assert stored["work"] == work
    accepted = _release(client, dataset["id"], {**SMALL_SHK, "async": True}, admin)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    assert client.get(f"/v1/jobs/{job_id}", headers=admin).json()["work"] == work
    job = wait_job(client, job_id, admin)
    assert job["status"] == "succeeded" and job["work"] == work and job["result"]["work"] == work


def test_the_estimate_depends_on_the_size_bound_never_the_records(
    app_with: Callable[..., TestClient], admin: dict[str, str]
) -> None:
    client = app_with()
    clipped_mean = {  # the clip binds in 2-D: the utility passes over the records
        "utility": {"family": "mean", "columns": ["age", "age2"], "clip": 5.0},
        "epsilon": 1.0,
        "sampler": {"particles": 16, "step_size": 0.5, "relaxation_moves": 2},
    }

    def dataset(n: int, size_bound: int) -> str:
        body = {
            "name": "two",
            "columns": [
                {"name": "age", "type": "float", "lower": 0, "upper": 100},
                {"name": "age2", "type": "float", "lower": 0, "upper": 100},
            ],
            "records": [[float(i % 97), float((3 * i) % 89)] for i in range(n)],
            "budget": {"epsilon": 10.0, "delta": 0.0},
            "size_bound": size_bound,
        }
        response = client.post("/v1/datasets", json=body, headers=admin)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    works = {}
    for n, bound in ((20, 500), (400, 500), (20, 5000)):
        response = _release(client, dataset(n, bound), clipped_mean, admin)
        assert response.status_code == 201, response.text
        works[n, bound] = response.json()["work"]["units"]
    assert works[20, 500] == works[400, 500]  # 20 times the records, the same estimate
    assert works[20, 5000] > 5 * works[20, 500]  # a clipped 2-D mean passes over size_bound


# --------------------------------------------------------------------------- 413


def test_release_over_the_maximum_is_413_and_charges_nothing(
    app_with: Callable[..., TestClient], admin: dict[str, str]
) -> None:
    client = app_with(max_work_units=1e9)
    dataset = create_dataset(client, n=30)
    key_id, analyst = create_analyst(client)
    grant(client, dataset["id"], key_id)
    before = _budget(client, dataset["id"])
    heavy = {**SMALL_SHK, "sampler": {"particles": 4000}}  # 4000² x 336 steps: 5.4e9 units
    for body, headers in ((heavy, analyst), ({**heavy, "async": True}, admin)):
        response = client.post(
            f"/v1/datasets/{dataset['id']}/samples",
            json=body,
            headers={**headers, "Idempotency-Key": "heavy"},
        )
        problem = _problem(response, 413, "too_expensive")
        fields = [error["field"] for error in problem["errors"]]
        assert "sampler.particles" in fields and "sampler.relaxation_moves" in fields
        assert "particles (4000)" in problem["errors"][0]["message"]
    assert ledger(client, dataset["id"]) == []
    assert _budget(client, dataset["id"]) == before
    text = client.get("/metrics", headers=admin).text
    assert 'privflow_refusals_total{code="too_expensive"} 2.0' in text
    # Below the maximum the same key and Idempotency-Key run: the 413 was not remembered.
    cheap = client.post(
        f"/v1/datasets/{dataset['id']}/samples",
        json=SMALL_SHK,
        headers={**analyst, "Idempotency-Key": "heavy"},
    )
    assert cheap.status_code == 201, cheap.text
    assert cheap.json()["work"]["units"] <= 1e9


def test_public_work_over_the_maximum_is_413(
    app_with: Callable[..., TestClient], admin: dict[str, str]
) -> None:
    client = app_with(max_work_units=1e6)
    for path, async_ in (("/v1/flows/mmd", False), ("/v1/flows/drmmd", True)):
        # 2000 steps x 40 x (40 + 50) x (2 + 6) = 5.8e7 units (DrMMD: 1.3e8)
        response = client.post(path, json=_flow(2000, **{"async": async_}), headers=admin)
        problem = _problem(response, 413, "too_expensive")
        assert {"source", "target", "steps"} <= {e["field"] for e in problem["errors"]}
    within = client.post("/v1/flows/mmd", json=_flow(20), headers=admin)
    assert within.status_code == 200, within.text
    points = np.random.default_rng(1).normal(size=(300, 2)).tolist()
    memory = {"patterns": [{"points": points}], "blur": 0.5}  # 300² x 2 x 150 = 2.7e7 units
    stored = client.post("/v1/memories", json=memory, headers=admin)
    assert [e["field"] for e in _problem(stored, 413, "too_expensive")["errors"]] == ["patterns"]
    fit = {"points": points[:50], "async": True}  # 65536 x 2000 x 50 x (2 + 8)
    fitted = client.post("/v1/generators", json=fit, headers=admin)
    problem = _problem(fitted, 413, "too_expensive")
    assert {"fit.samples", "fit.max_steps", "points"} == {e["field"] for e in problem["errors"]}


# --------------------------------------------------------------------------- deadline


def test_deadline_fails_a_release_and_keeps_its_charge(
    app_with: Callable[..., TestClient], admin: dict[str, str]
) -> None:
    client = app_with(job_deadline_seconds=0.5)
    dataset = create_dataset(client, n=30)
    key_id, analyst = create_analyst(client)
    grant(client, dataset["id"], key_id)
    accepted = _release(client, dataset["id"], LONG_SHK, analyst)
    assert accepted.status_code == 202, accepted.text
    job_id, release_id = accepted.json()["job_id"], accepted.json()["release_id"]
    job = wait_job(client, job_id, analyst)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "deadline" and job.get("result") is None
    [entry] = ledger(client, dataset["id"])
    assert entry["release_id"] == release_id and entry["status"] == "failed"
    assert entry["charged"]["epsilon"] == 0.05  # fail closed: the charge stands
    assert _budget(client, dataset["id"])["spent"]["epsilon"] == pytest.approx(0.05)
    _problem(client.get(f"/v1/releases/{release_id}", headers=analyst), 404, "not_found")
    # Synchronous work meets the same deadline: 504 deadline.
    _problem(client.post("/v1/flows/mmd", json=_flow(1_000_000), headers=admin), 504, "deadline")


# --------------------------------------------------------------------------- per-key limit


def test_one_key_cannot_hold_more_than_its_share(
    app_with: Callable[..., TestClient], admin: dict[str, str]
) -> None:
    client = app_with(max_jobs_per_key=1)
    dataset = create_dataset(client, n=30)
    a_id, alice = create_analyst(client, "alice")
    b_id, bob = create_analyst(client, "bob")
    grant(client, dataset["id"], a_id)
    grant(client, dataset["id"], b_id)
    long_flow = _flow(1_000_000, **{"async": True})
    first = client.post("/v1/flows/mmd", json=long_flow, headers={**alice, "Idempotency-Key": "f"})
    assert first.status_code == 202, first.text
    job_id = first.json()["job_id"]
    try:
        # A retry of the same request is not new work: it gets the first answer, not a 429.
        retry = client.post(
            "/v1/flows/mmd", json=long_flow, headers={**alice, "Idempotency-Key": "f"}
        )
        assert retry.status_code == 202 and retry.json() == first.json()
        second = client.post("/v1/flows/mmd", json=_flow(10, **{"async": True}), headers=alice)
        _problem(second, 429, "overloaded")
        retry_after = second.headers.get("retry-after")
        assert retry_after is not None and int(retry_after) >= 1
        # The share spans both lanes, and the refused release charged nothing.
        refused = _release(client, dataset["id"], {**EXACT, "async": True}, alice)
        _problem(refused, 429, "overloaded")
        assert ledger(client, dataset["id"]) == []
        # Another key still gets through, in either lane.
        assert _release(client, dataset["id"], EXACT, bob).status_code == 201
        queued = client.post("/v1/flows/mmd", json=_flow(10, **{"async": True}), headers=bob)
        assert queued.status_code == 202, queued.text
    finally:
        assert _stop(client, job_id, alice)["status"] == "cancelled"
    assert wait_job(client, queued.json()["job_id"], bob)["status"] == "succeeded"
    # The slot is given back when the job ends (just after its row says so).
    deadline = time.monotonic() + WAIT_S
    while (again := _release(client, dataset["id"], EXACT, alice)).status_code == 429:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert again.status_code == 201, again.text


# --------------------------------------------------------------------------- lanes


def test_a_long_flow_does_not_hold_up_a_release(
    app_with: Callable[..., TestClient], admin: dict[str, str]
) -> None:
    """One release worker and one compute worker: a release admitted while a long flow runs
    finishes while the flow is still running (it would wait for the whole flow in one pool)."""
    client = app_with(job_workers=1, compute_workers=1)
    dataset = create_dataset(client, n=30)
    assert _release(client, dataset["id"], EXACT, admin).status_code == 201  # kernels compiled
    flow = client.post("/v1/flows/mmd", json=_flow(1_000_000, **{"async": True}), headers=admin)
    assert flow.status_code == 202, flow.text
    flow_id = flow.json()["job_id"]
    try:
        wait_job(client, flow_id, admin, lambda job: job["status"] != "queued")
        answer: dict[str, Any] = {}
        thread = threading.Thread(
            target=lambda: answer.update(
                response=_release(client, dataset["id"], EXACT, admin),
                flow=client.get(f"/v1/jobs/{flow_id}", headers=admin).json()["status"],
            )
        )
        thread.start()
        thread.join(WAIT_S)  # a cap for a broken build only: the flow runs far longer
        assert "response" in answer, "the release waited for the flow"
        assert answer["response"].status_code == 201, answer["response"].text
        assert answer["flow"] == "running", "the release waited for the flow to finish"
    finally:
        _stop(client, flow_id, admin)
