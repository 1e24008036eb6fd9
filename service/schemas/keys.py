"""Key requests and responses (API.md "Keys")."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from service.schemas.common import Request

__all__ = ["KeyCreate", "KeyCreated", "KeyOut", "Role"]

Role = Literal["analyst", "admin"]


class KeyCreate(Request):
    name: str = Field(min_length=1, max_length=200)
    role: Role


class KeyOut(BaseModel):
    id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None = None


class KeyCreated(BaseModel):
    """The new key; ``key`` is the secret, shown only in this response."""

    id: str
    name: str
    role: Role
    key: str
