"""API keys and auth: 401/403, revocation at once, secrets shown once and stored as a hash."""

from __future__ import annotations

import hashlib
import math
import string
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from service.settings import Settings
from tests.service.conftest import ADMIN_KEY, auth, create_analyst, create_dataset, grant

URLSAFE = set(string.ascii_letters + string.digits + "-_")


def _problem(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"] == f"/errors/{code}"
    return body


def _common_prefix(values: list[str]) -> str:
    shortest = min(values, key=len)
    for i, char in enumerate(shortest):
        if any(v[i] != char for v in values):
            return shortest[:i]
    return shortest


def _sqlite_path(settings: Settings) -> Path:
    return Path(sa.engine.make_url(settings.database_url).database or "")


# --------------------------------------------------------------------------- authentication


def test_requests_without_a_valid_key_are_401(client: TestClient) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": f"Basic {ADMIN_KEY}"},
        {"Authorization": ADMIN_KEY},
        {"Authorization": f"Bearer {ADMIN_KEY}x"},
        {"Authorization": f"Bearer {ADMIN_KEY[:-1]}"},
        {"Authorization": "Bearer " + "a" * 5000},
    ):
        for method, path in (
            ("GET", "/v1/keys"),
            ("GET", "/v1/datasets"),
            ("POST", "/v1/keys"),
            ("GET", "/v1/jobs/job_x"),
            ("GET", "/v1/releases/rel_x"),
        ):
            response = client.request(
                method, path, headers=headers, json={"name": "k", "role": "analyst"}
            )
            _problem(response, 401, "unauthenticated")
            assert response.headers.get("www-authenticate", "").lower().startswith("bearer")


def test_bootstrap_admin_key_works(client: TestClient, admin: dict[str, str]) -> None:
    response = client.get("/v1/keys", headers=admin)
    assert response.status_code == 200
    [item] = response.json()["items"]
    assert item["role"] == "admin"


def test_revoked_key_is_refused_at_once(client: TestClient, admin: dict[str, str]) -> None:
    dataset = create_dataset(client, n=20)
    key_id, analyst = create_analyst(client)
    grant(client, dataset["id"], key_id)
    assert client.get(f"/v1/datasets/{dataset['id']}", headers=analyst).status_code == 200

    assert client.delete(f"/v1/keys/{key_id}", headers=admin).status_code == 204

    _problem(client.get(f"/v1/datasets/{dataset['id']}", headers=analyst), 401, "unauthenticated")
    _problem(client.get("/v1/datasets", headers=analyst), 401, "unauthenticated")
    release = client.post(
        f"/v1/datasets/{dataset['id']}/samples",
        json={"utility": {"family": "mode", "column": "city"}, "epsilon": 1.0, "method": "exact"},
        headers=analyst,
    )
    _problem(release, 401, "unauthenticated")
    budget = client.get(f"/v1/datasets/{dataset['id']}", headers=admin).json()["budget"]
    assert budget["spent"]["epsilon"] == 0.0

    # Revoking twice is fine, an unknown key is 404; the list shows when it was revoked.
    assert client.delete(f"/v1/keys/{key_id}", headers=admin).status_code == 204
    _problem(client.delete("/v1/keys/key_unknown", headers=admin), 404, "not_found")
    items = client.get("/v1/keys", headers=admin).json()["items"]
    revoked = next(k for k in items if k["id"] == key_id)
    assert revoked["revoked_at"] is not None


def test_revoked_admin_key_loses_admin_at_once(client: TestClient, admin: dict[str, str]) -> None:
    created = client.post("/v1/keys", json={"name": "ops", "role": "admin"}, headers=admin).json()
    second = auth(created["key"])
    assert client.get("/v1/keys", headers=second).status_code == 200
    assert client.delete(f"/v1/keys/{created['id']}", headers=admin).status_code == 204
    _problem(client.get("/v1/keys", headers=second), 401, "unauthenticated")
    _problem(
        client.post("/v1/keys", json={"name": "x", "role": "admin"}, headers=second),
        401,
        "unauthenticated",
    )


