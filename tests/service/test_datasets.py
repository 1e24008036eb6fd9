"""Datasets and grants: shape, record validation, size limits, budgets, pagination, caps."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.service.conftest import ADMIN_KEY, auth, create_analyst, create_dataset, grant

# Distinctive private values: none of them may ever appear in a response.
SECRET_AGE = 42.4242421
SECRET_INCOME = 77777.123


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code and body["status"] == status
    return body


def _fields(problem: dict[str, Any]) -> list[str]:
    return [e["field"] for e in problem.get("errors", [])]


def _body(records: list[list[Any]], **extra: Any) -> dict[str, Any]:
    return {
        "name": "salaries",
        "columns": [
            {"name": "age", "type": "float", "lower": 18, "upper": 100},
            {"name": "city", "type": "category", "categories": ["a", "b", "c"]},
            {"name": "income", "type": "float", "lower": 0, "upper": 100000},
        ],
        "records": records,
        "budget": {"epsilon": 5.0, "delta": 1e-6},
        **extra,
    }


def _records(n: int) -> list[list[Any]]:
    rows: list[list[Any]] = [
        [18.0 + (i * 13) % 80, "abc"[i % 3], 1000.0 * (i % 50)] for i in range(n)
    ]
    rows[n // 2] = [SECRET_AGE, "b", SECRET_INCOME]
    return rows


def _release(client: TestClient, dataset_id: str, epsilon: float, headers: dict[str, str]) -> Any:
    return client.post(
        f"/v1/datasets/{dataset_id}/samples",
        json={
            "utility": {"family": "quantile", "column": "age", "q": 0.5},
            "epsilon": epsilon,
            "method": "exact",
        },
        headers=headers,
    )


def _dataset_count(client: TestClient) -> int:
    return len(client.get("/v1/datasets", headers=auth(ADMIN_KEY)).json()["items"])


# --------------------------------------------------------------------------- creation


def test_create_dataset_answers_201_with_the_documented_shape(
    client: TestClient, admin: dict[str, str]
) -> None:
    body = _body(_records(30), neighbouring="replace_one", size_bound=5000)
    response = client.post("/v1/datasets", json=body, headers=admin)
    assert response.status_code == 201, response.text
    out = response.json()
    assert set(out) >= {"id", "name", "n_records", "columns", "budget", "neighbouring"}
    assert isinstance(out["id"], str) and out["id"]
    assert out["name"] == "salaries"
    assert out["n_records"] == 30
    assert out["neighbouring"] == "replace_one"
    assert out["size_bound"] == 5000
    assert [c["name"] for c in out["columns"]] == ["age", "city", "income"]
    assert out["columns"][0] == {"name": "age", "type": "float", "lower": 18, "upper": 100}
    assert out["columns"][1]["categories"] == ["a", "b", "c"]
    budget = out["budget"]
    assert budget["epsilon"] == 5.0 and budget["delta"] == 1e-6
    assert budget["spent"] == {"epsilon": 0.0, "delta": 0.0}
    assert budget["remaining"] == {"epsilon": 5.0, "delta": 1e-6}
    assert "records" not in out
    # GET answers the same metadata.
    fetched = client.get(f"/v1/datasets/{out['id']}", headers=admin).json()
    assert fetched == out


def test_defaults_are_add_remove_and_a_million(client: TestClient, admin: dict[str, str]) -> None:
    out = client.post("/v1/datasets", json=_body(_records(5)), headers=admin).json()
    assert out["neighbouring"] == "add_remove"
    assert out["size_bound"] == 1_000_000


BAD_ROWS: list[tuple[list[Any], str]] = [
    ([17.9, "a", 1.0], "records[3][0]"),  # below lower
    ([100.5, "a", 1.0], "records[3][0]"),  # above upper
    ([50.0, "a", -0.01], "records[3][2]"),
    ([50.0, "d", 1.0], "records[3][1]"),  # unknown category
    ([50.0, 2, 1.0], "records[3][1]"),  # an index is not a category
    ([50.0, "A", 1.0], "records[3][1]"),
    (["fifty", "a", 1.0], "records[3][0]"),
    ([50.0, "a"], "records[3]"),  # too short
    ([50.0, "a", 1.0, 2.0], "records[3]"),  # too long
    ([True, "a", 1.0], "records[3][0]"),
    ([None, "a", 1.0], "records[3][0]"),
    # cells are checked in a worker thread, not by the request schema: shapes too
    ([[50.0], "a", 1.0], "records[3][0]"),  # a nested list
    ([{"v": 50.0}, "a", 1.0], "records[3][0]"),
    ([50.0, ["a"], 1.0], "records[3][1]"),
    ([10**400, "a", 1.0], "records[3][0]"),  # beyond the float range
    ({"age": 50.0}, "records[3]"),  # a row that is not a list
    ("50.0,a,1.0", "records[3]"),
    (None, "records[3]"),
]


def test_invalid_records_are_422_naming_row_and_column(
    client: TestClient, admin: dict[str, str]
) -> None:
    for row, field in BAD_ROWS:
        records: list[list[Any]] = [[20.0, "a", 1.0]] * 3 + [row] + [[30.0, "b", 2.0]] * 3
        problem = _problem(
            client.post("/v1/datasets", json=_body(records), headers=admin),
            422,
            "invalid_request",
        )
        # The bad cell (or row) is named, and only it.
        assert set(_fields(problem)) == {field}, (row, problem)
    assert _dataset_count(client) == 0


def test_every_bad_cell_is_named(client: TestClient, admin: dict[str, str]) -> None:
    records: list[list[Any]] = [[20.0, "a", 1.0] for _ in range(6)]
    records[1] = [101.0, "a", 1.0]
    records[4] = [20.0, "z", 1.0]
    records[5] = [20.0, "a", 100001.0]
    problem = _problem(
        client.post("/v1/datasets", json=_body(records), headers=admin), 422, "invalid_request"
    )
    assert set(_fields(problem)) == {"records[1][0]", "records[4][1]", "records[5][2]"}


def test_more_records_than_size_bound_is_422(client: TestClient, admin: dict[str, str]) -> None:
    problem = _problem(
        client.post("/v1/datasets", json=_body(_records(11), size_bound=10), headers=admin),
        422,
        "invalid_request",
    )
    assert set(_fields(problem)) & {"records", "size_bound"}
    ok = client.post("/v1/datasets", json=_body(_records(10), size_bound=10), headers=admin)
    assert ok.status_code == 201
    assert _dataset_count(client) == 1


SCHEMA_PROBLEMS: list[tuple[dict[str, Any], str]] = [
    ({"columns": [{"name": "a", "type": "float", "lower": 5, "upper": 1}]}, "columns[0]"),
    ({"columns": [{"name": "a", "type": "float", "lower": 0}]}, "columns[0].upper"),
    (
        {"columns": [{"name": "a", "type": "category", "categories": []}]},
        "columns[0].categories",
    ),
    ({"budget": {"epsilon": 0}}, "budget.epsilon"),
    ({"budget": {"epsilon": 1, "delta": 1.0}}, "budget.delta"),
    ({"neighbouring": "swap"}, "neighbouring"),
    ({"size_bound": 0}, "size_bound"),
    ({"records_extra": []}, "records_extra"),
]


def test_schema_problems_name_the_field(client: TestClient, admin: dict[str, str]) -> None:
    for change, field in SCHEMA_PROBLEMS:
        body = {
            "name": "x",
            "columns": [{"name": "a", "type": "float", "lower": 0, "upper": 1}],
            "records": [],
            "budget": {"epsilon": 1.0},
            **change,
        }
        problem = _problem(
            client.post("/v1/datasets", json=body, headers=admin), 422, "invalid_request"
        )
        assert field in _fields(problem), (change, problem)
    assert _dataset_count(client) == 0


@pytest.fixture
def small_client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(max_points=20, max_body_bytes=4096))) as client:
        yield client


def test_more_records_than_max_points_is_413(
    small_client: TestClient, admin: dict[str, str]
) -> None:
    records = [[20.0, "a", 1.0] for _ in range(21)]
    _problem(
        small_client.post("/v1/datasets", json=_body(records), headers=admin), 413, "too_large"
    )
    assert _dataset_count(small_client) == 0
    ok = small_client.post("/v1/datasets", json=_body(records[:20]), headers=admin)
    assert ok.status_code == 201, ok.text


def test_body_over_max_body_bytes_is_413(small_client: TestClient, admin: dict[str, str]) -> None:
    body = _body([[20.0, "a", 1.0]] * 10)
    body["name"] = "n" * 5000  # too large in bytes, not in records
    payload = json.dumps(body).encode()
    assert len(payload) > 4096
    headers = {**admin, "content-type": "application/json"}
    _problem(small_client.post("/v1/datasets", content=payload, headers=headers), 413, "too_large")

    # Without Content-Length (chunked), the limit holds while the body streams in.
    def chunks() -> Iterator[bytes]:
        for i in range(0, len(payload), 512):
            yield payload[i : i + 512]

    _problem(small_client.post("/v1/datasets", content=chunks(), headers=headers), 413, "too_large")
    assert _dataset_count(small_client) == 0


def test_records_never_appear_in_any_response(client: TestClient, admin: dict[str, str]) -> None:
    created = client.post("/v1/datasets", json=_body(_records(40)), headers=admin)
    dataset_id = created.json()["id"]
    key_id, analyst = create_analyst(client)
    grant(client, dataset_id, key_id)
    release = _release(client, dataset_id, 0.5, analyst)
    assert release.status_code == 201, release.text
    release_id = release.json()["release_id"]
    responses = [
        created,
        client.get(f"/v1/datasets/{dataset_id}", headers=admin),
        client.get(f"/v1/datasets/{dataset_id}", headers=analyst),
        client.get("/v1/datasets", headers=admin),
        client.get("/v1/datasets", headers=analyst),
        client.get(f"/v1/datasets/{dataset_id}/ledger", headers=admin),
        client.get(f"/v1/datasets/{dataset_id}/ledger", headers=analyst),
        release,
        client.get(f"/v1/releases/{release_id}", headers=analyst),
        client.post(f"/v1/datasets/{dataset_id}/grants", json={"key_id": key_id}, headers=admin),
    ]
    for response in responses:
        assert response.status_code in (200, 201), response.text
        text = response.text
        for value in ("42.4242421", "42.42424", "77777.123", "77777.12"):
            assert value not in text, (response.url, value)
        assert "records" not in response.json() if isinstance(response.json(), dict) else True


# --------------------------------------------------------------------------- budgets


def test_budget_arithmetic_after_releases(client: TestClient, admin: dict[str, str]) -> None:
    dataset = create_dataset(client, n=50, epsilon=3.0)
    path = f"/v1/datasets/{dataset['id']}"
    spent = 0.0
    for epsilon in (0.5, 1.25, 0.25):
        response = _release(client, dataset["id"], epsilon, admin)
        assert response.status_code == 201, response.text
        spent += epsilon
        budget = client.get(path, headers=admin).json()["budget"]
        assert budget["epsilon"] == 3.0
        assert budget["spent"]["epsilon"] == pytest.approx(spent, rel=1e-12)
        assert budget["remaining"]["epsilon"] == pytest.approx(3.0 - spent, rel=1e-12)
        assert budget["spent"]["epsilon"] + budget["remaining"]["epsilon"] == pytest.approx(3.0)
        assert response.json()["budget"]["spent"] == budget["spent"]
        assert response.json()["budget"]["remaining"] == budget["remaining"]
    # 2.0 spent, 1.0 left: 1.5 is refused, exactly 1.0 is admitted, then nothing more.
    _problem(_release(client, dataset["id"], 1.5, admin), 409, "budget_exceeded")
    assert _release(client, dataset["id"], 1.0, admin).status_code == 201
    budget = client.get(path, headers=admin).json()["budget"]
    assert budget["remaining"]["epsilon"] == pytest.approx(0.0, abs=1e-12)
    _problem(_release(client, dataset["id"], 0.01, admin), 409, "budget_exceeded")
    listed = client.get("/v1/datasets", headers=admin).json()["items"][0]["budget"]
    assert listed == client.get(path, headers=admin).json()["budget"]


# --------------------------------------------------------------------------- pagination


def _walk(client: TestClient, path: str, headers: dict[str, str], key: str) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        params: dict[str, Any] = {"limit": 1}
        if cursor is not None:
            params["cursor"] = cursor
        page = client.get(path, params=params, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        assert set(body) == {"items", "next_cursor"}
        assert len(body["items"]) <= 1
        seen.extend(item[key] for item in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("pagination never ended")


def test_pagination_walks_every_item_exactly_once(
    client: TestClient, admin: dict[str, str]
) -> None:
    created = [create_dataset(client, n=5)["id"] for _ in range(4)]
    for _ in range(3):
        create_analyst(client)
    for _ in range(3):
        assert _release(client, created[0], 0.1, admin).status_code == 201
    datasets = _walk(client, "/v1/datasets", admin, "id")
    assert datasets == created
    keys = _walk(client, "/v1/keys", admin, "id")
    assert len(keys) == 4 and len(set(keys)) == 4
    assert keys == [k["id"] for k in client.get("/v1/keys", headers=admin).json()["items"]]
    ledger = _walk(client, f"/v1/datasets/{created[0]}/ledger", admin, "release_id")
    assert len(ledger) == 3 and len(set(ledger)) == 3
    # A page exactly as long as the list has no next page.
    full = client.get("/v1/datasets", params={"limit": 4}, headers=admin).json()
    assert [d["id"] for d in full["items"]] == created and full["next_cursor"] is None
    two = client.get("/v1/datasets", params={"limit": 2}, headers=admin).json()
    rest = client.get(
        "/v1/datasets", params={"limit": 2, "cursor": two["next_cursor"]}, headers=admin
    ).json()
    assert [d["id"] for d in two["items"] + rest["items"]] == created


def test_bad_cursor_is_422_naming_cursor(client: TestClient, admin: dict[str, str]) -> None:
    dataset = create_dataset(client, n=5)
    issued = client.get("/v1/datasets", params={"limit": 1}, headers=admin).json()
    assert issued["next_cursor"] is None  # one dataset: no next page
    create_dataset(client, n=5)
    cursor = client.get("/v1/datasets", params={"limit": 1}, headers=admin).json()["next_cursor"]
    assert cursor
    for bad in ("garbage!", "zzzz", cursor + "=x", cursor + "A", "s1", "czE" * 60, "%%"):
        for path in ("/v1/datasets", "/v1/keys", f"/v1/datasets/{dataset['id']}/ledger"):
            response = client.get(path, params={"cursor": bad}, headers=admin)
            problem = _problem(response, 422, "invalid_request")
            assert _fields(problem) == ["cursor"], (bad, problem)
    # The issued cursor itself is fine.
    assert client.get("/v1/datasets", params={"cursor": cursor}, headers=admin).status_code == 200


def test_bad_limit_is_422_naming_limit(client: TestClient, admin: dict[str, str]) -> None:
    for limit in (0, -1, 1001, "x"):
        for path in ("/v1/datasets", "/v1/keys"):
            problem = _problem(
                client.get(path, params={"limit": limit}, headers=admin), 422, "invalid_request"
            )
            assert _fields(problem) == ["limit"]


# --------------------------------------------------------------------------- grants


def test_grant_shape_and_caps_enforced(client: TestClient, admin: dict[str, str]) -> None:
    dataset = create_dataset(client, n=50, epsilon=10.0)
    path = f"/v1/datasets/{dataset['id']}"
    key_id, analyst = create_analyst(client)
    response = client.post(
        f"{path}/grants", json={"key_id": key_id, "epsilon_cap": 1.5}, headers=admin
    )
    assert response.status_code == 201
    out = response.json()
    assert out["dataset_id"] == dataset["id"] and out["key_id"] == key_id
    assert out["epsilon_cap"] == 1.5 and out["delta_cap"] is None
    assert out["spent"] == {"epsilon": 0.0, "delta": 0.0}

    assert _release(client, dataset["id"], 1.0, analyst).status_code == 201
    ledger_before = client.get(f"{path}/ledger", headers=admin).json()["items"]
    refused = _problem(_release(client, dataset["id"], 1.0, analyst), 409, "budget_exceeded")
    assert "errors" not in refused
    # The dataset is untouched: its budget and ledger are as before the refusal.
    budget = client.get(path, headers=admin).json()["budget"]
    assert budget["spent"]["epsilon"] == pytest.approx(1.0)
    assert client.get(f"{path}/ledger", headers=admin).json()["items"] == ledger_before
    # The admin (no cap) can still spend from the same dataset; the analyst up to its cap.
    assert _release(client, dataset["id"], 2.0, admin).status_code == 201
    assert _release(client, dataset["id"], 0.5, analyst).status_code == 201
    _problem(_release(client, dataset["id"], 0.01, analyst), 409, "budget_exceeded")


def test_regrant_replaces_caps_and_keeps_spent(client: TestClient, admin: dict[str, str]) -> None:
    dataset = create_dataset(client, n=50, epsilon=10.0)
    path = f"/v1/datasets/{dataset['id']}"
    key_id, analyst = create_analyst(client)
    grant(client, dataset["id"], key_id, epsilon_cap=1.0)
    assert _release(client, dataset["id"], 1.0, analyst).status_code == 201
    _problem(_release(client, dataset["id"], 0.5, analyst), 409, "budget_exceeded")

    regrant = client.post(
        f"{path}/grants", json={"key_id": key_id, "epsilon_cap": 3.0}, headers=admin
    )
    assert regrant.status_code == 201
    assert regrant.json()["epsilon_cap"] == 3.0
    assert regrant.json()["spent"]["epsilon"] == pytest.approx(1.0)  # spent is kept
    assert _release(client, dataset["id"], 1.5, analyst).status_code == 201
    _problem(_release(client, dataset["id"], 0.6, analyst), 409, "budget_exceeded")

    # Lowering the cap below what was spent stops the analyst; removing it lifts the cap.
    lowered = client.post(
        f"{path}/grants", json={"key_id": key_id, "epsilon_cap": 0.5}, headers=admin
    ).json()
    assert lowered["spent"]["epsilon"] == pytest.approx(2.5)
    _problem(_release(client, dataset["id"], 0.1, analyst), 409, "budget_exceeded")
    uncapped = client.post(f"{path}/grants", json={"key_id": key_id}, headers=admin).json()
    assert uncapped["epsilon_cap"] is None
    assert uncapped["spent"]["epsilon"] == pytest.approx(2.5)
    assert _release(client, dataset["id"], 4.0, analyst).status_code == 201
    # ... but never past the dataset's remaining budget (10 - 6.5 = 3.5).
    _problem(_release(client, dataset["id"], 3.6, analyst), 409, "budget_exceeded")


def test_grant_to_unknown_or_revoked_key_is_422(client: TestClient, admin: dict[str, str]) -> None:
    dataset = create_dataset(client, n=5)
    path = f"/v1/datasets/{dataset['id']}/grants"
    problem = _problem(
        client.post(path, json={"key_id": "key_nope"}, headers=admin), 422, "invalid_request"
    )
    assert _fields(problem) == ["key_id"]
    key_id, _ = create_analyst(client)
    assert client.delete(f"/v1/keys/{key_id}", headers=admin).status_code == 204
    problem = _problem(
        client.post(path, json={"key_id": key_id}, headers=admin), 422, "invalid_request"
    )
    assert _fields(problem) == ["key_id"]
    problem = _problem(
        client.post(path, json={"key_id": key_id, "epsilon_cap": -1}, headers=admin),
        422,
        "invalid_request",
    )
    assert "epsilon_cap" in _fields(problem)


def test_grant_on_unknown_dataset_is_404(client: TestClient, admin: dict[str, str]) -> None:
    key_id, _ = create_analyst(client)
    _problem(
        client.post("/v1/datasets/ds_nope/grants", json={"key_id": key_id}, headers=admin),
        404,
        "not_found",
    )
    _problem(client.get("/v1/datasets/ds_nope", headers=admin), 404, "not_found")
    _problem(client.get("/v1/datasets/ds_nope/ledger", headers=admin), 404, "not_found")
