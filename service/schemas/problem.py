"""The RFC 9457 problem body every error response carries (API.md "Conventions")."""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["FieldProblem", "Problem"]


class FieldProblem(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldProblem] | None = None
