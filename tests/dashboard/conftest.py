"""Fixtures of the dashboard tests: an in-process app, a real seeded server and Chromium.

``api`` is a TestClient over ``create_app`` on a fresh SQLite file (kernel warm-up off).
``live`` is a real ``privflow serve`` subprocess on a free loopback port, seeded once per
module by :func:`tests.dashboard.seed.seed`. ``browser`` is Debian's Chromium driven by
Playwright (``executable_path`` = ``chromium`` on PATH; Playwright's own browser downloads are not
used). Without Chromium the browser tests fail (``.ci/run`` installs it). Both
are module-scoped, so the server and Playwright's event loop are gone before other tests run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.dashboard.seed import ADMIN_KEY, Seeded, Server, auth, seed, start_server
from tests.system_deps import find_chromium

CHROMIUM_ARGS = [
    "--no-sandbox",  # tests run as root in CI
    "--disable-gpu",
    "--disable-background-networking",  # the machine has no network: no update or sync calls
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        warm_on_startup=False,
        database_url=f"sqlite:///{tmp_path / 'privflow.db'}",
        admin_key=ADMIN_KEY,
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def admin() -> dict[str, str]:
    return auth(ADMIN_KEY)


@dataclass
class Live:
    """The seeded server: its URL and what :func:`seed` created."""

    server: Server
    seeded: Seeded

    @property
    def url(self) -> str:
        return self.server.base_url


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    server = start_server(tmp_path_factory.mktemp("dashboard-server"))
    try:
        yield Live(server, seed(server.base_url))
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = find_chromium()
    if executable is None:
        message = (
            "chromium not found on PATH. Install Debian's chromium (.ci/run does: apt-get "
            "install chromium)."
        )
        pytest.fail(message, pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Tab:
    """One page in a fresh browser context, with every console error and page error seen."""

    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def open_tab(browser: Any, live: Live) -> Iterator[Any]:
    """``open_tab(width=1280, height=900)``: a new tab (own sessionStorage) on the dashboard."""
    contexts: list[Any] = []

    def open_(width: int = 1280, height: int = 900) -> Tab:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        tab = Tab(page)
        page.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: tab.errors.append(f"page error: {e}"))
        page.on("request", lambda r: tab.requests.append(r.url))
        page.goto(f"{live.url}/dashboard")
        return tab

    yield open_
    for context in contexts:
        context.close()
