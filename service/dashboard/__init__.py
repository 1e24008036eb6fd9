"""The privacy-budget audit dashboard: one page at ``/dashboard`` and its static assets.

The page is plain HTML, CSS and JavaScript shipped as package data (``templates/``,
``static/``): no CDN, no external font, charts drawn as inline SVG. It holds no data of its own:
the browser signs in with an API key (kept in ``sessionStorage`` only) and calls the REST API
with it, so it shows exactly what that key may read. See ``docs/dashboard.md``.
"""

from service.dashboard.router import router

__all__ = ["router"]
