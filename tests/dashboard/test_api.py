"""The API the dashboard reads: ``/v1/me``, dataset grants and the ledger's composition."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dp_core.privacy.accounting import zcdp_to_approx_dp
from service.actions.ledger import DEFAULT_DELTAS, MAX_DELTAS
from tests.dashboard.seed import COLUMNS, auth

MEDIAN = {"family": "quantile", "column": "age", "q": 0.5}


def _analyst(api: TestClient, admin: dict[str, str], name: str) -> tuple[str, dict[str, str]]:
    response = api.post("/v1/keys", json={"name": name, "role": "analyst"}, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()["id"], auth(response.json()["key"])


def _dataset(api: TestClient, admin: dict[str, str], **budget: Any) -> dict[str, Any]:
    accountant = budget.pop("accountant", "pure")
    body = {
        "name": "people",
        "columns": COLUMNS,
        "records": [[float((7 * i) % 101), "abc"[i % 3]] for i in range(120)],
        "budget": {"epsilon": 5.0, "delta": 0.0, **budget},
        "accountant": accountant,
    }
    response = api.post("/v1/datasets", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def _grant(
    api: TestClient, admin: dict[str, str], dataset_id: str, key_id: str, **caps: Any
) -> None:
    response = api.post(
        f"/v1/datasets/{dataset_id}/grants", json={"key_id": key_id, **caps}, headers=admin
    )
    assert response.status_code == 201, response.text


def _release(
    api: TestClient, headers: dict[str, str], dataset_id: str, epsilon: float, n_samples: int = 1
) -> dict[str, Any]:
    body = {"utility": MEDIAN, "epsilon": epsilon, "n_samples": n_samples, "method": "exact"}
    response = api.post(f"/v1/datasets/{dataset_id}/samples", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code
    return body


# --------------------------------------------------------------------------- /v1/me


def test_me_names_the_calling_key(api: TestClient, admin: dict[str, str]) -> None:
    assert api.get("/v1/me", headers=admin).json()["role"] == "admin"
    key_id, headers = _analyst(api, admin, "alice")
    me = api.get("/v1/me", headers=headers).json()
    assert me["id"] == key_id and me["name"] == "alice" and me["role"] == "analyst"
    assert "key" not in me  # the secret is shown once, at creation only
    _problem(api.get("/v1/me"), 401, "unauthenticated")
    api.delete(f"/v1/keys/{key_id}", headers=admin)
    _problem(api.get("/v1/me", headers=headers), 401, "unauthenticated")


# --------------------------------------------------------------------------- grants


def test_admin_sees_every_grant_with_caps_and_spend(api: TestClient, admin: dict[str, str]) -> None:
    dataset = _dataset(api, admin)
    alice, alice_headers = _analyst(api, admin, "alice")
    bob, _ = _analyst(api, admin, "bob")
    _grant(api, admin, dataset["id"], bob, epsilon_cap=1.0, delta_cap=1e-7)
    _grant(api, admin, dataset["id"], alice, epsilon_cap=2.0)
    _release(api, alice_headers, dataset["id"], 0.5)
    _release(api, alice_headers, dataset["id"], 0.25)

    page = api.get(f"/v1/datasets/{dataset['id']}/grants", headers=admin).json()
    assert page["next_cursor"] is None
    by_key = {g["key_id"]: g for g in page["items"]}
    assert [g["key_id"] for g in page["items"]] == [alice, bob]  # the keys' creation order
    assert by_key[alice]["epsilon_cap"] == 2.0 and by_key[alice]["delta_cap"] is None
    assert by_key[alice]["spent"] == {"epsilon": 0.75, "delta": 0.0}
    assert by_key[bob]["epsilon_cap"] == 1.0 and by_key[bob]["delta_cap"] == 1e-7
    assert by_key[bob]["spent"] == {"epsilon": 0.0, "delta": 0.0}
    assert all(g["dataset_id"] == dataset["id"] for g in page["items"])


def test_an_analyst_sees_only_its_own_grant(api: TestClient, admin: dict[str, str]) -> None:
    dataset = _dataset(api, admin)
    alice, alice_headers = _analyst(api, admin, "alice")
    bob, bob_headers = _analyst(api, admin, "bob")
    _, carol_headers = _analyst(api, admin, "carol")
    _grant(api, admin, dataset["id"], alice, epsilon_cap=2.0)
    _grant(api, admin, dataset["id"], bob)
    path = f"/v1/datasets/{dataset['id']}/grants"
    assert [g["key_id"] for g in api.get(path, headers=alice_headers).json()["items"]] == [alice]
    assert [g["key_id"] for g in api.get(path, headers=bob_headers).json()["items"]] == [bob]
    _problem(api.get(path, headers=carol_headers), 403, "forbidden")
    _problem(api.get("/v1/datasets/ds_nope/grants", headers=admin), 404, "not_found")
    _problem(api.get(path), 401, "unauthenticated")


def test_grants_paginate_by_cursor(api: TestClient, admin: dict[str, str]) -> None:
    dataset = _dataset(api, admin)
    ids = [_analyst(api, admin, f"analyst-{i}")[0] for i in range(5)]
    for key_id in reversed(ids):
        _grant(api, admin, dataset["id"], key_id)
    path = f"/v1/datasets/{dataset['id']}/grants"
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get(path, params=params, headers=admin).json()
        assert len(page["items"]) <= 2
        seen += [g["key_id"] for g in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    _problem(api.get(path, params={"cursor": "not-ours"}, headers=admin), 422, "invalid_request")
    _problem(api.get(path, params={"limit": 0}, headers=admin), 422, "invalid_request")


# --------------------------------------------------------------------------- composition


def test_composition_is_the_privacy_core_on_the_ledger_charges(
    api: TestClient, admin: dict[str, str]
) -> None:
    dataset = _dataset(api, admin, epsilon=5.0, delta=1e-6)
    alice, alice_headers = _analyst(api, admin, "alice")
    _grant(api, admin, dataset["id"], alice)
    epsilons = [(0.5, 1), (0.25, 2), (0.75, 1)]
    releases = [_release(api, alice_headers, dataset["id"], e, n) for e, n in epsilons]
    releases.append(_release(api, admin, dataset["id"], 0.1))
    charged = [0.5, 0.25, 0.75, 0.1]

    deltas = [1e-9, 1e-6, 1e-3]
    body = api.get(
        f"/v1/datasets/{dataset['id']}/composition",
        params={"deltas": ",".join(map(str, deltas))},
        headers=admin,
    ).json()
    # Each release is charged as one ε-bounded-range mechanism: ρ = ε²/8 (note (18)).
    rho = math.fsum(e * e / 8.0 for e in charged)
    assert body["charged"] == {"pure_epsilon": math.fsum(charged), "zcdp_rho": rho, "delta": 0.0}
    assert body["pure"] == [[d, math.fsum(charged)] for d in deltas]
    assert body["zcdp"] == [[d, zcdp_to_approx_dp(rho, d)] for d in deltas]
    certified = [r["certificate"] for r in releases]
    assert body["certified"] == {
        "pure_epsilon": math.fsum(c["pure_dp"]["epsilon"] for c in certified),
        "zcdp_rho": math.fsum(c["zcdp"]["rho"] for c in certified),
    }
    assert body["certified"]["zcdp_rho"] < rho  # two samples of 0.125 each: 2·0.125²/8
    assert body["budget"] == {"epsilon": 5.0, "delta": 1e-6}
    assert body["accountant"] == "pure"
    spent = api.get(f"/v1/datasets/{dataset['id']}", headers=admin).json()["budget"]["spent"]
    assert spent["epsilon"] == body["charged"]["pure_epsilon"]  # the pure accountant's spend
    # An analyst with a grant reads the same dataset-level composition.
    as_alice = api.get(
        f"/v1/datasets/{dataset['id']}/composition",
        params={"deltas": deltas},
        headers=alice_headers,
    ).json()
    assert as_alice == body


def test_union_accountant_spend_is_the_smaller_curve_at_the_budget_delta(
    api: TestClient, admin: dict[str, str]
) -> None:
    dataset = _dataset(api, admin, epsilon=3.0, delta=1e-5, accountant="union")
    for _ in range(20):
        _release(api, admin, dataset["id"], 0.1)
    body = api.get(f"/v1/datasets/{dataset['id']}/composition", headers=admin).json()
    at_budget = {d: (p, z) for (d, p), (_, z) in zip(body["pure"], body["zcdp"], strict=True)}
    pure, zcdp = at_budget[1e-5]
    assert zcdp < pure  # many small releases: the zCDP route (√k growth) is the tighter one
    spent = api.get(f"/v1/datasets/{dataset['id']}", headers=admin).json()["budget"]["spent"]
    # The store keeps running sums; the composition sums with math.fsum: equal up to rounding.
    assert spent["epsilon"] == pytest.approx(min(pure, zcdp), rel=1e-12)


def test_composition_default_grid_and_empty_ledger(api: TestClient, admin: dict[str, str]) -> None:
    with_delta = _dataset(api, admin, delta=2e-6)
    body = api.get(f"/v1/datasets/{with_delta['id']}/composition", headers=admin).json()
    assert [p[0] for p in body["pure"]] == sorted({*DEFAULT_DELTAS, 2e-6})
    assert [p[0] for p in body["zcdp"]] == [p[0] for p in body["pure"]]
    assert all(p[1] == 0.0 for p in body["pure"] + body["zcdp"])
    assert body["charged"] == {"pure_epsilon": 0.0, "zcdp_rho": 0.0, "delta": 0.0}
    pure_only = _dataset(api, admin)
    body = api.get(f"/v1/datasets/{pure_only['id']}/composition", headers=admin).json()
    assert [p[0] for p in body["pure"]] == list(DEFAULT_DELTAS)


@pytest.mark.parametrize(
    "deltas",
    [["0"], ["1"], ["-1e-6"], ["abc"], ["nan"], ["inf"], [",".join(["1e-6"] * (MAX_DELTAS + 1))]],
    ids=["zero", "one", "negative", "text", "nan", "inf", "too-many"],
)
def test_composition_refuses_bad_deltas(
    api: TestClient, admin: dict[str, str], deltas: list[str]
) -> None:
    dataset = _dataset(api, admin)
    response = api.get(
        f"/v1/datasets/{dataset['id']}/composition", params={"deltas": deltas}, headers=admin
    )
    assert _problem(response, 422, "invalid_request")["errors"][0]["field"] == "deltas"


def test_composition_needs_a_grant(api: TestClient, admin: dict[str, str]) -> None:
    dataset = _dataset(api, admin)
    _, headers = _analyst(api, admin, "mallory")
    path = f"/v1/datasets/{dataset['id']}/composition"
    _problem(api.get(path, headers=headers), 403, "forbidden")
    _problem(api.get("/v1/datasets/ds_nope/composition", headers=admin), 404, "not_found")
    _problem(api.get(path), 401, "unauthenticated")
