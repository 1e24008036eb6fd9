"""Concurrent releases never overspend, on real servers (ARCHITECTURE.md "Service").

The acceptance criterion: 40 parallel releases of ε = 0.5 on a budget of ε = 10 give exactly
20 x 201 and 20 x 409 ``budget_exceeded``, the dataset shows exactly ε = 10 spent and the
ledger exactly 20 entries; on SQLite with one process, on PostgreSQL with one process, and with
two processes sharing one PostgreSQL database. Per-analyst caps hold the same way.

Every burst is gated: the test holds the dataset's row (SQLite: the write lock) until all 40
requests have been sent, so all of them are in flight at once and reach the charge together;
``peak_in_flight == 40`` checks that from the client's side. The servers are the session's
shared ones (each test makes its own datasets and keys).
Releases use the exact mechanism (NumPy, milliseconds): its charge takes the same path as an
SHK release's, and it keeps the burst short on a small, shared CI machine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from tests.e2e.api import (
    ADMIN,
    EXACT_RELEASE,
    create_analyst,
    create_dataset,
    dataset,
    grant,
    ledger,
)
from tests.e2e.parallel import Call, DatasetLock, burst
from tests.e2e.server import ServerProcess

TOPOLOGIES = ["sqlite-1-process", "postgresql-1-process", "postgresql-2-processes"]
PARALLEL = 40  # below the job queue and the key's share (64 per process): no 429


@pytest.fixture(params=TOPOLOGIES)
def servers(request: pytest.FixtureRequest) -> list[ServerProcess]:
    """The processes a burst is split between (PostgreSQL: one or both of the shared pair)."""
    if request.param == "sqlite-1-process":
        return [request.getfixturevalue("sqlite_server")]
    pair: list[ServerProcess] = request.getfixturevalue("postgres_servers")
    return pair[:1] if request.param == "postgresql-1-process" else pair


def _spread(servers: list[ServerProcess], n: int) -> Iterator[ServerProcess]:
    """``n`` servers, taking turns (the requests are split evenly between the processes)."""
    return (servers[i % len(servers)] for i in range(n))


@pytest.mark.parametrize("budget_delta", [0.0, 1e-6])
def test_parallel_releases_spend_exactly_the_budget(
    servers: list[ServerProcess], budget_delta: float
) -> None:
    with servers[0].client() as admin:
        ds = create_dataset(admin, epsilon=10.0, delta=budget_delta)
        key_id, analyst = create_analyst(admin)
        grant(admin, ds["id"], key_id)
    path = f"/v1/datasets/{ds['id']}/samples"
    calls = [Call(s.base_url, path, EXACT_RELEASE, analyst) for s in _spread(servers, PARALLEL)]

    with DatasetLock(servers[0].database_url, ds["id"]) as lock:
        result = burst(calls, release=lock.release)

    assert result.peak_in_flight == PARALLEL
    assert result.statuses() == {201: 20, 409: 20}, [r.text for r in result.responses]
    assert result.codes() == {"budget_exceeded": 20}
    released = [r.json() for r in result.responses if r.status_code == 201]
    assert all(r["charged"] == {"epsilon": 0.5, "delta": 0.0} for r in released)
    assert len({r["release_id"] for r in released}) == 20
    for server in servers:  # every process reads the same budget and ledger
        with server.client() as client:
            budget = dataset(client, ds["id"])["budget"]
            assert budget["spent"] == {"epsilon": 10.0, "delta": 0.0}
            assert budget["remaining"] == {"epsilon": 0.0, "delta": budget_delta}
            entries = ledger(client, ds["id"])
            assert len(entries) == 20
            assert {e["release_id"] for e in entries} == {r["release_id"] for r in released}
            assert all(e["status"] == "succeeded" for e in entries)
            assert all(e["key_id"] == key_id for e in entries)
            assert sum(e["charged"]["epsilon"] for e in entries) == 10.0


def test_parallel_releases_respect_each_analysts_cap(servers: list[ServerProcess]) -> None:
    with servers[0].client() as admin:
        ds = create_dataset(admin, epsilon=10.0)
        analysts = [create_analyst(admin, name=f"analyst{i}") for i in range(2)]
        for key_id, _ in analysts:
            grant(admin, ds["id"], key_id, epsilon_cap=3.0)
    path = f"/v1/datasets/{ds['id']}/samples"
    owners = [key_id for key_id, _ in analysts for _ in range(20)]
    headers = [h for _, h in analysts for _ in range(20)]
    calls = [
        Call(s.base_url, path, EXACT_RELEASE, h)
        for s, h in zip(_spread(servers, PARALLEL), headers, strict=True)
    ]

    with DatasetLock(servers[0].database_url, ds["id"]) as lock:
        result = burst(calls, release=lock.release)

    assert result.peak_in_flight == PARALLEL
    per_analyst = Counter(
        (owner, r.status_code) for owner, r in zip(owners, result.responses, strict=True)
    )
    for key_id, _ in analysts:
        assert per_analyst[(key_id, 201)] == 6, per_analyst
        assert per_analyst[(key_id, 409)] == 14, per_analyst
    assert result.codes() == {"budget_exceeded": 28}
    with servers[-1].client() as client:
        assert dataset(client, ds["id"])["budget"]["spent"]["epsilon"] == 6.0
        entries = ledger(client, ds["id"])
        assert Counter(e["key_id"] for e in entries) == {key_id: 6 for key_id, _ in analysts}
        grants = client.get(f"/v1/datasets/{ds['id']}/grants", headers=ADMIN)
        assert grants.status_code == 200, grants.text
        spent = {g["key_id"]: g["spent"]["epsilon"] for g in grants.json()["items"]}
        assert spent == {key_id: 3.0 for key_id, _ in analysts}
