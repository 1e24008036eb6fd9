"""Small API.md helpers over plain httpx for end-to-end tests (admin key unless told).

Setup helpers (keys, datasets, grants) are the in-process tests' own, from
``tests/service/conftest.py``: they take any httpx client, a ``TestClient`` or a real one.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.server import ServerProcess
from tests.service.conftest import ADMIN_KEY, auth, create_analyst, create_dataset, grant

__all__ = [
    "ADMIN",
    "CHEAP_RELEASE",
    "EXACT_RELEASE",
    "FIRST_RELEASE_TIMEOUT_S",
    "QUANTILE",
    "auth",
    "create_analyst",
    "create_dataset",
    "dataset",
    "grant",
    "ledger",
    "warm_up",
]

ADMIN = auth(ADMIN_KEY)
QUANTILE = {"family": "quantile", "column": "age", "q": 0.5}
CHEAP_RELEASE: dict[str, Any] = {"utility": QUANTILE, "epsilon": 0.5, "sampler": {"particles": 64}}
"""An SHK release of a few hundred steps on 64 particles: about 0.1 s once kernels are loaded
(on an idle machine; the parallel Numba kernels slow down a lot when the cores are shared)."""
EXACT_RELEASE: dict[str, Any] = {"utility": QUANTILE, "epsilon": 0.5, "method": "exact"}
"""The exact continuous quantile (no grid): a sort and exact integer sampling, milliseconds."""
FIRST_RELEASE_TIMEOUT_S = 180.0
"""The first SHK release in a process loads (in a fresh checkout: compiles) the Numba kernels."""


def dataset(client: httpx.Client, dataset_id: str, headers: dict[str, str] = ADMIN) -> Any:
    response = client.get(f"/v1/datasets/{dataset_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def ledger(client: httpx.Client, dataset_id: str, headers: dict[str, str] = ADMIN) -> list[Any]:
    """Every ledger entry of the dataset the key may see (one page of up to 100)."""
    response = client.get(f"/v1/datasets/{dataset_id}/ledger", headers=headers)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next_cursor"] is None
    return list(page["items"])


def warm_up(server: ServerProcess, release: dict[str, Any] = CHEAP_RELEASE) -> None:
    """Run one release on a scratch dataset, so the process has imported (and, for SHK, loaded
    the kernels of) what a release needs."""
    with server.client(timeout=FIRST_RELEASE_TIMEOUT_S) as client:
        scratch = create_dataset(client, n=20, epsilon=1.0)
        response = client.post(f"/v1/datasets/{scratch['id']}/samples", json=release, headers=ADMIN)
        assert response.status_code == 201, response.text