def test_analyst_is_forbidden_on_admin_routes(client: TestClient, admin: dict[str, str]) -> None:
    dataset = create_dataset(client, n=10)
    key_id, analyst = create_analyst(client)
    grant(client, dataset["id"], key_id)
    dataset_body = {
        "name": "x",
        "columns": [{"name": "a", "type": "float", "lower": 0, "upper": 1}],
        "records": [[0.5]],
        "budget": {"epsilon": 1.0},
    }
    for method, path, body in (
        ("POST", "/v1/keys", {"name": "mine", "role": "admin"}),
        ("POST", "/v1/keys", {"name": "mine", "role": "analyst"}),
        ("GET", "/v1/keys", None),
        ("DELETE", f"/v1/keys/{key_id}", None),
        ("DELETE", "/v1/keys/key_admin", None),
        ("POST", "/v1/datasets", dataset_body),
        ("POST", f"/v1/datasets/{dataset['id']}/grants", {"key_id": key_id, "epsilon_cap": 99}),
    ):
        _problem(client.request(method, path, json=body, headers=analyst), 403, "forbidden")
    # None of it happened: the analyst still works, one dataset, two keys, the cap unchanged.
    assert client.get("/v1/datasets", headers=analyst).status_code == 200
    assert len(client.get("/v1/datasets", headers=admin).json()["items"]) == 1
    assert len(client.get("/v1/keys", headers=admin).json()["items"]) == 2
    assert client.get("/v1/keys", headers=admin).status_code == 200


def test_analyst_without_grant_is_forbidden_on_the_dataset(
    client: TestClient, admin: dict[str, str]
) -> None:
    dataset = create_dataset(client, n=20)
    _, analyst = create_analyst(client)
    path = f"/v1/datasets/{dataset['id']}"
    _problem(client.get(path, headers=analyst), 403, "forbidden")
    _problem(client.get(f"{path}/ledger", headers=analyst), 403, "forbidden")
    release = client.post(
        f"{path}/samples",
        json={
            "utility": {"family": "quantile", "column": "age", "q": 0.5},
            "epsilon": 1.0,
            "method": "exact",
        },
        headers=analyst,
    )
    _problem(release, 403, "forbidden")
    assert client.get(f"{path}/ledger", headers=admin).json()["items"] == []
    assert client.get(path, headers=admin).json()["budget"]["spent"]["epsilon"] == 0.0
    # An unknown dataset is 404, not 403, for an analyst too.
    _problem(client.get("/v1/datasets/ds_nope", headers=analyst), 404, "not_found")


def test_analysts_list_only_granted_datasets(client: TestClient, admin: dict[str, str]) -> None:
    first = create_dataset(client, n=10)
    second = create_dataset(client, n=10)
    third = create_dataset(client, n=10)
    a_id, a_headers = create_analyst(client, "a")
    b_id, b_headers = create_analyst(client, "b")
    grant(client, second["id"], a_id)
    grant(client, first["id"], b_id)
    grant(client, third["id"], b_id)

    def ids(headers: dict[str, str]) -> list[str]:
        return [d["id"] for d in client.get("/v1/datasets", headers=headers).json()["items"]]

    assert ids(a_headers) == [second["id"]]
    assert ids(b_headers) == [first["id"], third["id"]]
    assert ids(admin) == [first["id"], second["id"], third["id"]]
    _, c_headers = create_analyst(client, "c")
    assert client.get("/v1/datasets", headers=c_headers).json() == {
        "items": [],
        "next_cursor": None,
    }


# --------------------------------------------------------------------------- keys resource


def test_create_key_shape_and_roles(client: TestClient, admin: dict[str, str]) -> None:
    response = client.post("/v1/keys", json={"name": "alice", "role": "analyst"}, headers=admin)
    assert response.status_code == 201
    body = response.json()
    assert set(body) >= {"id", "name", "role", "key"}
    assert body["name"] == "alice" and body["role"] == "analyst"
    assert body["key"] != body["id"]
    # The new key authenticates with its role.
    assert client.get("/v1/datasets", headers=auth(body["key"])).status_code == 200
    _problem(client.get("/v1/keys", headers=auth(body["key"])), 403, "forbidden")
    for bad in (
        {"name": "x", "role": "root"},
        {"name": "", "role": "analyst"},
        {"role": "analyst"},
        {"name": "x", "role": "analyst", "extra": 1},
    ):
        problem = _problem(client.post("/v1/keys", json=bad, headers=admin), 422, "invalid_request")
        assert problem["errors"]


