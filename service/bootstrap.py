"""The first admin key of a fresh store, for ``privflow serve`` started without one.

When the store has no API key at all and ``PRIVFLOW_ADMIN_KEY`` is not set, nobody could ever
authenticate. :func:`bootstrap_admin` then creates an admin key, writes it to a file only the
user can read (mode 0600; the ``admin_key_file`` setting, by default ``privflow-admin.key``
beside the SQLite database, or in the working directory for PostgreSQL) and returns it, so that
the caller prints it once, in a marked block, on the console. A later start finds a key in the
store and does nothing: the key is never printed again, and never logged.

The key is inserted under the fixed id ``key_admin`` (``service.store.keys``), so when several
processes start together on one empty store only one of them creates it.
"""

from __future__ import annotations

import os
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from service.settings import Settings
from service.store.common import now
from service.store.db import Store, normalise_url
from service.store.keys import BOOTSTRAP_ADMIN_ID, hash_key
from service.store.tables import keys

__all__ = ["ADMIN_KEY_FILE_NAME", "BootstrapKey", "admin_key_path", "banner", "bootstrap_admin"]

ADMIN_KEY_FILE_NAME = "privflow-admin.key"
BOOTSTRAP_KEY_NAME = "bootstrap admin (generated at first start)"


@dataclass(frozen=True)
class BootstrapKey:
    """A generated admin key: its secret and the file it was written to."""

    secret: str
    path: Path


def admin_key_path(settings: Settings) -> Path:
    """Where the generated key goes: the ``admin_key_file`` setting, else
    ``privflow-admin.key`` beside an SQLite database file, else in the working directory."""
    if settings.admin_key_file is not None:
        return Path(settings.admin_key_file).expanduser().resolve()
    url = make_url(normalise_url(settings.database_url))
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(str(url.database)).expanduser().resolve().parent / ADMIN_KEY_FILE_NAME
    return Path.cwd().resolve() / ADMIN_KEY_FILE_NAME


def bootstrap_admin(settings: Settings, store: Store) -> BootstrapKey | None:
    """Create, store and write the first admin key when the store has no key and the settings
    give none; None otherwise (the store must be migrated)."""
    if settings.admin_key is not None:
        return None
    with store.read() as conn:
        if conn.execute(select(func.count()).select_from(keys)).scalar_one() > 0:
            return None
    secret = "pf_" + secrets.token_urlsafe(32)
    try:
        with store.transaction() as conn:
            if conn.execute(select(func.count()).select_from(keys)).scalar_one() > 0:
                return None
            conn.execute(
                keys.insert().values(
                    id=BOOTSTRAP_ADMIN_ID,
                    name=BOOTSTRAP_KEY_NAME,
                    role="admin",
                    key_hash=hash_key(secret),
                    created_at=now(),
                )
            )
            path = admin_key_path(settings)
            _write_private(path, secret)  # inside the transaction: no key without its file
    except IntegrityError:
        return None  # another process created it first
    return BootstrapKey(secret, path)


def _write_private(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` with mode 0600, replacing any older file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by the umask; a stale file keeps its own
        os.write(fd, (secret + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, path)


def banner(key: BootstrapKey) -> str:
    """The console block that shows a generated key once."""
    rule = "=" * 78
    return "\n".join(
        [
            rule,
            "privflow: no admin key was configured and the store had none, so one was created.",
            "It is shown only this once. Admin API key:",
            "",
            f"    {key.secret}",
            "",
            f"Saved (readable only by you, mode 0600) in: {key.path}",
            f'Use it as:  ADMIN_KEY="$(cat {shlex.quote(str(key.path))})"',
            '            curl -H "Authorization: Bearer $ADMIN_KEY" ...',
            rule,
        ]
    )
