"""Reading an ``Authorization: Bearer <key>`` header and finding its key, without FastAPI.

Shared by the FastAPI dependencies (``service.deps``) and the ASGI request gate
(``service.limits``), which authenticates a request from its headers before its body is read.
"""

from __future__ import annotations

import hmac

from service.store.db import Store
from service.store.keys import KeyRecord, find_active_key

__all__ = ["MAX_SECRET_CHARS", "authenticate", "bearer_secret", "matches"]

MAX_SECRET_CHARS = 200
"""Longer bearer secrets are refused without a lookup (keys are ``pf_`` + 43 characters)."""


def bearer_secret(authorization: str | None) -> str | None:
    """The secret of a ``Bearer`` header, or None when the header is absent or malformed."""
    if authorization is None:
        return None
    scheme, _, secret = authorization.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or len(secret) > MAX_SECRET_CHARS:
        return None
    if "\x00" in secret:  # PostgreSQL text cannot hold NUL; no key contains one
        return None
    return secret


def authenticate(store: Store, authorization: str | None) -> KeyRecord | None:
    """The active key named by the header, or None (blocking: one indexed read)."""
    secret = bearer_secret(authorization)
    if secret is None:
        return None
    with store.read() as conn:
        return find_active_key(conn, secret)


def matches(authorization: str | None, token: str) -> bool:
    """Whether the header carries exactly ``token`` (compared in constant time)."""
    secret = bearer_secret(authorization)
    return secret is not None and hmac.compare_digest(secret.encode(), token.encode())
