"""Flow, memory and Muon requests (API.md "Flows"): public point clouds, seeds allowed."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from service.schemas.common import Request

__all__ = [
    "DrMMDRequest",
    "FlowOptions",
    "KernelSpec",
    "MMDRequest",
    "MemoryCreate",
    "MemoryCreated",
    "MemoryRetrieve",
    "MuonRequest",
    "Points",
    "WeightedPoints",
]

Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e12, le=1e12)]
Point = Annotated[list[Finite], Field(min_length=1, max_length=4096)]
Points = Annotated[list[Point], Field(min_length=1)]
"""A point cloud: a non-empty list of equal-length lists of finite numbers."""
Weights = Annotated[list[Annotated[float, Field(ge=0, allow_inf_nan=False)]], Field(min_length=1)]
Positive = Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)]
Seed = Annotated[int, Field(ge=0, lt=2**64)]
"""A public seed: any 64-bit unsigned integer, the range of the seeds the engine draws."""


class KernelSpec(Request):
    name: Literal["gaussian", "imq", "laplace"] = "gaussian"
    bandwidth: Positive


class FlowOptions(Request):
    """Options every flow takes (API.md): steps, step size, seed, trace spacing, async."""

    steps: Annotated[int, Field(ge=0, le=1_000_000)] = 500
    step_size: Positive | None = None
    seed: Seed | None = Field(
        default=None, description="Same seed and inputs give bit-identical results."
    )
    record_every: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        default=None, description="Trace spacing in steps (default: about 50 rows)."
    )
    run_async: bool = Field(default=False, alias="async")


class MMDRequest(FlowOptions):
    source: Points
    target: Points
    kernel: KernelSpec
    noise_level: Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)] = 0.0


class DrMMDRequest(FlowOptions):
    source: Points
    target: Points
    kernel: KernelSpec
    lambda_: Positive | Literal["adaptive"] = Field(default="adaptive", alias="lambda")


class WeightedPoints(Request):
    points: Points
    weights: Weights | None = None


class MemoryCreate(Request):
    patterns: Annotated[list[WeightedPoints], Field(min_length=1, max_length=10_000)]
    blur: Positive
    beta: Positive = 1.0


class MemoryCreated(BaseModel):
    memory_id: str
    n_patterns: int


class MemoryRetrieve(Request):
    query: WeightedPoints
    steps: Annotated[int, Field(ge=0, le=100_000)] | None = None
    step_size: Positive | None = None
    weight_step: Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)] | None = None
    run_async: bool = Field(default=False, alias="async")


class StudentTeacherTask(Request):
    """The mean-field two-layer student–teacher task (flows note §2.4, §5.6); every draw it
    makes (teacher, inputs) is fixed by ``data_seed``."""

    kind: Literal["student_teacher"]
    input_dim: Annotated[int, Field(ge=1, le=1024)] = 50
    hidden: Annotated[int, Field(ge=1, le=64)] = 3
    teachers: Annotated[int, Field(ge=1, le=64)] = 1
    n_train: Annotated[int, Field(ge=1, le=100_000)] = 1000
    output: Literal["quadexp", "linear"] = "quadexp"
    data_seed: Seed = 0


class MuonRequest(FlowOptions):
    """Regularised Muon (F 24)-(F 25): ``step_size`` η, ``momentum`` β, ``regularization`` ε
    (default ``1e-3 · median ‖G_i(W₀)‖²_op``); ``update`` ``newton_schulz`` is standard Muon."""

    task: StudentTeacherTask
    particles: Annotated[int, Field(ge=1, le=100_000)] = 64
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.95
    regularization: Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)] | None = None
    update: Literal["regularized", "newton_schulz"] = "regularized"
