"""Private regression utilities: clipped least squares and logistic loss (note §9.2).

Θ = the ball B(0, R); features clipped to their public box (so |x| <= X, the norm of the box's
farthest corner) and the target to [y_lo, y_hi] (|y| <= Y).

* ``linear_regression``: ``u = -Σ (y - θ·x)²/2``; ℓ ∈ [0, M²/2] with M = Y + RX, so B = o = M²/2
  (sum-form lemma). The loss is exact from the sufficient statistics X'X, X'y, y'y: O(d²) per
  point, whatever the number of records.
* ``logistic_regression``: labels in {0, 1} mapped to y' = 2y - 1; ``u = -Σ log(1 + e^{-y'θ·x})``;
  ℓ ∈ [0, log(1 + e^{RX})] and osc_θ ℓ = R|x| <= RX exactly, so B = log(1 + e^{RX}), o = RX.
  One fused pass over the records per point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dp_core.engine.utility_kernels import logistic_loss
from dp_core.errors import InvalidParameter
from dp_core.privacy.utilities.base import Sensitivity, clip_columns, describe, sum_form_sensitivity
from dp_core.types import Domain, FloatArray

__all__ = ["LinearRegression", "LogisticRegression", "SufficientStatistics"]


@dataclass(frozen=True)
class SufficientStatistics:
    """X'X (d, d), X'y (d,), y'y of the clipped records (private)."""

    xtx: FloatArray
    xty: FloatArray
    yty: float


class _BallOverFeatures:
    """Shared by both regressions: the feature box, the bound X on |x|, and Θ = B(0, R).

    ``_init_features`` validates the public fields and stores the derived arrays (not
    dataclass fields, so they stay out of the public parameters)."""

    feature_lower: tuple[float, ...]
    feature_upper: tuple[float, ...]
    radius: float

    def _init_features(self) -> None:
        lo = np.atleast_1d(np.asarray(self.feature_lower, dtype=np.float64))
        hi = np.atleast_1d(np.asarray(self.feature_upper, dtype=np.float64))
        Domain.box(lo, hi)
        if not (math.isfinite(self.radius) and self.radius > 0):
            raise InvalidParameter("utility.radius", "must be finite and positive")
        object.__setattr__(self, "_lo", lo)
        object.__setattr__(self, "_hi", hi)
        object.__setattr__(self, "_x_norm", float(np.sqrt(np.sum(np.maximum(lo**2, hi**2)))))

    @property
    def domain(self) -> Domain:
        return Domain.ball(np.zeros(self._lo.size), self.radius)


@dataclass(frozen=True)
class LinearRegression(_BallOverFeatures):
    """Least squares with feature bounds, target bounds and radius R. Records: (n, d + 1) with
    the target in the last column."""

    feature_lower: tuple[float, ...]
    feature_upper: tuple[float, ...]
    target_lower: float
    target_upper: float
    radius: float
    family: str = "linear_regression"

    def __post_init__(self) -> None:
        self._init_features()
        if not (self.target_lower < self.target_upper):
            raise InvalidParameter("utility.target", "needs finite bounds with lower < upper")

    @property
    def loss_bound(self) -> float:
        y = max(abs(self.target_lower), abs(self.target_upper))
        m = y + self.radius * self._x_norm
        return 0.5 * m * m

    def sensitivity(self, neighbouring: str, n_max: int) -> Sensitivity:
        return sum_form_sensitivity(self.loss_bound, self.loss_bound, neighbouring, n_max)

    def clip_records(self, records: Any) -> FloatArray:
        """Features and target clipped to their bounds, (n, d + 1)."""
        lo = np.append(self._lo, self.target_lower)
        hi = np.append(self._hi, self.target_upper)
        return clip_columns(records, lo, hi, "records")

    def record_losses(self, clipped: FloatArray, thetas: FloatArray) -> FloatArray:
        """ℓ(θ; x, y) = (y - θ·x)²/2 for every grid point and record, (g, n)."""
        residual = clipped[None, :, -1] - thetas @ clipped[:, :-1].T
        return 0.5 * residual**2

    def prepare(self, records: Any) -> SufficientStatistics:
        clipped = self.clip_records(records)
        x, y = clipped[:, :-1], clipped[:, -1]
        return SufficientStatistics(x.T @ x, x.T @ y, float(y @ y))

    def loss(
        self, prepared: SufficientStatistics, points: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        quad = points @ prepared.xtx  # (N, d)
        value = 0.5 * (prepared.yty - 2.0 * points @ prepared.xty + np.sum(quad * points, axis=1))
        return value, quad - prepared.xty

    def describe(self) -> dict[str, Any]:
        return describe(self)


@dataclass(frozen=True)
class LogisticRegressionData:
    """Clipped features transposed, (d, n), for the fused pass, and labels in {-1, +1}
    (private)."""

    features_t: FloatArray
    labels: FloatArray


@dataclass(frozen=True)
class LogisticRegression(_BallOverFeatures):
    """Logistic loss with feature bounds and radius R. Records: (n, d + 1), the last column a
    label in {0, 1}."""

    feature_lower: tuple[float, ...]
    feature_upper: tuple[float, ...]
    radius: float
    family: str = "logistic_regression"

    def __post_init__(self) -> None:
        self._init_features()

    @property
    def loss_bound(self) -> float:
        """B = log(1 + e^{RX}), overflow-free."""
        rx = self.radius * self._x_norm
        return max(rx, 0.0) + math.log1p(math.exp(-rx))

    def sensitivity(self, neighbouring: str, n_max: int) -> Sensitivity:
        return sum_form_sensitivity(
            self.loss_bound, self.radius * self._x_norm, neighbouring, n_max
        )

    def clip_records(self, records: Any) -> FloatArray:
        """Clipped features with the label mapped to ±1 in the last column, (n, d + 1)."""
        data = self.prepare(records)
        return np.column_stack([data.features_t.T, data.labels])

    def record_losses(self, clipped: FloatArray, thetas: FloatArray) -> FloatArray:
        """ℓ(θ; x, y) = log(1 + e^{-y θ·x}) for every grid point and record, (g, n)."""
        margins = (thetas @ clipped[:, :-1].T) * clipped[None, :, -1]
        return np.logaddexp(0.0, -margins)

    def prepare(self, records: Any) -> LogisticRegressionData:
        arr = np.asarray(records, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != self._lo.size + 1:
            raise InvalidParameter("records", f"expected {self._lo.size + 1} columns")
        labels = arr[:, -1]
        if not np.all((labels == 0.0) | (labels == 1.0)):
            raise InvalidParameter("records", "labels must be 0 or 1")
        features = clip_columns(arr[:, :-1], self._lo, self._hi, "records")
        return LogisticRegressionData(
            np.ascontiguousarray(features.T), np.ascontiguousarray(2.0 * labels - 1.0)
        )

    def loss(
        self, prepared: LogisticRegressionData, points: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        v = np.empty(points.shape[0])
        g = np.empty(points.shape)
        logistic_loss(points, prepared.features_t, prepared.labels, v, g)
        return v, g

    def describe(self) -> dict[str, Any]:
        return describe(self)
