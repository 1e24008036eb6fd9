"""Flow and memory endpoints end to end through the app: results, reproducibility, jobs, errors."""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from dp_core.errors import NumericalFailure
from dp_core.flows import sinkhorn_memory
from dp_core.flows.base import RunDescription, RunResult
from service.actions.flows import flow_answer
from service.app import create_app
from service.settings import Settings
from tests.service.conftest import create_analyst


def _clouds(seed: int = 0, n: int = 40, m: int = 50) -> tuple[list[list[float]], list[list[float]]]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)).tolist(), (rng.normal(size=(m, 2)) + 1.5).tolist()


def _wait(client: TestClient, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def test_mmd_flow_decreases_mmd_and_is_reproducible(
    client: TestClient, admin: dict[str, str]
) -> None:
    source, target = _clouds()
    body = {"source": source, "target": target, "kernel": {"bandwidth": 1.0}, "steps": 60}
    first = client.post("/v1/flows/mmd", json={**body, "seed": 7}, headers=admin)
    assert first.status_code == 200, first.text
    result = first.json()
    trace = [row["mmd2"] for row in result["trace"]]
    assert result["trace"][0]["step"] == 0 and result["trace"][-1]["step"] == 60
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(trace))  # plain flow
    assert trace[-1] < 0.7 * trace[0]
    assert np.asarray(result["particles"]).shape == (40, 2)
    again = client.post("/v1/flows/mmd", json={**body, "seed": 7}, headers=admin).json()
    assert again["particles"] == result["particles"]  # bit for bit
    assert result["seed"] == 7
    noisy = client.post(
        "/v1/flows/mmd", json={**body, "seed": 7, "noise_level": 0.5}, headers=admin
    ).json()
    assert noisy["particles"] != result["particles"]
    unseeded = client.post("/v1/flows/mmd", json=body, headers=admin).json()
    assert isinstance(unseeded["seed"], int)  # the seed used is returned so a run can be replayed


def test_drmmd_flow_reports_its_metrics(client: TestClient, admin: dict[str, str]) -> None:
    source, target = _clouds(1)
    for lam in (0.01, "adaptive"):
        response = client.post(
            "/v1/flows/drmmd",
            json={"source": source, "target": target, "kernel": {"bandwidth": 1.0},
                  "steps": 40, "seed": 1, "lambda": lam},
            headers=admin,
        )  # fmt: skip
        assert response.status_code == 200, response.text
        trace = response.json()["trace"]
        assert {"drmmd", "mmd2", "lambda"} <= set(trace[-1])
        assert trace[-1]["drmmd"] < trace[0]["drmmd"]


def test_flow_inputs_are_validated(
    make_settings: Callable[..., Settings], admin: dict[str, str]
) -> None:
    with TestClient(create_app(make_settings(max_points=60))) as client:
        source, target = _clouds(n=40, m=50)
        cases = [
            ({"target": [[1.0, 2.0, 3.0]]}, 422, "target"),
            ({"source": [[0.0, 1.0], [2.0]]}, 422, "source[1]"),
            ({"kernel": {"bandwidth": -1.0}}, 422, "kernel.bandwidth"),
            ({"kernel": {"name": "cosine", "bandwidth": 1.0}}, 422, "kernel.name"),
            ({"steps": -1}, 422, "steps"),
            ({"source": [[float("nan"), 0.0]]}, 422, None),
        ]
        base = {"source": source[:5], "target": target[:5], "kernel": {"bandwidth": 1.0}}
        for change, status, field in cases:
            response = client.post(
                "/v1/flows/mmd",
                content=json.dumps({**base, **change}),
                headers={**admin, "content-type": "application/json"},
            )
            assert response.status_code == status, (change, response.text)
            problem = response.json()
            assert response.headers["content-type"].startswith("application/problem+json")
            if field is not None:
                assert field in [e["field"] for e in problem["errors"]], (change, problem)
        too_many = client.post(
            "/v1/flows/mmd",
            json={"source": source, "target": target, "kernel": {"bandwidth": 1.0}},
            headers=admin,
        )
        assert too_many.status_code == 413 and too_many.json()["code"] == "too_large"


