"""Dataset and grant requests and responses (API.md "Datasets")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema, model_validator

from service.schemas.common import Budget, Probability, Request, Spend

__all__ = [
    "CategoryColumn",
    "Column",
    "DatasetBudget",
    "DatasetCreate",
    "DatasetOut",
    "FloatColumn",
    "GrantCreate",
    "GrantOut",
]

Name = Annotated[str, Field(min_length=1, max_length=200)]

Records = Annotated[
    list[Any],
    WithJsonSchema(
        {
            "type": "array",
            "items": {
                "type": "array",
                "items": {"anyOf": [{"type": "number"}, {"type": "string"}]},
            },
        }
    ),
]
"""Rows of cells (numbers for float columns, category names for category columns). Only the
outer list is checked while the request is decoded, on the event loop (a cell-by-cell check of
a 16 MiB body there took 3.5 s, stalling every other request); the rows and cells are checked
against the columns in a worker thread (``service.actions.datasets.encode_records``), with
422s naming ``records[i]`` or ``records[i][j]``."""
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e15, le=1e15)]


class FloatColumn(Request):
    name: Name
    type: Literal["float"]
    lower: Finite
    upper: Finite

    @model_validator(mode="after")
    def _ordered(self) -> FloatColumn:
        if not self.lower < self.upper:
            raise ValueError("lower must be below upper")
        return self


class CategoryColumn(Request):
    name: Name
    type: Literal["category"]
    categories: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=10_000
    )

    @model_validator(mode="after")
    def _distinct(self) -> CategoryColumn:
        if len(set(self.categories)) != len(self.categories):
            raise ValueError("categories must be distinct")
        return self


Column = Annotated[FloatColumn | CategoryColumn, Field(discriminator="type")]


class DatasetBudget(Request):
    epsilon: Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)]
    delta: Probability = 0.0


class DatasetCreate(Request):
    """A dataset: public schema and budget, private records (never returned)."""

    name: Name
    columns: list[Column] = Field(min_length=1, max_length=256)
    records: Records
    budget: DatasetBudget
    neighbouring: Literal["add_remove", "replace_one"] = "add_remove"
    size_bound: int = Field(default=1_000_000, ge=1, le=10**12)
    accountant: Literal["pure", "union"] = Field(
        default="pure",
        description=(
            "Budget accounting fixed at registration: 'pure' = basic composition of pure epsilon "
            "(certificates note (23)); 'union' = pure-or-zCDP filters at the budget's delta (27)."
        ),
    )

    @model_validator(mode="after")
    def _unique_columns(self) -> DatasetCreate:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError("column names must be distinct")
        return self


class DatasetOut(BaseModel):
    """Public metadata and budget; ``n_records`` only in answers to admin keys (omitted for
    analysts, who see ``size_bound``: under ``add_remove`` the count is what DP protects)."""

    id: str
    name: str
    n_records: int | None = Field(
        default=None,
        description=(
            "Number of records: admin keys only; absent from an analyst's answer, which has "
            "the public size_bound instead."
        ),
    )
    columns: list[FloatColumn | CategoryColumn]
    budget: Budget
    neighbouring: str
    size_bound: int
    accountant: str
    created_at: datetime


class GrantCreate(Request):
    key_id: str = Field(min_length=1, max_length=40)
    epsilon_cap: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    delta_cap: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None


class GrantOut(BaseModel):
    dataset_id: str
    key_id: str
    epsilon_cap: float | None
    delta_cap: float | None
    spent: Spend
    created_at: datetime
