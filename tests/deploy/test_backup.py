"""The backup and restore procedures of docs/deploy.md, run for real.

PostgreSQL: ``pg_dump -Fc`` of a live store, ``pg_restore`` into an empty database, a new app on
the restored database: the ledger, the budget spent, the keys and the release are all there, and
the restored ledger still refuses what the budget cannot afford. SQLite: the online backup API
(what ``sqlite3 privflow.db ".backup ..."`` uses) copies a store in WAL mode consistently.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.postgres_server import PostgresServer

ADMIN_KEY = "pf_deploy_backup_admin_key_0123456789"
HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
RELEASE = {
    "utility": {"family": "quantile", "column": "age", "q": 0.5},
    "epsilon": 0.75,
    "method": "exact",
}


def _app(url: str) -> TestClient:
    return TestClient(
        create_app(Settings(warm_on_startup=False, database_url=url, admin_key=ADMIN_KEY))
    )


def _spend(client: TestClient) -> tuple[str, str]:
    """Register a dataset with epsilon 1 and spend 0.75 of it: (dataset id, release id)."""
    dataset = client.post(
        "/v1/datasets",
        json={
            "name": "ages",
            "columns": [{"name": "age", "type": "float", "lower": 0, "upper": 100}],
            "records": [[float(20 + i % 50)] for i in range(60)],
            "budget": {"epsilon": 1.0},
        },
        headers=HEADERS,
    )
    assert dataset.status_code == 201, dataset.text
    release = client.post(
        f"/v1/datasets/{dataset.json()['id']}/samples", json=RELEASE, headers=HEADERS
    )
    assert release.status_code == 201, release.text
    return dataset.json()["id"], release.json()["release_id"]


def _assert_restored(client: TestClient, dataset_id: str, release_id: str) -> None:
    dataset: dict[str, Any] = client.get(f"/v1/datasets/{dataset_id}", headers=HEADERS).json()
    assert dataset["budget"]["spent"]["epsilon"] == pytest.approx(0.75)
    ledger = client.get(f"/v1/datasets/{dataset_id}/ledger", headers=HEADERS).json()["items"]
    assert [entry["release_id"] for entry in ledger] == [release_id]
    assert ledger[0]["status"] == "succeeded"
    assert client.get(f"/v1/releases/{release_id}", headers=HEADERS).status_code == 200
    # The restored ledger still guards the budget: 0.75 more does not fit in the 0.25 left.
    refused = client.post(f"/v1/datasets/{dataset_id}/samples", json=RELEASE, headers=HEADERS)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "budget_exceeded"


def _client_program(server: PostgresServer, name: str) -> str:
    program = server.binaries.bindir / name
    if program.is_file():
        return str(program)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found beside the PostgreSQL server or on PATH", pytrace=False)
    return found


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def test_pg_dump_and_pg_restore_keep_the_ledger(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    with _app(postgres_url) as client:
        dataset_id, release_id = _spend(client)
        # A dump of the live store (pg_dump reads one consistent snapshot).
        dump = tmp_path / "privflow.dump"
        pg_dump = _client_program(postgres_server, "pg_dump")
        subprocess.run(
            [pg_dump, "-Fc", "-f", str(dump), _libpq(postgres_url)],
            check=True,
            capture_output=True,
            timeout=120,
        )
    restored_url = postgres_server.create_database()
    try:
        pg_restore = _client_program(postgres_server, "pg_restore")
        subprocess.run(
            [pg_restore, "--no-owner", "--exit-on-error", "-d", _libpq(restored_url), str(dump)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        with _app(restored_url) as client:
            _assert_restored(client, dataset_id, release_id)
    finally:
        postgres_server.drop_database(restored_url)


def test_sqlite_online_backup_keeps_the_ledger(tmp_path: Path) -> None:
    live = tmp_path / "live" / "privflow.db"
    copy = tmp_path / "backup" / "privflow.db"
    copy.parent.mkdir()
    with _app(f"sqlite:///{live}") as client:
        dataset_id, release_id = _spend(client)
        # While the app runs (WAL mode, recent writes maybe only in privflow.db-wal):
        source = sqlite3.connect(live)
        target = sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
    with _app(f"sqlite:///{copy}") as client:
        _assert_restored(client, dataset_id, release_id)