def test_flow_job_and_idempotent_retry(client: TestClient, admin: dict[str, str]) -> None:
    source, target = _clouds(2)
    body = {"source": source, "target": target, "kernel": {"bandwidth": 1.0}, "steps": 30,
            "seed": 5}  # fmt: skip
    sync = client.post("/v1/flows/mmd", json=body, headers=admin).json()
    accepted = client.post("/v1/flows/mmd", json={**body, "async": True}, headers=admin)
    assert accepted.status_code == 202
    job = _wait(client, accepted.json()["job_id"], admin)
    assert job["status"] == "succeeded" and job["progress"] == 1.0
    assert job["result"]["particles"] == sync["particles"]
    headers = {**admin, "Idempotency-Key": "flow-1"}
    first = client.post("/v1/flows/mmd", json=body, headers=headers)
    second = client.post("/v1/flows/mmd", json=body, headers=headers)
    assert first.json() == second.json()  # the stored answer, timings included
    conflict = client.post("/v1/flows/mmd", json={**body, "steps": 31}, headers=headers)
    assert conflict.status_code == 422 and conflict.json()["code"] == "idempotency_conflict"


def test_memory_retrieves_the_pattern_a_noisy_query_came_from(
    client: TestClient, admin: dict[str, str]
) -> None:
    rng = np.random.default_rng(3)
    patterns = [{"points": (rng.normal(size=(15, 2)) + 5.0 * k).tolist()} for k in range(3)]
    created = client.post(
        "/v1/memories", json={"patterns": patterns, "blur": 0.5, "beta": 1.0}, headers=admin
    )
    assert created.status_code == 201, created.text
    memory_id = created.json()["memory_id"]
    assert created.json()["n_patterns"] == 3
    for k in range(3):
        noisy = np.asarray(patterns[k]["points"]) + rng.normal(scale=0.4, size=(15, 2))
        query = {"points": rng.permutation(noisy).tolist()}
        response = client.post(
            f"/v1/memories/{memory_id}/retrieve", json={"query": query, "steps": 8}, headers=admin
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["nearest_pattern"] == k
        assert abs(sum(result["weights"]) - 1.0) < 1e-9 and min(result["weights"]) >= 0
        energy = result["energy_trace"]
        assert len(energy) == 9 and all(b <= a + 1e-12 for a, b in itertools.pairwise(energy))
        assert np.argmin(result["divergences"]) == k
    _, analyst = create_analyst(client)
    other = client.post(
        f"/v1/memories/{memory_id}/retrieve", json={"query": {"points": [[0.0, 0.0]]}},
        headers=analyst,
    )  # fmt: skip
    assert other.status_code == 404
    wrong_dim = client.post(
        f"/v1/memories/{memory_id}/retrieve", json={"query": {"points": [[0.0]]}}, headers=admin
    )
    assert wrong_dim.status_code == 422
    assert wrong_dim.json()["errors"][0]["field"] == "query.points"
    bad_weights = client.post(
        "/v1/memories",
        json={"patterns": [{"points": [[0.0, 1.0]], "weights": [0.5, 0.5]}], "blur": 0.5},
        headers=admin,
    )
    assert bad_weights.status_code == 422
    assert bad_weights.json()["errors"][0]["field"] == "patterns[0].weights"


def test_muon_flow_dissipates_its_hamiltonian(client: TestClient, admin: dict[str, str]) -> None:
    task = {"kind": "student_teacher", "input_dim": 6, "n_train": 100, "data_seed": 2}
    body = {"task": task, "particles": 8, "steps": 60, "seed": 4, "step_size": 0.01}
    regularized = client.post("/v1/flows/muon", json=body, headers=admin)
    assert regularized.status_code == 200, regularized.text
    result = regularized.json()
    hamiltonian = [row["hamiltonian"] for row in result["trace"]]
    # (F 27): dH/dt = -N^-1 sum <O_eps(M_i), M_i> <= 0; at a small step the discrete H falls.
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(hamiltonian))
    assert result["trace"][-1]["loss"] < result["trace"][0]["loss"]
    assert np.asarray(result["particles"]).shape == (8, 3, 7)  # (N, hidden, input_dim + 1)
    again = client.post("/v1/flows/muon", json=body, headers=admin).json()
    assert again["particles"] == result["particles"]
    standard = client.post(
        "/v1/flows/muon", json={**body, "update": "newton_schulz"}, headers=admin
    ).json()
    assert standard["trace"][0]["loss"] == result["trace"][0]["loss"]  # same initial particles
    assert standard["particles"] != result["particles"]
    # A schema-valid but subnormal step makes γ = (1 - β)/η overflow: 422 naming the field
    # (found by the full fuzz run: the run's description held γ = inf, not encodable as JSON).
    tiny = client.post("/v1/flows/muon", json={**body, "step_size": 5e-324}, headers=admin)
    assert tiny.status_code == 422, tiny.text
    assert tiny.json()["errors"][0]["field"] == "step_size"


