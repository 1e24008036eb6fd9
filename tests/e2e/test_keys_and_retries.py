"""Key revocation across processes, and idempotent retries, through real servers (API.md).

- A key revoked through one process is refused (401) at once by another process sharing the
  PostgreSQL database: keys are looked up on every request, nothing is cached.
- The same ``Idempotency-Key`` sent several times at once (to one process, or split between
  two), then again afterwards, gets the first response every time and charges once.
- A client that gives up waiting (read timeout, connection closed) does not stop its charged
  release: it finishes, and a retry with the same ``Idempotency-Key`` gets its samples.
"""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.api import (
    ADMIN,
    CHEAP_RELEASE,
    FIRST_RELEASE_TIMEOUT_S,
    QUANTILE,
    create_analyst,
    create_dataset,
    dataset,
    grant,
    ledger,
)
from tests.e2e.parallel import Call, burst
from tests.e2e.server import ServerProcess


def test_a_revoked_key_is_refused_at_once_by_another_process(
    postgres_servers: list[ServerProcess],
) -> None:
    first, second = postgres_servers
    with first.client() as one, second.client() as two:
        ds = create_dataset(one, epsilon=1.0)
        key_id, analyst = create_analyst(one)
        grant(one, ds["id"], key_id)
        assert two.get(f"/v1/datasets/{ds['id']}", headers=analyst).status_code == 200

        assert one.delete(f"/v1/keys/{key_id}", headers=ADMIN).status_code == 204

        for client in (two, one):
            refused = client.get(f"/v1/datasets/{ds['id']}", headers=analyst)
            assert refused.status_code == 401
            assert refused.json()["code"] == "unauthenticated"
            assert refused.headers["www-authenticate"] == "Bearer"
        release = two.post(f"/v1/datasets/{ds['id']}/samples", json=CHEAP_RELEASE, headers=analyst)
        assert release.status_code == 401
        assert release.json()["code"] == "unauthenticated"
        assert dataset(two, ds["id"])["budget"]["spent"] == {"epsilon": 0.0, "delta": 0.0}
        assert ledger(two, ds["id"]) == []
        keys = two.get("/v1/keys", headers=ADMIN).json()["items"]
        [revoked] = [k for k in keys if k["id"] == key_id]
        assert revoked["revoked_at"] is not None


@pytest.mark.parametrize("topology", ["sqlite-1-process", "postgresql-2-processes"])
def test_an_idempotent_retry_charges_once(request: pytest.FixtureRequest, topology: str) -> None:
    servers: list[ServerProcess] = (
        [request.getfixturevalue("sqlite_server")]
        if topology == "sqlite-1-process"
        else request.getfixturevalue("postgres_servers")
    )
    with servers[0].client() as admin:
        ds = create_dataset(admin, epsilon=10.0)
        key_id, analyst = create_analyst(admin)
        grant(admin, ds["id"], key_id)
    path = f"/v1/datasets/{ds['id']}/samples"
    headers = {**analyst, "Idempotency-Key": "retry-after-timeout-1"}
    # SHK: the retries arrive while the first request is still sampling, and wait for it
    urls = [servers[i % len(servers)].base_url for i in range(6)]
    calls = [Call(url, path, CHEAP_RELEASE, headers) for url in urls]

    concurrent = burst(calls, timeout=FIRST_RELEASE_TIMEOUT_S)

    assert concurrent.peak_in_flight == len(calls)
    assert concurrent.statuses() == {201: 6}, [r.text for r in concurrent.responses]
    first = concurrent.responses[0].json()
    assert all(r.json() == first for r in concurrent.responses)
    for server in servers:
        with server.client() as client:
            again = client.post(path, json=CHEAP_RELEASE, headers=headers)
            assert again.status_code == 201, again.text
            assert again.json() == first
            conflict = client.post(path, json={**CHEAP_RELEASE, "epsilon": 0.25}, headers=headers)
            assert conflict.status_code == 422
            assert conflict.json()["code"] == "idempotency_conflict"
    with servers[-1].client() as client:
        assert dataset(client, ds["id"])["budget"]["spent"] == {"epsilon": 0.5, "delta": 0.0}
        [entry] = ledger(client, ds["id"])
        assert entry["release_id"] == first["release_id"]
        assert entry["status"] == "succeeded"
        stored = client.get(f"/v1/releases/{first['release_id']}", headers=ADMIN)
        assert stored.status_code == 200
        assert stored.json()["samples"] == first["samples"]


def test_a_client_that_gives_up_still_gets_its_release_on_retry(
    sqlite_server: ServerProcess,
) -> None:
    with sqlite_server.client(timeout=FIRST_RELEASE_TIMEOUT_S) as client:
        ds = create_dataset(client, epsilon=10.0)
        key_id, analyst = create_analyst(client)
        grant(client, ds["id"], key_id)
        path = f"/v1/datasets/{ds['id']}/samples"
        headers = {**analyst, "Idempotency-Key": "gave-up-1"}
        # seconds, not a quarter of one: 8000 particles took 4.3 s on an idle 2-core machine
        # (1000 took 0.2-0.4 s once releases got faster, and the first request could finish)
        slow = {"utility": QUANTILE, "epsilon": 0.5, "sampler": {"particles": 8000}}

        with pytest.raises(httpx.ReadTimeout):
            client.post(path, json=slow, headers=headers, timeout=0.25)
        retry = client.post(path, json=slow, headers=headers)

        assert retry.status_code == 201, retry.text
        [entry] = ledger(client, ds["id"])
        assert entry["release_id"] == retry.json()["release_id"]
        assert entry["status"] == "succeeded"
        assert dataset(client, ds["id"])["budget"]["spent"] == {"epsilon": 0.5, "delta": 0.0}
