"""The quantile utility (certificates note §9.1; API.md ``quantile``).

Θ = [lower, upper]; records clipped to Θ; ``u(D, θ) = -|N_D(θ) - q·|D||`` with
``N_D(θ) = #{x <= θ}``. Sensitivities: add/remove Δu = max(q, 1-q) and Δ_osc = 2max(q, 1-q)
(the note's bound, used as the constant; median: Δu = ½, Δ_osc = 1); replace-one Δu = 1,
Δ_osc = 2; U = max(q, 1-q)·n_max. u is piecewise constant, so ∇u = 0 a.e.: MALA moves are then
random-walk Metropolis moves, and only route (9) applies (never (12)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dp_core.engine.utility_kernels import quantile_counts
from dp_core.errors import InvalidParameter
from dp_core.privacy.utilities.base import Sensitivity, check_neighbouring, clip_columns, describe
from dp_core.types import Domain, FloatArray

__all__ = ["Quantile", "QuantileData"]


@dataclass(frozen=True)
class QuantileData:
    """Sorted clipped records (private; never leaves the process)."""

    sorted_records: FloatArray
    n: int


@dataclass(frozen=True)
class Quantile:
    """q-quantile of one column with public bounds [lower, upper]. Records: shape (n,) or (n, 1)."""

    q: float
    lower: float
    upper: float
    family: str = "quantile"

    def __post_init__(self) -> None:
        if not (0.0 < self.q < 1.0):
            raise InvalidParameter("utility.q", "must lie in (0, 1)")
        if not (
            math.isfinite(self.lower) and math.isfinite(self.upper) and self.lower < self.upper
        ):
            raise InvalidParameter("utility.column", "needs finite bounds with lower < upper")

    @property
    def domain(self) -> Domain:
        return Domain.box([self.lower], [self.upper])

    def sensitivity(self, neighbouring: str, n_max: int) -> Sensitivity:
        check_neighbouring(neighbouring)
        top = max(self.q, 1.0 - self.q)
        if neighbouring == "add_remove":
            return Sensitivity(top, 2.0 * top, top * n_max)
        return Sensitivity(1.0, 2.0, top * n_max)

    def prepare(self, records: Any) -> QuantileData:
        clipped = clip_columns(records, np.array([self.lower]), np.array([self.upper]), "records")
        return QuantileData(np.sort(clipped[:, 0]), clipped.shape[0])

    def loss(self, prepared: QuantileData, points: FloatArray) -> tuple[FloatArray, FloatArray]:
        counts = np.empty(points.shape[0], dtype=np.int64)
        quantile_counts(points, prepared.sorted_records, counts)
        return np.abs(counts - self.q * prepared.n), np.zeros_like(points)

    def describe(self) -> dict[str, Any]:
        return describe(self)
