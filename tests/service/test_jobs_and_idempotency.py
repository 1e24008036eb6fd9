"""Idempotency-Key replays, async releases as jobs, cancellation and the 429 of a full queue."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
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

# A release that runs for many seconds unless cancelled (the cancel flag is polled every 0.5 s).
LONG_SHK = {"utility": QUANTILE, "epsilon": 0.05, "sampler": {"particles": 20000}, "async": True}
WAIT_S = 120.0


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code
    return body


def _post(
    client: TestClient,
    dataset_id: str,
    body: dict[str, Any],
    headers: dict[str, str],
    idem: str | None = None,
) -> Any:
    if idem is not None:
        headers = {**headers, "Idempotency-Key": idem}
    return client.post(f"/v1/datasets/{dataset_id}/samples", json=body, headers=headers)


def _budget(client: TestClient, dataset_id: str) -> dict[str, Any]:
    return client.get(f"/v1/datasets/{dataset_id}", headers=auth(ADMIN_KEY)).json()["budget"]


# --------------------------------------------------------------------------- idempotency


def test_same_key_and_body_replays_the_first_response(
    client: TestClient, admin: dict[str, str]
) -> None:
    dataset = create_dataset(client, n=30)
    for body, idem in ((EXACT, "retry-exact"), (SMALL_SHK, "retry-shk")):
        first = _post(client, dataset["id"], body, admin, idem)
        assert first.status_code == 201, first.text
        spent = _budget(client, dataset["id"])["spent"]["epsilon"]
        second = _post(client, dataset["id"], body, admin, idem)
        assert second.status_code == 201
        assert second.json() == first.json()  # same release, same samples, same everything
        # Key order in the JSON body does not make it another request.
        reordered = dict(reversed(list(body.items())))
        third = _post(client, dataset["id"], reordered, admin, idem)
        assert third.status_code == 201 and third.json() == first.json()
        assert _budget(client, dataset["id"])["spent"]["epsilon"] == spent
    assert _budget(client, dataset["id"])["spent"]["epsilon"] == pytest.approx(1.5)
    assert len(ledger(client, dataset["id"])) == 2
    # Without a key, the same body is a new release.
    again = _post(client, dataset["id"], EXACT, admin)
    assert again.status_code == 201
    assert _budget(client, dataset["id"])["spent"]["epsilon"] == pytest.approx(2.0)


def test_same_key_with_another_body_is_idempotency_conflict(
    client: TestClient, admin: dict[str, str]
) -> None:
    dataset = create_dataset(client, n=30)
    other = create_dataset(client, n=30)
    first = _post(client, dataset["id"], EXACT, admin, "k1")
    assert first.status_code == 201
    for body, dataset_id in (
        ({**EXACT, "epsilon": 0.25}, dataset["id"]),
        ({**EXACT, "n_samples": 2}, dataset["id"]),
        ({**EXACT, "utility": {**QUANTILE, "q": 0.6}}, dataset["id"]),
        (EXACT, other["id"]),  # same body, another dataset
    ):
        problem = _problem(
            _post(client, dataset_id, body, admin, "k1"), 422, "idempotency_conflict"
        )
        assert problem["type"] == "/errors/idempotency_conflict"
    assert _budget(client, dataset["id"])["spent"]["epsilon"] == pytest.approx(0.5)
    assert _budget(client, other["id"])["spent"]["epsilon"] == 0.0
    assert len(ledger(client, dataset["id"])) == 1
    # The original request still replays.
    assert _post(client, dataset["id"], EXACT, admin, "k1").json() == first.json()


def test_idempotency_keys_are_scoped_per_api_key(client: TestClient, admin: dict[str, str]) -> None:
    dataset = create_dataset(client, n=30)
    a_id, alice = create_analyst(client, "alice")
    b_id, bob = create_analyst(client, "bob")
    grant(client, dataset["id"], a_id)
    grant(client, dataset["id"], b_id)
    from_alice = _post(client, dataset["id"], EXACT, alice, "shared-key")
    from_bob = _post(client, dataset["id"], EXACT, bob, "shared-key")
    with_other_body = _post(client, dataset["id"], {**EXACT, "epsilon": 0.1}, admin, "shared-key")
    assert from_alice.status_code == from_bob.status_code == with_other_body.status_code == 201
    ids = {r.json()["release_id"] for r in (from_alice, from_bob, with_other_body)}
    assert len(ids) == 3
    assert _budget(client, dataset["id"])["spent"]["epsilon"] == pytest.approx(1.1)
    # Bob's replay gives Bob's release, never Alice's.
    assert _post(client, dataset["id"], EXACT, bob, "shared-key").json() == from_bob.json()


def test_a_refusal_is_replayed_as_409(client: TestClient, admin: dict[str, str]) -> None:
    dataset = create_dataset(client, n=30)
    key_id, analyst = create_analyst(client)
    grant(client, dataset["id"], key_id, epsilon_cap=0.6)
    assert _post(client, dataset["id"], EXACT, analyst).status_code == 201
    refused = _post(client, dataset["id"], EXACT, analyst, "after-cap")
    _problem(refused, 409, "budget_exceeded")
    # The cap is raised, but a retry with the same key answers the first answer and runs nothing.
    grant(client, dataset["id"], key_id, epsilon_cap=5.0)
    replay = _post(client, dataset["id"], EXACT, analyst, "after-cap")
    _problem(replay, 409, "budget_exceeded")
    assert replay.json() == refused.json()
    assert _budget(client, dataset["id"])["spent"]["epsilon"] == pytest.approx(0.5)
    assert len(ledger(client, dataset["id"])) == 1
    # A new key is a new request, and it now fits.
    assert _post(client, dataset["id"], EXACT, analyst, "fresh").status_code == 201


def test_async_request_replays_the_same_job(client: TestClient, admin: dict[str, str]) -> None:
    dataset = create_dataset(client, n=30)
    body = {**EXACT, "async": True}
    first = _post(client, dataset["id"], body, admin, "job-key")
    assert first.status_code == 202, first.text
    second = _post(client, dataset["id"], body, admin, "job-key")
    assert second.status_code == 202 and second.json() == first.json()
    wait_job(client, first.json()["job_id"], admin)
    assert len(ledger(client, dataset["id"])) == 1
    assert _budget(client, dataset["id"])["spent"]["epsilon"] == pytest.approx(0.5)


# --------------------------------------------------------------------------- jobs


def test_async_release_runs_as_a_job(client: TestClient, admin: dict[str, str]) -> None:
    dataset = create_dataset(client, n=40)
    key_id, analyst = create_analyst(client)
    grant(client, dataset["id"], key_id)
    sync = _post(client, dataset["id"], SMALL_SHK, analyst)
    assert sync.status_code == 201, sync.text

    accepted = _post(client, dataset["id"], {**SMALL_SHK, "async": True}, analyst)
    assert accepted.status_code == 202, accepted.text
    assert set(accepted.json()) == {"job_id", "release_id"}
    job_id, release_id = accepted.json()["job_id"], accepted.json()["release_id"]
    # Charged before it runs (or at once): the budget already counts it.
    assert _budget(client, dataset["id"])["spent"]["epsilon"] == pytest.approx(2.0)

    job = wait_job(client, job_id, analyst)
    assert job["id"] == job_id
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0
    result = job["result"]
    assert set(result) == set(sync.json())
    assert result["release_id"] == release_id
    assert result["dataset_id"] == dataset["id"]
    assert len(result["samples"]) == 1 and len(result["samples"][0]) == 1
    assert 0 <= result["samples"][0][0] <= 100
    assert result["certificate"] == sync.json()["certificate"]  # public inputs only
    assert result["sampler"] == sync.json()["sampler"]
    assert result["charged"] == {"epsilon": 1.0, "delta": 0.0}
    assert job.get("error") is None

    stored = client.get(f"/v1/releases/{release_id}", headers=analyst).json()
    assert stored["samples"] == result["samples"]
    assert stored["certificate"] == result["certificate"]
    entry = next(e for e in ledger(client, dataset["id"]) if e["release_id"] == release_id)
    assert entry["status"] == "succeeded"
    # Admins see every job.
    assert client.get(f"/v1/jobs/{job_id}", headers=admin).json()["status"] == "succeeded"


def test_jobs_of_another_key_are_404(client: TestClient, admin: dict[str, str]) -> None:
    dataset = create_dataset(client, n=30)
    a_id, alice = create_analyst(client, "alice")
    b_id, bob = create_analyst(client, "bob")
    grant(client, dataset["id"], a_id)
    grant(client, dataset["id"], b_id)
    job_id = _post(client, dataset["id"], {**EXACT, "async": True}, alice).json()["job_id"]
    job = wait_job(client, job_id, alice)
    assert job["status"] == "succeeded"
    _problem(client.get(f"/v1/jobs/{job_id}", headers=bob), 404, "not_found")
    _problem(client.delete(f"/v1/jobs/{job_id}", headers=bob), 404, "not_found")
    _problem(client.get("/v1/jobs/job_nope", headers=alice), 404, "not_found")
    _problem(
        client.get(f"/v1/releases/{job['result']['release_id']}", headers=bob), 404, "not_found"
    )
    # Cancelling a finished job changes nothing.
    after = client.delete(f"/v1/jobs/{job_id}", headers=alice)
    assert after.status_code == 200 and after.json()["status"] == "succeeded"
    assert after.json()["result"] == job["result"]


@pytest.fixture
def one_slot(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(job_workers=1, job_queue=1))) as client:
        yield client


@pytest.fixture
def two_slots(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(job_workers=1, job_queue=2))) as client:
        yield client


def _cancel_andwait_job(client: TestClient, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    response = client.delete(f"/v1/jobs/{job_id}", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == job_id
    return wait_job(client, job_id, headers)


def test_cancel_a_running_job(client: TestClient, admin: dict[str, str]) -> None:
    dataset = create_dataset(client, n=30)
    key_id, analyst = create_analyst(client)
    grant(client, dataset["id"], key_id)
    accepted = _post(client, dataset["id"], LONG_SHK, analyst)
    assert accepted.status_code == 202, accepted.text
    job_id, release_id = accepted.json()["job_id"], accepted.json()["release_id"]
    try:
        running = wait_job(client, job_id, analyst, lambda j: j["status"] != "queued")
        assert running["status"] == "running", running
        assert 0.0 <= running["progress"] < 1.0
    finally:
        job = _cancel_andwait_job(client, job_id, analyst)
    assert job["status"] == "cancelled", job
    assert job.get("result") is None
    assert job["finished_at"] is not None
    [entry] = ledger(client, dataset["id"])
    assert entry["release_id"] == release_id
    assert entry["status"] == "cancelled"
    # The charge stands (fail closed) and no samples were stored.
    assert entry["charged"]["epsilon"] == 0.05
    assert _budget(client, dataset["id"])["spent"]["epsilon"] == pytest.approx(0.05)
    _problem(client.get(f"/v1/releases/{release_id}", headers=analyst), 404, "not_found")
    # Cancelling again is harmless.
    assert client.delete(f"/v1/jobs/{job_id}", headers=analyst).json()["status"] == "cancelled"


def test_cancel_a_queued_job(two_slots: TestClient, admin: dict[str, str]) -> None:
    client = two_slots
    dataset = create_dataset(client, n=30)
    running_id = _post(client, dataset["id"], LONG_SHK, admin).json()["job_id"]
    try:
        wait_job(client, running_id, admin, lambda j: j["status"] != "queued")
        queued = _post(client, dataset["id"], {**EXACT, "async": True}, admin)
        assert queued.status_code == 202, queued.text
        queued_id = queued.json()["job_id"]
        assert client.get(f"/v1/jobs/{queued_id}", headers=admin).json()["status"] == "queued"
        cancelled = client.delete(f"/v1/jobs/{queued_id}", headers=admin)
        assert cancelled.json()["status"] == "cancelled"  # at once: it never started
    finally:
        assert _cancel_andwait_job(client, running_id, admin)["status"] == "cancelled"
    assert wait_job(client, queued_id, admin)["status"] == "cancelled"
    deadline = time.monotonic() + WAIT_S
    while any(e["status"] == "running" for e in ledger(client, dataset["id"])):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    entries = ledger(client, dataset["id"])
    assert [e["status"] for e in entries] == ["cancelled", "cancelled"]
    assert _budget(client, dataset["id"])["spent"]["epsilon"] == pytest.approx(0.55)


def test_full_queue_is_429_and_charges_nothing(one_slot: TestClient, admin: dict[str, str]) -> None:
    client = one_slot
    dataset = create_dataset(client, n=30)
    key_id, analyst = create_analyst(client)
    grant(client, dataset["id"], key_id)
    long_job = _post(client, dataset["id"], LONG_SHK, admin)
    assert long_job.status_code == 202, long_job.text
    job_id = long_job.json()["job_id"]
    try:
        for body, headers, idem in (
            (EXACT, analyst, None),
            ({**EXACT, "async": True}, admin, None),
            (EXACT, analyst, "idem-during-overload"),
        ):
            response = _post(client, dataset["id"], body, headers, idem)
            problem = _problem(response, 429, "overloaded")
            assert problem["status"] == 429
            retry_after = response.headers.get("retry-after")
            assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1
        assert _budget(client, dataset["id"])["spent"]["epsilon"] == pytest.approx(0.05)
        assert len(ledger(client, dataset["id"])) == 1
        metrics = client.get("/metrics", headers=admin).text
        assert 'privflow_refusals_total{code="overloaded"} 3.0' in metrics
    finally:
        assert _cancel_andwait_job(client, job_id, admin)["status"] == "cancelled"
    # The slot is free again: the same request now runs, and the refused key was not used up.
    deadline = time.monotonic() + WAIT_S
    while True:
        response = _post(client, dataset["id"], EXACT, analyst, "idem-during-overload")
        if response.status_code != 429:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert response.status_code == 201, response.text
    assert _budget(client, dataset["id"])["spent"]["epsilon"] == pytest.approx(0.55)
