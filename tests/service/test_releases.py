"""Private releases end to end: every family, certificates, charges, validation and visibility."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import create_analyst, grant

SMALL = {"particles": 64}
COLUMNS: list[dict[str, Any]] = [
    {"name": "x", "type": "float", "lower": 0, "upper": 10},
    {"name": "y", "type": "float", "lower": -5, "upper": 5},
    {"name": "label", "type": "category", "categories": ["no", "yes"]},
    {"name": "city", "type": "category", "categories": ["paris", "rome", "oslo"]},
]
BOX = {"x": (0.0, 10.0), "y": (-5.0, 5.0)}


def _records(n: int, shift: int = 0) -> list[list[Any]]:
    return [
        [
            float((3 * i + shift) % 11) * 10 / 11,
            float(((5 * i + shift) % 9) - 4),
            ["no", "yes"][(i + shift) % 2],
            ["paris", "rome", "oslo"][(i * i + shift) % 3],
        ]
        for i in range(n)
    ]


def _dataset(
    client: TestClient,
    admin: dict[str, str],
    *,
    n: int = 40,
    shift: int = 0,
    epsilon: float = 50.0,
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "name": "release-data",
        "columns": COLUMNS,
        "records": _records(n, shift),
        "budget": {"epsilon": epsilon, "delta": 1e-5},
        **extra,
    }
    response = client.post("/v1/datasets", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def _post(
    client: TestClient, dataset_id: str, body: dict[str, Any], headers: dict[str, str]
) -> Any:
    return client.post(f"/v1/datasets/{dataset_id}/samples", json=body, headers=headers)


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code
    return body


def _spent(client: TestClient, dataset_id: str, admin: dict[str, str]) -> float:
    return client.get(f"/v1/datasets/{dataset_id}", headers=admin).json()["budget"]["spent"][
        "epsilon"
    ]


def _check_certificate(
    cert: dict[str, Any],
    *,
    epsilon: float,
    delta: float,
    method: str,
    n_samples: int,
    neighbouring: str,
) -> None:
    for name in (
        "scope", "bound", "pure_dp", "approx_dp", "renyi", "per_sample", "flow_time",
        "n_samples", "inverse_temperature", "initialization", "neighbouring", "assumptions",
    ):  # fmt: skip
        assert name in cert, name
    assert cert["scope"] == ("mean_field" if method == "shk" else "exact")
    assert isinstance(cert["bound"], str) and cert["bound"]
    pure = cert["pure_dp"]["epsilon"]
    assert 0 < pure <= epsilon * (1 + 1e-9)
    approx = cert["approx_dp"]
    assert 0 < approx["epsilon"] <= pure * (1 + 1e-9)
    assert 0 < approx["delta"] < 1
    if delta > 0:
        assert approx["delta"] == pytest.approx(delta)
    assert cert["renyi"] and all(
        r["alpha"] > 1 and 0 <= r["epsilon"] <= pure * (1 + 1e-9) for r in cert["renyi"]
    )
    alphas = [r["alpha"] for r in cert["renyi"]]
    assert alphas == sorted(alphas)
    renyi_eps = [r["epsilon"] for r in cert["renyi"]]
    assert renyi_eps == sorted(renyi_eps)  # Rényi divergence grows with the order
    per = cert["per_sample"]["pure_dp"]["epsilon"]
    assert per == pytest.approx(pure / n_samples, rel=1e-9)
    assert cert["n_samples"] == n_samples
    assert cert["inverse_temperature"] > 0
    assert cert["neighbouring"] == neighbouring
    assert cert["assumptions"] and all(isinstance(a, str) and a for a in cert["assumptions"])
    if method == "shk":
        assert cert["initialization"] == "uniform"
        assert cert["flow_time"] > 0
    else:
        assert cert["flow_time"] in (None, 0)


def _check_release(
    response: Any,
    request: dict[str, Any],
    dataset: dict[str, Any],
    *,
    rows: int,
    width: int,
) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) >= {
        "release_id", "dataset_id", "samples", "certificate", "charged", "budget", "sampler",
    }  # fmt: skip
    assert body["release_id"].startswith("rel_")
    assert body["dataset_id"] == dataset["id"]
    samples = body["samples"]
    assert len(samples) == rows and all(len(s) == width for s in samples), samples
    method = request.get("method", "shk")
    _check_certificate(
        body["certificate"],
        epsilon=request["epsilon"],
        delta=request.get("delta", 0.0),
        method=method,
        n_samples=request.get("n_samples", 1),
        neighbouring=dataset["neighbouring"],
    )
    assert body["charged"]["epsilon"] == request["epsilon"]
    # The mechanisms are pure DP: the charge may take less delta than asked, never more.
    assert 0.0 <= body["charged"]["delta"] <= request.get("delta", 0.0)
    if method == "shk":
        sampler = body["sampler"]
        assert sampler["particles"] == request.get("sampler", {}).get("particles", 2000)
        assert isinstance(sampler["steps"], int) and sampler["steps"] >= 1
        assert 0 < sampler["step_size"] <= 1
        moves = request.get("sampler", {}).get("relaxation_moves")
        assert isinstance(sampler["relaxation_moves"], int) and sampler["relaxation_moves"] >= 0
        assert moves is None or sampler["relaxation_moves"] == moves
        low, high = sampler["relaxation_step_range"]
        assert 0 < low <= high
        assert "seed" not in sampler
    return body


def _inside(values: list[float], columns: list[str]) -> bool:
    return all(
        BOX[c][0] <= v <= BOX[c][1] and math.isfinite(v)
        for v, c in zip(values, columns, strict=True)
    )


# --------------------------------------------------------------------------- families


def test_every_family_end_to_end(client: TestClient, admin: dict[str, str]) -> None:
    dataset = _dataset(client, admin)
    spent = 0.0

    def run(request: dict[str, Any], rows: int, width: int) -> dict[str, Any]:
        nonlocal spent
        body = _check_release(
            _post(client, dataset["id"], request, admin), request, dataset, rows=rows, width=width
        )
        spent += request["epsilon"]
        assert body["budget"]["spent"]["epsilon"] == pytest.approx(spent)
        assert body["budget"]["remaining"]["epsilon"] == pytest.approx(50.0 - spent)
        assert _spent(client, dataset["id"], admin) == pytest.approx(spent)
        return body

    quantile = {"family": "quantile", "column": "y", "q": 0.25}
    for method in ("shk", "exact"):
        request = {"utility": quantile, "epsilon": 1.0, "method": method}
        if method == "shk":
            request["sampler"] = SMALL
        body = run(request, 1, 1)
        assert _inside(body["samples"][0], ["y"])
        if method == "exact":
            assert body["sampler"] is None

    relaxed = {**SMALL, "relaxation_moves": 7}
    body = run({"utility": quantile, "epsilon": 1.0, "sampler": relaxed}, 1, 1)
    assert body["sampler"]["relaxation_moves"] == 7

    mean2 = {"family": "mean", "columns": ["x", "y"], "clip": 3.0}
    body = run({"utility": mean2, "epsilon": 2.0, "sampler": SMALL}, 1, 2)
    assert _inside(body["samples"][0], ["x", "y"])
    body = run({"utility": mean2, "epsilon": 2.0, "n_samples": 2, "sampler": SMALL}, 2, 2)
    assert all(_inside(s, ["x", "y"]) for s in body["samples"])

    mean1 = {"family": "mean", "columns": ["x"], "clip": 2.0}
    body = run({"utility": mean1, "epsilon": 1.0, "method": "exact"}, 1, 1)
    assert _inside(body["samples"][0], ["x"])
    assert body["certificate"]["utility_form"] == "gradient_norm"  # the default form, named
    loss_form = {"family": "mean", "columns": ["x"], "form": "loss"}
    body = run({"utility": loss_form, "epsilon": 1.0, "sampler": SMALL}, 1, 1)
    assert body["certificate"]["utility_form"] == "loss"

    kmeans = {"family": "kmeans", "columns": ["x", "y"], "k": 2, "clip": 4.0}
    body = run({"utility": kmeans, "epsilon": 1.5, "sampler": SMALL}, 1, 4)
    assert _inside(body["samples"][0], ["x", "y", "x", "y"])
    assert body["certificate"]["utility_form"] == "loss"  # k-means' default (empty centres)

    linear = {"family": "linear_regression", "features": ["x"], "target": "y", "radius": 2.0}
    body = run({"utility": linear, "epsilon": 1.0, "delta": 1e-6, "sampler": SMALL}, 1, 1)
    assert math.hypot(*body["samples"][0]) <= 2.0 * (1 + 1e-6)

    logistic = {
        "family": "logistic_regression",
        "features": ["x", "y"],
        "label": "label",
        "radius": 1.5,
    }
    body = run({"utility": logistic, "epsilon": 1.0, "sampler": SMALL}, 1, 2)
    assert math.hypot(*body["samples"][0]) <= 1.5 * (1 + 1e-6)

    mode = {"family": "mode", "column": "city"}
    body = run({"utility": mode, "epsilon": 3.0, "n_samples": 3, "method": "exact"}, 3, 1)
    assert all(s[0] in ("paris", "rome", "oslo") for s in body["samples"])

    quantiles = run({"utility": quantile, "epsilon": 1.5, "n_samples": 3, "method": "exact"}, 3, 1)
    assert all(_inside(s, ["y"]) for s in quantiles["samples"])
    ledger = client.get(f"/v1/datasets/{dataset['id']}/ledger", headers=admin).json()["items"]
    assert len(ledger) == 12
    assert any(e["utility"] == {**loss_form, "clip": None} for e in ledger)  # the form is kept
    assert sum(e["charged"]["epsilon"] for e in ledger) == pytest.approx(spent)


def test_replace_one_neighbouring_is_certified(client: TestClient, admin: dict[str, str]) -> None:
    dataset = _dataset(client, admin, neighbouring="replace_one")
    request = {"utility": {"family": "mode", "column": "label"}, "epsilon": 1.0, "method": "exact"}
    body = _check_release(_post(client, dataset["id"], request, admin), request, dataset, rows=1,
                          width=1)  # fmt: skip
    assert body["certificate"]["neighbouring"] == "replace_one"


def test_response_depends_only_on_public_inputs(client: TestClient, admin: dict[str, str]) -> None:
    # Same public schema and size bound, different records (and a different private n).
    first = _dataset(client, admin, n=30, shift=0)
    second = _dataset(client, admin, n=55, shift=4)
    for request in (
        {"utility": {"family": "quantile", "column": "x", "q": 0.5}, "epsilon": 0.8,
         "sampler": SMALL},
        {"utility": {"family": "mean", "columns": ["x", "y"], "clip": 2.0}, "epsilon": 1.2,
         "delta": 1e-7, "sampler": {"particles": 48, "step_size": 0.02}},
        {"utility": {"family": "quantile", "column": "y", "q": 0.9}, "epsilon": 0.7,
         "method": "exact", "n_samples": 2},
    ):  # fmt: skip
        a = _post(client, first["id"], request, admin)
        b = _post(client, second["id"], request, admin)
        assert a.status_code == b.status_code == 201, (a.text, b.text)
        a_body, b_body = a.json(), b.json()
        assert a_body["certificate"] == b_body["certificate"]
        assert a_body["sampler"] == b_body["sampler"]
        assert a_body["charged"] == b_body["charged"]
        assert a_body["budget"] == b_body["budget"]  # both datasets spent the same so far
        assert set(a_body) == set(b_body)
        assert len(a_body["samples"]) == len(b_body["samples"])


def test_client_seed_is_refused(client: TestClient, admin: dict[str, str]) -> None:
    dataset = _dataset(client, admin)
    base = {"utility": {"family": "quantile", "column": "x", "q": 0.5}, "epsilon": 1.0}
    for change, field in (
        ({"seed": 7}, "seed"),
        ({"seed": 0}, "seed"),
        ({"seed": "abc"}, "seed"),
        ({"sampler": {"particles": 64, "seed": 7}}, "sampler.seed"),
        ({"sampler": {"seed": 0}}, "sampler.seed"),
    ):
        problem = _problem(
            _post(client, dataset["id"], {**base, **change}, admin), 422, "invalid_request"
        )
        assert field in [e["field"] for e in problem["errors"]], problem
    assert _spent(client, dataset["id"], admin) == 0.0
    assert client.get(f"/v1/datasets/{dataset['id']}/ledger", headers=admin).json()["items"] == []


def test_invalid_requests_name_the_field_and_charge_nothing(
    client: TestClient, admin: dict[str, str]
) -> None:
    dataset = _dataset(client, admin)
    quantile = {"family": "quantile", "column": "x", "q": 0.5}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"utility": {**quantile, "column": "nope"}}, "utility.column"),
        ({"utility": {**quantile, "column": "label"}}, "utility.column"),
        ({"utility": {**quantile, "q": 0.0}}, "utility.q"),
        ({"utility": {**quantile, "q": 1.0}}, "utility.q"),
        ({"utility": {**quantile, "q": -0.5}}, "utility.q"),
        ({"utility": {**quantile, "q": 1.5}}, "utility.q"),
        ({"utility": {"family": "mode", "column": "city"}, "method": "shk"}, "method"),
        ({"utility": {"family": "mode", "column": "city"}}, "method"),  # shk is the default
        ({"utility": {"family": "mode", "column": "x"}, "method": "exact"}, "utility.column"),
        (
            {"utility": {"family": "mean", "columns": ["x", "city"], "clip": 1}},
            "utility.columns[1]",
        ),
        ({"utility": {"family": "mean", "columns": ["x"], "clip": 0}}, "utility.clip"),
        ({"utility": {"family": "mean", "columns": ["x"], "form": "sum"}}, "utility.form"),
        ({"utility": {"family": "kmeans", "columns": ["x"], "k": 0, "clip": 1}}, "utility.k"),
        (
            {"utility": {"family": "logistic_regression", "features": ["x"], "label": "city",
                         "radius": 1}},
            "utility.label",
        ),
        ({"utility": {"family": "nope"}}, "utility"),
        ({"epsilon": 0}, "epsilon"),
        ({"epsilon": -1}, "epsilon"),
        ({"delta": 1.0}, "delta"),
        ({"n_samples": 0}, "n_samples"),
        ({"method": "magic"}, "method"),
        ({"sampler": {"particles": 1}}, "sampler.particles"),
        ({"sampler": {"step_size": 5.0}}, "sampler.step_size"),
        ({"sampler": {"relaxation_moves": -1}}, "sampler.relaxation_moves"),
        ({"sampler": {"relaxation_moves": 10_001}}, "sampler.relaxation_moves"),
        ({"sampler": {"relaxation_moves": 2.5}}, "sampler.relaxation_moves"),
        ({"extra": True}, "extra"),
        ({"epsilon": True}, "epsilon"),  # strict types: a boolean is not a number
        ({"epsilon": "1.0"}, "epsilon"),
        ({"async": "yes"}, "async"),
        ({"n_samples": 1.5}, "n_samples"),
    ]  # fmt: skip
    for change, field in cases:
        request = {"utility": quantile, "epsilon": 1.0, "sampler": SMALL, **change}
        problem = _problem(_post(client, dataset["id"], request, admin), 422, "invalid_request")
        assert field in [e["field"] for e in problem["errors"]], (change, problem)
    assert _spent(client, dataset["id"], admin) == 0.0
    assert client.get(f"/v1/datasets/{dataset['id']}/ledger", headers=admin).json()["items"] == []
    _problem(
        _post(client, "ds_nope", {"utility": quantile, "epsilon": 1.0}, admin), 404, "not_found"
    )


def test_exhausted_budget_is_409_and_ledger_unchanged(
    client: TestClient, admin: dict[str, str]
) -> None:
    dataset = _dataset(client, admin, epsilon=2.0)
    request = {"utility": {"family": "mode", "column": "city"}, "epsilon": 1.5, "method": "exact"}
    assert _post(client, dataset["id"], request, admin).status_code == 201
    ledger_before = client.get(f"/v1/datasets/{dataset['id']}/ledger", headers=admin).json()
    for _ in range(2):
        problem = _problem(_post(client, dataset["id"], request, admin), 409, "budget_exceeded")
        assert problem["status"] == 409 and problem["type"] == "/errors/budget_exceeded"
    assert client.get(f"/v1/datasets/{dataset['id']}/ledger", headers=admin).json() == (
        ledger_before
    )
    budget = client.get(f"/v1/datasets/{dataset['id']}", headers=admin).json()["budget"]
    assert budget["spent"]["epsilon"] == pytest.approx(1.5)
    assert budget["remaining"]["epsilon"] == pytest.approx(0.5)
    # A smaller request that fits is still admitted.
    assert _post(client, dataset["id"], {**request, "epsilon": 0.5}, admin).status_code == 201


def test_stored_release_and_ledger(client: TestClient, admin: dict[str, str]) -> None:
    dataset = _dataset(client, admin)
    a_id, alice = create_analyst(client, "alice")
    b_id, bob = create_analyst(client, "bob")
    grant(client, dataset["id"], a_id)
    grant(client, dataset["id"], b_id)
    utility = {"family": "quantile", "column": "x", "q": 0.5}
    alice_release = _post(
        client, dataset["id"], {"utility": utility, "epsilon": 1.0, "method": "exact"}, alice
    ).json()
    bob_release = _post(
        client,
        dataset["id"],
        {"utility": {"family": "mode", "column": "label"}, "epsilon": 0.5, "method": "exact"},
        bob,
    ).json()

    stored = client.get(f"/v1/releases/{alice_release['release_id']}", headers=alice)
    assert stored.status_code == 200
    for field in ("release_id", "dataset_id", "samples", "certificate", "charged", "sampler"):
        assert stored.json()[field] == alice_release[field], field
    # The admin may read it too; another analyst may not (404, not a hint that it exists).
    assert (
        client.get(f"/v1/releases/{alice_release['release_id']}", headers=admin).json()["samples"]
        == alice_release["samples"]
    )
    _problem(client.get(f"/v1/releases/{alice_release['release_id']}", headers=bob), 404,
             "not_found")  # fmt: skip
    _problem(client.get("/v1/releases/rel_nope", headers=admin), 404, "not_found")

    def ledger(headers: dict[str, str]) -> list[dict[str, Any]]:
        page = client.get(f"/v1/datasets/{dataset['id']}/ledger", headers=headers)
        assert page.status_code == 200
        return page.json()["items"]

    [alice_entry] = ledger(alice)
    [bob_entry] = ledger(bob)
    assert alice_entry["key_id"] == a_id and bob_entry["key_id"] == b_id
    assert [e["release_id"] for e in ledger(admin)] == [
        alice_release["release_id"],
        bob_release["release_id"],
    ]
    for entry, release in ((alice_entry, alice_release), (bob_entry, bob_release)):
        assert entry["release_id"] == release["release_id"]
        assert entry["status"] == "succeeded"
        assert entry["certificate"] == release["certificate"]
        assert entry["charged"] == release["charged"]
        assert entry["created_at"]
        assert "samples" not in entry
    assert alice_entry["utility"] == utility
