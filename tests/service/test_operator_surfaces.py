"""Operator-only surfaces (issue "Trust hardening", item 2; ARCHITECTURE.md privacy rule 3).

``/metrics`` needs an admin key (or the ``metrics_key`` scrape token, which opens nothing else):
anonymous callers get 401 and analysts 403. It carries no dataset id in any label value unless
the operator opts in (``metrics_dataset_labels``): the per-dataset series are otherwise summed
under ``dataset="all"``. ``/openapi.json``, ``/docs`` and ``/redoc`` answer 404 when
``openapi_enabled`` is off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from service.app import create_app
from service.settings import Settings
from tests.service.conftest import create_analyst, create_dataset, grant

EXACT = {"utility": {"family": "quantile", "column": "age", "q": 0.5}, "epsilon": 0.5}


def _release(client: TestClient, dataset_id: str, headers: dict[str, str]) -> None:
    response = client.post(
        f"/v1/datasets/{dataset_id}/samples", json={**EXACT, "method": "exact"}, headers=headers
    )
    assert response.status_code == 201, response.text


def _samples(text: str) -> list[Any]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def _value(text: str, name: str, **labels: str) -> float | None:
    for sample in _samples(text):
        if sample.name == name and sample.labels == labels:
            return float(sample.value)
    return None


def _label_values(text: str) -> set[str]:
    return {value for sample in _samples(text) for value in sample.labels.values()}


def _problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


def _two_datasets_with_releases(
    client: TestClient, admin: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    first = create_dataset(client, n=40, epsilon=2.0)["id"]
    second = create_dataset(client, n=40, epsilon=4.0)["id"]
    key_id, analyst = create_analyst(client)
    grant(client, first, key_id)
    _release(client, first, admin)
    _release(client, first, analyst)
    _release(client, second, admin)
    return [first, second], analyst


def test_metrics_need_an_admin_key(client: TestClient, admin: dict[str, str]) -> None:
    _, analyst = create_analyst(client)
    _problem(client.get("/metrics"), 401, "unauthenticated")
    assert client.get("/metrics").headers["www-authenticate"] == "Bearer"
    _problem(
        client.get("/metrics", headers={"Authorization": "Bearer nope"}), 401, "unauthenticated"
    )
    _problem(client.get("/metrics", headers=analyst), 403, "forbidden")
    response = client.get("/metrics", headers=admin)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert _value(response.text, "privflow_job_queue_depth") == 0.0
    # Refusals of /metrics itself are counted like any other.
    assert _value(response.text, "privflow_refusals_total", code="forbidden") == 1.0


def test_metrics_carry_no_dataset_id_by_default(client: TestClient, admin: dict[str, str]) -> None:
    dataset_ids, _ = _two_datasets_with_releases(client, admin)
    text = client.get("/metrics", headers=admin).text

    for dataset_id in dataset_ids:
        assert dataset_id not in text
    assert not {v for v in _label_values(text) if v.startswith("ds_")}
    assert "dataset" in {k for s in _samples(text) for k in s.labels}  # the label stays: "all"
    assert _value(text, "privflow_releases_total", dataset="all", method="exact") == 3.0
    assert _value(text, "privflow_epsilon_charged_total", dataset="all") == pytest.approx(1.5)
    assert _value(text, "privflow_budget_epsilon", dataset="all") == pytest.approx(6.0)
    assert _value(text, "privflow_budget_spent_epsilon", dataset="all") == pytest.approx(1.5)
    assert _value(text, "privflow_budget_remaining_epsilon", dataset="all") == pytest.approx(4.5)
    # The nearly-spent alert needs no dataset label: the smallest fraction left (first: 1/2).
    assert _value(text, "privflow_budget_min_remaining_fraction") == pytest.approx(0.5)


def test_dataset_labels_are_an_operator_opt_in(
    make_settings: Callable[..., Settings], admin: dict[str, str]
) -> None:
    with TestClient(create_app(make_settings(metrics_dataset_labels=True))) as client:
        (first, second), _ = _two_datasets_with_releases(client, admin)
        text = client.get("/metrics", headers=admin).text
    assert {first, second} <= _label_values(text)
    assert "all" not in _label_values(text)
    assert _value(text, "privflow_releases_total", dataset=first, method="exact") == 2.0
    assert _value(text, "privflow_releases_total", dataset=second, method="exact") == 1.0
    assert _value(text, "privflow_budget_remaining_epsilon", dataset=first) == pytest.approx(1.0)
    assert _value(text, "privflow_budget_epsilon", dataset=second) == pytest.approx(4.0)
    assert _value(text, "privflow_budget_min_remaining_fraction") == pytest.approx(0.5)


def test_the_scrape_token_opens_metrics_and_nothing_else(
    make_settings: Callable[..., Settings], admin: dict[str, str]
) -> None:
    token = "scrape-token-" + "0123456789" * 3
    with TestClient(create_app(make_settings(metrics_key=token))) as client:
        scraper = {"Authorization": f"Bearer {token}"}
        assert client.get("/metrics", headers=scraper).status_code == 200
        assert client.get("/metrics", headers=admin).status_code == 200
        _problem(
            client.get("/metrics", headers={"Authorization": f"Bearer {token}x"}),
            401,
            "unauthenticated",
        )
        _problem(client.get("/v1/datasets", headers=scraper), 401, "unauthenticated")
        _problem(client.get("/v1/me", headers=scraper), 401, "unauthenticated")
    with pytest.raises(ValidationError, match="at least 32 characters") as raised:
        make_settings(metrics_key="short-scrape-token")
    assert "short-scrape-token" not in str(raised.value)  # a secret is never echoed


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc"])
def test_the_openapi_document_can_be_switched_off(
    make_settings: Callable[..., Settings], path: str
) -> None:
    with TestClient(create_app(make_settings())) as client:
        assert client.get(path).status_code == 200
    with TestClient(create_app(make_settings(openapi_enabled=False))) as client:
        _problem(client.get(path), 404, "not_found")
        # The rest of the API is untouched, the Allow header of a 405 included.
        assert client.get("/healthz").status_code == 200
        wrong = client.post("/healthz")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"
