"""A missing system package stops the run with one line naming it (``tests/system_deps.py``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import system_deps


def _item(*fixtures: str, **params: object) -> pytest.Item:
    callspec = SimpleNamespace(params=params) if params else None
    return SimpleNamespace(fixturenames=list(fixtures), callspec=callspec)  # type: ignore[return-value]


def test_names_the_packages_the_selected_tests_lack(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(system_deps, "find_postgres_binaries", lambda: None)
    browser: list[Path] = []  # chromium on PATH: none, then one
    monkeypatch.setattr(system_deps, "find_chromium", lambda: browser[0] if browser else None)
    monkeypatch.setattr(system_deps, "DEJAVU_FONT", tmp_path / "DejaVuSans.ttf")

    assert system_deps.missing_packages([_item("tmp_path")]) == []
    assert system_deps.missing_packages([_item("postgres_url")]) == ["postgresql"]
    assert system_deps.missing_packages([_item(database_url="postgresql")]) == ["postgresql"]
    assert system_deps.missing_packages([_item(topology="postgresql-2-processes")]) == [
        "postgresql"
    ]
    assert system_deps.missing_packages([_item(database_url="sqlite")]) == []
    both = [_item("browser"), _item("postgres_server")]
    assert system_deps.missing_packages(both) == ["postgresql", "chromium", "fonts-dejavu-core"]

    browser.append(tmp_path / "chromium")
    (tmp_path / "DejaVuSans.ttf").touch()
    assert system_deps.missing_packages([_item("browser")]) == []
