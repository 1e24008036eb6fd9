"""Routes of the dashboard: the page and a fixed list of static assets, with strict headers.

Assets are read from the package (``importlib.resources``) on first use and served from a
closed allow-list, so no path from the URL ever reaches the file system. Every answer carries a
Content-Security-Policy that allows only this origin (scripts, styles, images, API calls) and
forbids framing; the page itself is ``no-store`` because it is the sign-in surface.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from fastapi import APIRouter, Request, Response

from service.errors import ApiError

__all__ = ["ASSETS", "CONTENT_SECURITY_POLICY", "router"]

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
"""Only same-origin scripts, styles, images and requests; no inline script or style."""

ASSETS: dict[str, str] = {
    "dashboard.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "views.js": "text/javascript; charset=utf-8",
    "certificate.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
"""Every file of ``static/`` the dashboard serves, with its media type."""

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str


@cache
def _asset(folder: str, name: str, media_type: str) -> _Asset:
    body = files("service.dashboard").joinpath(folder, name).read_bytes()
    return _Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


@router.get("/dashboard")
async def page() -> Response:
    """The dashboard page (it asks for an API key before it reads anything)."""
    asset = _asset("templates", "index.html", "text/html; charset=utf-8")
    headers = {**_HEADERS, "Cache-Control": "no-store"}
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("/dashboard/static/{name}")
async def static(name: str, request: Request) -> Response:
    """One asset of :data:`ASSETS`; revalidated by ETag (304 when unchanged)."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise ApiError(404, "not_found", "No such dashboard asset.")
    asset = _asset("static", name, media_type)
    headers = {**_HEADERS, "Cache-Control": "no-cache", "ETag": asset.etag}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)
