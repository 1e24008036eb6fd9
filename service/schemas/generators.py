"""Generator requests and responses (API.md "Generators"; research/aeot.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from service.schemas.common import Request
from service.schemas.flows import Points, Seed, Weights

__all__ = ["FitOptions", "GeneratorCreate", "GeneratorOut", "GeneratorSamplesRequest"]

DATASET_REFUSED = (
    "a generator is never fitted on a dataset's records; fit it on a release's samples "
    "(release_id) or on public points"
)


class FitOptions(Request):
    samples: Annotated[int, Field(ge=256, le=1 << 20)] = 65536
    max_steps: Annotated[int, Field(ge=1, le=100_000)] = 2000
    tolerance: Annotated[float, Field(gt=0, le=1.0, allow_inf_nan=False)] = 1e-3


class GeneratorCreate(Request):
    """Exactly one of ``points`` and ``release_id``."""

    points: Points | None = None
    release_id: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    weights: Weights | None = None
    source: Literal["uniform", "gaussian"] = "uniform"
    epsilon: Annotated[float, Field(ge=0, le=1e3, allow_inf_nan=False)] = 0.003
    method: Literal["smoothed", "aeot_top2"] = "smoothed"
    fit: FitOptions = Field(default_factory=FitOptions)
    seed: Seed = 0
    run_async: bool = Field(default=False, alias="async")
    dataset_id: Any = Field(default=None, description="Refused (422): " + DATASET_REFUSED)

    @field_validator("dataset_id")
    @classmethod
    def _no_dataset(cls, value: Any) -> None:
        if value is not None:
            raise ValueError(DATASET_REFUSED)


class GeneratorSamplesRequest(Request):
    n: Annotated[int, Field(ge=1, le=10_000_000)]
    seed: Seed


class GeneratorOut(BaseModel):
    generator_id: str
    n_points: int
    dim: int
    epsilon: float
    method: str
    source: str
    fit: dict[str, Any]
    provenance: dict[str, Any]
    charged: dict[str, float]
    created_at: datetime
