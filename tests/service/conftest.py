"""Fixtures for service tests: an app on a throwaway SQLite store, keys and a seeded dataset.

``make_settings`` builds settings on a fresh SQLite file under ``tmp_path`` with a known
bootstrap admin key and kernel warm-up off (kernels compile on first use instead).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

ADMIN_KEY = "pf_test_admin_key_0123456789abcdef"
QUANTILE = {"family": "quantile", "column": "age", "q": 0.5}
EXACT = {"utility": QUANTILE, "epsilon": 0.5, "method": "exact"}
SMALL_SHK = {"utility": QUANTILE, "epsilon": 1.0, "sampler": {"particles": 64}}
"""Release bodies over the seeded dataset's ``age`` column, shared by the service tests."""
TERMINAL = ("succeeded", "failed", "cancelled")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "warm_on_startup": False,
            "database_url": f"sqlite:///{tmp_path / 'privflow.db'}",
            "admin_key": ADMIN_KEY,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings())) as test_client:
        yield test_client


@pytest.fixture
def admin() -> dict[str, str]:
    return auth(ADMIN_KEY)


def create_analyst(client: TestClient, name: str = "analyst") -> tuple[str, dict[str, str]]:
    """A new analyst key: (key id, auth headers)."""
    response = client.post(
        "/v1/keys", json={"name": name, "role": "analyst"}, headers=auth(ADMIN_KEY)
    )
    assert response.status_code == 201, response.text
    return response.json()["id"], auth(response.json()["key"])


def create_dataset(
    client: TestClient, *, n: int = 200, epsilon: float = 10.0, delta: float = 0.0, **extra: Any
) -> dict[str, Any]:
    """A dataset with a float column ``age`` in [0, 100] and a category column ``city``."""
    body = {
        "name": "people",
        "columns": [
            {"name": "age", "type": "float", "lower": 0, "upper": 100},
            {"name": "city", "type": "category", "categories": ["a", "b", "c"]},
        ],
        "records": [[float((7 * i) % 101), "abc"[i % 3]] for i in range(n)],
        "budget": {"epsilon": epsilon, "delta": delta},
        **extra,
    }
    response = client.post("/v1/datasets", json=body, headers=auth(ADMIN_KEY))
    assert response.status_code == 201, response.text
    return response.json()


def grant(client: TestClient, dataset_id: str, key_id: str, **caps: float | None) -> None:
    response = client.post(
        f"/v1/datasets/{dataset_id}/grants",
        json={"key_id": key_id, **caps},
        headers=auth(ADMIN_KEY),
    )
    assert response.status_code == 201, response.text


def ledger(client: TestClient, dataset_id: str) -> list[dict[str, Any]]:
    """A dataset's ledger entries as the admin reads them (first page)."""
    page = client.get(f"/v1/datasets/{dataset_id}/ledger", headers=auth(ADMIN_KEY))
    assert page.status_code == 200, page.text
    return page.json()["items"]


def wait_job(
    client: TestClient,
    job_id: str,
    headers: dict[str, str],
    until: Callable[[dict[str, Any]], bool] = lambda job: job["status"] in TERMINAL,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """Poll ``GET /v1/jobs/{id}`` until ``until(job)`` (default: a terminal status)."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/jobs/{job_id}", headers=headers)
        assert response.status_code == 200, response.text
        job = response.json()
        if until(job):
            return job
        assert time.monotonic() < deadline, f"job never reached the state: {job}"
        time.sleep(0.05)