def test_flow_answers_refuse_non_finite_numbers() -> None:
    """JSON has no NaN: a result holding one fails inside the work (500), not while encoding."""
    description = RunDescription("mmd", 1, 1, 1, 0.1, 0.1, "given", {"gamma": math.inf})
    with pytest.raises(NumericalFailure):
        flow_answer(RunResult(np.zeros((1, 1)), None, description, []), 0.0)
    trace = [{"step": 0, "mmd2": math.nan}]
    finite = RunDescription("mmd", 1, 1, 1, 0.1, 0.1, "given", {"gamma": 1.0})
    with pytest.raises(NumericalFailure):
        flow_answer(RunResult(np.zeros((1, 1)), None, finite, trace), 0.0)
    with pytest.raises(NumericalFailure):
        flow_answer(RunResult(np.full((1, 1), math.inf), None, finite, []), 0.0)
    assert flow_answer(RunResult(np.zeros((1, 1)), None, finite, []), 0.0)["seed"] is None


def test_memory_creation_is_idempotent(client: TestClient, admin: dict[str, str]) -> None:
    body = {"patterns": [{"points": [[0.0, 0.0], [1.0, 1.0]]}], "blur": 0.5}
    headers = {**admin, "Idempotency-Key": "mem-1"}
    first = client.post("/v1/memories", json=body, headers=headers)
    second = client.post("/v1/memories", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()  # stored once: the same memory id
    other = client.post("/v1/memories", json={**body, "blur": 0.6}, headers=headers)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_conflict"
    fresh = client.post("/v1/memories", json=body, headers=admin)
    assert fresh.json()["memory_id"] != first.json()["memory_id"]


def test_memory_retrieval_reports_sinkhorn_convergence(
    client: TestClient, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every retrieval answers ``converged`` per pattern and ``warnings``. The solver's cap is
    not a request parameter, so the deliberately tiny cap is set in dp_core (before the memory
    is built: its stored self-potentials use it too) and must show up in both fields."""
    rng = np.random.default_rng(5)
    patterns = [{"points": (rng.normal(size=(12, 2)) + 4.0 * k).tolist()} for k in range(3)]
    query = {"query": {"points": rng.permutation(patterns[1]["points"]).tolist()}, "steps": 2}

    def retrieve() -> dict[str, Any]:
        body = {"patterns": patterns, "blur": 0.5}
        created = client.post("/v1/memories", json=body, headers=admin)
        assert created.status_code == 201, created.text
        memory_id = created.json()["memory_id"]
        answer = client.post(f"/v1/memories/{memory_id}/retrieve", json=query, headers=admin)
        assert answer.status_code == 200, answer.text
        return answer.json()

    converged = retrieve()
    assert converged["converged"] == [True, True, True]
    assert converged["warnings"] == []
    monkeypatch.setattr(sinkhorn_memory, "SINKHORN_MAX_ITER", 1)
    monkeypatch.setattr(sinkhorn_memory, "SINKHORN_NEWTON_STEPS", 0)
    capped = retrieve()
    assert capped["converged"] == [False, False, False]
    assert len(capped["warnings"]) == 3
    assert "did not converge for 3 of 3 patterns" in capped["warnings"][0]
    assert all(math.isfinite(s) for s in capped["divergences"])
