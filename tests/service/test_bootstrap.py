"""The first admin key of an empty store (``service.bootstrap``): created only when the store has
no key and no ``PRIVFLOW_ADMIN_KEY`` is set, written to a 0600 file, never created twice."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.bootstrap import ADMIN_KEY_FILE_NAME, admin_key_path, banner, bootstrap_admin
from service.settings import MIN_SECRET_CHARS, Settings
from service.store.db import Store
from tests.service.conftest import ADMIN_KEY


def _store(settings: Settings) -> Store:
    store = Store(settings.database_url)
    store.migrate()
    return store


def test_an_empty_store_gets_one_admin_key_in_a_private_file(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'data' / 'privflow.db'}")
    (tmp_path / "data").mkdir()
    store = _store(settings)
    try:
        key = bootstrap_admin(settings, store)
        assert key is not None
        assert key.path == tmp_path / "data" / ADMIN_KEY_FILE_NAME  # beside the database
        assert key.path.read_text() == key.secret + "\n"
        assert stat.S_IMODE(key.path.stat().st_mode) == 0o600
        assert len(key.secret) >= MIN_SECRET_CHARS
        assert key.secret in banner(key) and str(key.path) in banner(key)

        assert bootstrap_admin(settings, store) is None  # a key exists now: never again
    finally:
        store.dispose()

    # The key is an admin key of the service that reads this store.
    with TestClient(create_app(settings.model_copy(update={"warm_on_startup": False}))) as app:
        answer = app.get("/v1/keys", headers={"Authorization": f"Bearer {key.secret}"})
        assert answer.status_code == 200, answer.text
        assert [item["role"] for item in answer.json()["items"]] == ["admin"]


def test_no_key_is_created_when_one_is_configured_or_stored(tmp_path: Path) -> None:
    configured = Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}", admin_key=ADMIN_KEY)
    store = _store(configured)
    try:
        assert bootstrap_admin(configured, store) is None
    finally:
        store.dispose()
    assert not (tmp_path / ADMIN_KEY_FILE_NAME).exists()

    # A store that already holds a key (here the configured one, registered at app start).
    with TestClient(create_app(configured.model_copy(update={"warm_on_startup": False}))):
        pass
    unset = Settings(database_url=configured.database_url)
    store = _store(unset)
    try:
        assert bootstrap_admin(unset, store) is None
    finally:
        store.dispose()
    assert not (tmp_path / ADMIN_KEY_FILE_NAME).exists()


def test_the_key_file_setting_and_a_stale_file(tmp_path: Path) -> None:
    target = tmp_path / "secrets" / "admin.key"
    target.parent.mkdir()
    target.write_text("an old key from a deleted store\n")
    target.chmod(0o644)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", admin_key_file=target)
    assert admin_key_path(settings) == target
    store = _store(settings)
    try:
        key = bootstrap_admin(settings, store)
    finally:
        store.dispose()
    assert key is not None and key.path == target
    assert target.read_text() == key.secret + "\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # replaced, not left world-readable


def test_default_path_for_postgresql_is_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(database_url="postgresql://privflow@db/privflow")
    assert admin_key_path(settings) == tmp_path.resolve() / ADMIN_KEY_FILE_NAME
