"""Shapes shared by several resources: spend pairs, budgets, pages and number types."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Budget",
    "Epsilon",
    "Page",
    "Probability",
    "Request",
    "Spend",
]

T = TypeVar("T")

Epsilon = Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)]
"""A privacy-loss parameter: finite and positive."""
Probability = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
"""δ: in [0, 1)."""


class Request(BaseModel):
    """Base of every request body: unknown fields are refused, so typos are not ignored, and
    types are strict (`true` is not a number, `"yes"` is not a boolean; integers are numbers)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Spend(BaseModel):
    epsilon: float
    delta: float


class Budget(BaseModel):
    """A dataset's totals with what its ledger has spent and what remains."""

    epsilon: float
    delta: float
    spent: Spend
    remaining: Spend


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``cursor`` for the next (null: no more)."""

    items: list[T]
    next_cursor: str | None
