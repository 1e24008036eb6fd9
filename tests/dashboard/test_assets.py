"""The dashboard's page and assets: served by the app, strict headers, shipped as package data."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from fastapi.testclient import TestClient

from service.dashboard.router import ASSETS

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "service" / "dashboard"
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def _shipped_files() -> list[Path]:
    return sorted(
        p
        for folder in ("templates", "static")
        for p in (PACKAGE / folder).rglob("*")
        if p.is_file()
    )


def test_page_is_served_with_a_strict_policy(api: TestClient) -> None:
    response = api.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "connect-src 'self'"):
        assert directive in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/dashboard/static/app.js">' in response.text


def test_every_asset_is_listed_served_and_revalidated(api: TestClient) -> None:
    assert {p.name for p in (PACKAGE / "static").iterdir() if p.is_file()} == set(ASSETS)
    for name, media_type in ASSETS.items():
        response = api.get(f"/dashboard/static/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == media_type
        assert response.content == (PACKAGE / "static" / name).read_bytes()
        etag = response.headers["etag"]
        again = api.get(f"/dashboard/static/{name}", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""


def test_anything_else_under_static_is_a_problem(api: TestClient) -> None:
    for path in ("nope.js", "..%2F__init__.py", "%2E%2E%2Frouter.py", "index.html"):
        response = api.get(f"/dashboard/static/{path}")
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "not_found"


def test_nothing_is_loaded_from_another_origin() -> None:
    for path in _shipped_files():
        text = path.read_text()
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text))
        assert urls <= {SVG_NAMESPACE}, (path.name, urls)
        assert "@import" not in text, path.name


def test_scripts_never_write_markup() -> None:
    """API values reach the page as text nodes only (no innerHTML, no document.write, no eval)."""
    for path in (PACKAGE / "static").glob("*.js"):
        text = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, (path.name, sink)


def test_package_data_ships_every_asset() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["service.dashboard"]
    for path in _shipped_files():
        relative = path.relative_to(PACKAGE).as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative


def test_the_page_is_not_part_of_the_api_document(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/dashboard")]
    for added in (
        "/v1/me",
        "/v1/datasets/{dataset_id}/grants",
        "/v1/datasets/{dataset_id}/composition",
    ):
        assert "get" in paths[added], added