def test_list_keys_never_returns_secrets_or_hashes(
    client: TestClient, admin: dict[str, str]
) -> None:
    secrets = [ADMIN_KEY]
    for i in range(3):
        created = client.post(
            "/v1/keys", json={"name": f"k{i}", "role": "analyst"}, headers=admin
        ).json()
        secrets.append(created["key"])
    response = client.get("/v1/keys", headers=admin)
    assert response.status_code == 200
    items = response.json()["items"]
    assert len(items) == 4
    hashes = [hashlib.sha256(s.encode()).hexdigest() for s in secrets]
    for item in items:
        assert set(item) <= {"id", "name", "role", "created_at", "revoked_at"}
        assert "key" not in item and "key_hash" not in item
    for value in secrets + hashes:
        assert value not in response.text
    # Paged listing exposes no secrets either.
    paged = client.get("/v1/keys", params={"limit": 1}, headers=admin)
    assert paged.json()["next_cursor"] is not None
    for value in secrets + hashes:
        assert value not in paged.text


def test_key_secrets_carry_at_least_128_random_bits(
    client: TestClient, admin: dict[str, str]
) -> None:
    secrets = [
        client.post("/v1/keys", json={"name": f"k{i}", "role": "analyst"}, headers=admin).json()[
            "key"
        ]
        for i in range(12)
    ]
    assert len(set(secrets)) == len(secrets)
    prefix = _common_prefix(secrets)
    for secret in secrets:
        random_part = secret[len(prefix) :]
        alphabet = URLSAFE if set(random_part) <= URLSAFE else set(map(chr, range(33, 127)))
        assert set(random_part) <= alphabet, secret
        bits = len(random_part) * math.log2(len(alphabet))
        assert bits >= 128, (secret, bits)
    # Across keys the characters after the common prefix are spread over the alphabet.
    seen = set("".join(s[len(prefix) :] for s in secrets))
    assert len(seen) >= 40


def test_database_stores_only_sha256_of_keys(
    make_settings: Callable[..., Settings],
) -> None:
    from service.app import create_app

    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        admin = auth(ADMIN_KEY)
        created = [
            client.post("/v1/keys", json={"name": f"k{i}", "role": role}, headers=admin).json()
            for i, role in enumerate(("analyst", "admin", "analyst"))
        ]
        create_dataset(client, n=5)
    secrets = {c["id"]: c["key"] for c in created}
    engine = sa.create_engine(settings.database_url)
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine)
        with engine.connect() as conn:
            key_rows = {r.id: r for r in conn.execute(sa.select(metadata.tables["keys"]))}
            dumped: list[str] = []
            for table in metadata.sorted_tables:
                for row in conn.execute(sa.select(table)):
                    for value in row:
                        if isinstance(value, bytes):
                            dumped.append(value.decode("latin-1"))
                        else:
                            dumped.append(str(value))
    finally:
        engine.dispose()
    assert set(metadata.tables["keys"].c.keys()) == {
        "seq",
        "id",
        "name",
        "role",
        "key_hash",
        "created_at",
        "revoked_at",
    }
    for key_id, secret in secrets.items():
        assert key_rows[key_id].key_hash == hashlib.sha256(secret.encode()).hexdigest()
    admin_hash = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()
    assert admin_hash in {r.key_hash for r in key_rows.values()}
    everything = "\n".join(dumped)
    for secret in [*secrets.values(), ADMIN_KEY]:
        assert secret not in everything
    # Nor anywhere in the raw database files (main file and write-ahead log).
    path = _sqlite_path(settings)
    raw = b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name))
    for secret in [*secrets.values(), ADMIN_KEY]:
        assert secret.encode() not in raw


def test_revoked_bootstrap_admin_stays_revoked_after_restart(
    make_settings: Callable[..., Settings],
) -> None:
    from service.app import create_app

    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        created = client.post(
            "/v1/keys", json={"name": "ops", "role": "admin"}, headers=auth(ADMIN_KEY)
        ).json()
        ops = auth(created["key"])
        bootstrap_id = next(
            k["id"]
            for k in client.get("/v1/keys", headers=ops).json()["items"]
            if k["id"] != created["id"]
        )
        assert client.delete(f"/v1/keys/{bootstrap_id}", headers=ops).status_code == 204
        _problem(client.get("/v1/keys", headers=auth(ADMIN_KEY)), 401, "unauthenticated")
    # A restart with the same PRIVFLOW_ADMIN_KEY does not bring the revoked key back.
    with TestClient(create_app(settings)) as client:
        _problem(client.get("/v1/keys", headers=auth(ADMIN_KEY)), 401, "unauthenticated")
        assert client.get("/v1/keys", headers=ops).status_code == 200
        assert len(client.get("/v1/keys", headers=ops).json()["items"]) == 2
