"""System packages the test suite needs, and the one-line refusal when one is missing.

Two groups of tests drive programs that pip cannot install: the PostgreSQL store tests start
throwaway clusters with the server binaries (``initdb``, ``pg_ctl``, ``postgres``; Debian package
``postgresql``), and the dashboard tests drive the system Chromium (``chromium``, with
``fonts-dejavu-core`` for the glyphs the page uses). ``.ci/run`` installs them with apt where it
can. When the selected tests need one that is missing, :func:`missing_packages` names it and
``tests/conftest.py`` stops the run before any test with a single usage error, rather than
skipping those tests silently or failing each of them with the same long error.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.postgres_server import find_postgres_binaries

__all__ = ["DEJAVU_FONT", "find_chromium", "missing_packages", "needs_browser", "needs_postgres"]
DEJAVU_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
"""A file of Debian's fonts-dejavu-core."""
_POSTGRES_FIXTURES = {"postgres_server", "postgres_url", "postgres_servers"}


def find_chromium() -> Path | None:
    """The browser tests/dashboard launches: ``chromium`` on PATH (Debian's package), or None."""
    found = shutil.which("chromium")
    return None if found is None else Path(found)


def needs_postgres(item: pytest.Item) -> bool:
    """Whether the test starts PostgreSQL: through a fixture, or a parameter that picks it
    (``database_url[postgresql]``, ``topology`` ``postgresql-2-processes``, ...)."""
    if _POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    return any(isinstance(v, str) and v.startswith("postgres") for v in params)


def needs_browser(item: pytest.Item) -> bool:
    """Whether the test drives Chromium (the dashboard's ``browser`` fixture)."""
    return "browser" in getattr(item, "fixturenames", ())


def missing_packages(items: Iterable[pytest.Item]) -> list[str]:
    """The Debian packages the selected tests need and this machine lacks, e.g.
    ``["postgresql", "chromium"]``."""
    items = list(items)
    missing: list[str] = []
    if any(needs_postgres(i) for i in items) and find_postgres_binaries() is None:
        missing.append("postgresql")
    if any(needs_browser(i) for i in items):
        if find_chromium() is None:
            missing.append("chromium")
        if not DEJAVU_FONT.exists():
            missing.append("fonts-dejavu-core")
    return missing
