"""Private regression utilities: least squares and logistic loss (accuracy note §3, note §9.2).

Θ = the ball B(0, R); features clipped to their public box (so |x| <= X, the norm of the box's
farthest corner) and the target to [y_lo, y_hi] (|y| <= Y). Two forms each:

* ``gradient_norm`` (default, the K-norm gradient mechanism, error O(d/(εn))):
  ``u = -|Σ_x g(θ; x)|`` with the per-record gradient g bounded by G on Θ; add/remove Δu = G,
  Δ_osc = 2G; replace-one Δu = 2G (no cancellation in θ), Δ_osc = 4G; U = n_max·G.

  - ``linear_regression``: g = (θ·x - y) x, |g| <= (Y + RX)·X = G; A = X'X θ - X'y and
    J = X'X, exact from the sufficient statistics: O(d²) per point for any n.
  - ``logistic_regression``: g = -y' x σ(-y'θ·x), |g| <= X = G; J = Σ σ(m)σ(-m) x xᵀ; one
    fused pass over the records per point.
* ``loss`` (the first landing's Gibbs form, error O(1/√(εn))):

  - ``linear_regression``: ``u = -Σ (y - θ·x)²/2``; ℓ ∈ [0, M²/2] with M = Y + RX, so
    B = o = M²/2 (sum-form lemma), exact from X'X, X'y, y'y.
  - ``logistic_regression``: labels in {0, 1} mapped to y' = 2y - 1;
    ``u = -Σ log(1 + e^{-y'θ·x})``; ℓ ∈ [0, log(1 + e^{RX})] and osc_θ ℓ = R|x| <= RX exactly,
    so B = log(1 + e^{RX}), o = RX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from dp_core.engine.grid_scores import linear_grid_sums, logistic_grid_sums
from dp_core.engine.utility_kernels import logistic_gradient_sum, logistic_loss
from dp_core.errors import InvalidParameter
from dp_core.privacy.bounds import float_up, sqrt_up, up_ulps
from dp_core.privacy.utilities.base import (
    Sensitivity,
    check_form,
    clip_columns,
    describe,
    gradient_norm_loss,
    gradient_norm_sensitivity,
    sum_form_sensitivity,
)
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
    form: str

    def _init_features(self) -> None:
        check_form(self.form)
        lo = np.atleast_1d(np.asarray(self.feature_lower, dtype=np.float64))
        hi = np.atleast_1d(np.asarray(self.feature_upper, dtype=np.float64))
        Domain.box(lo, hi)
        if not (math.isfinite(self.radius) and self.radius > 0):
            raise InvalidParameter("utility.radius", "must be finite and positive")
        object.__setattr__(self, "_lo", lo)
        object.__setattr__(self, "_hi", hi)
        squares = (max(Fraction(a) ** 2, Fraction(b) ** 2) for a, b in zip(lo, hi, strict=True))
        x_norm = sqrt_up(sum(squares, Fraction(0)))  # exact rational, >= the feature norm X
        object.__setattr__(self, "_x_exact", x_norm)
        object.__setattr__(self, "_x_norm", float_up(x_norm))

    @property
    def domain(self) -> Domain:
        return Domain.ball(np.zeros(self._lo.size), self.radius)

    def _sensitivity(
        self, loss_bound: float, oscillation: float, neighbouring: str, n_max: int
    ) -> Sensitivity:
        """The loss form's sum-form lemma, or the gradient form's constants from G."""
        if self.form == "loss":
            return sum_form_sensitivity(loss_bound, oscillation, neighbouring, n_max)
        gradient_bound = self.gradient_bound  # type: ignore[attr-defined]
        return gradient_norm_sensitivity(
            gradient_bound,
            neighbouring,
            n_max,
            gradient_lipschitz=self.gradient_lipschitz,  # type: ignore[attr-defined]
        )


@dataclass(frozen=True)
class LinearRegression(_BallOverFeatures):
    """Least squares with feature bounds, target bounds and radius R. Records: (n, d + 1) with
    the target in the last column."""

    feature_lower: tuple[float, ...]
    feature_upper: tuple[float, ...]
    target_lower: float
    target_upper: float
    radius: float
    form: str = "gradient_norm"
    family: str = "linear_regression"

    def __post_init__(self) -> None:
        self._init_features()
        if not (self.target_lower < self.target_upper):
            raise InvalidParameter("utility.target", "needs finite bounds with lower < upper")

    @property
    def _residual_bound(self) -> Fraction:
        """M = Y + RX bounds |y - θ·x| on Θ and the clipped records (exact, rational)."""
        y_max = max(abs(self.target_lower), abs(self.target_upper))
        return Fraction(y_max) + Fraction(self.radius) * self._x_exact

    @property
    def loss_bound(self) -> float:
        return float_up(self._residual_bound**2 / 2)

    @property
    def gradient_bound(self) -> float:
        """G = (Y + RX)·X bounds |(θ·x - y) x|."""
        return float_up(self._residual_bound * self._x_exact)

    @property
    def gradient_lipschitz(self) -> float:
        """H = X²: the Jacobian of g is x xᵀ."""
        return float_up(self._x_exact**2)

    def sensitivity(self, neighbouring: str, n_max: int) -> Sensitivity:
        return self._sensitivity(self.loss_bound, self.loss_bound, neighbouring, n_max)

    def clip_records(self, records: Any) -> FloatArray:
        """Features and target clipped to their bounds, (n, d + 1)."""
        lo = np.append(self._lo, self.target_lower)
        hi = np.append(self._hi, self.target_upper)
        return clip_columns(records, lo, hi, "records")

    def grid_sums(
        self, clipped: FloatArray, grid: FloatArray, quantum: float, limit: int, out: np.ndarray
    ) -> None:
        """Per-record integer contributions summed per grid point (exact path, :mod:`grid`)."""
        gradient = self.form == "gradient_norm"
        bound = self.gradient_bound if gradient else self.loss_bound
        linear_grid_sums(grid, clipped, gradient, quantum, bound, limit, out)

    def prepare(self, records: Any) -> SufficientStatistics:
        clipped = self.clip_records(records)
        x, y = clipped[:, :-1], clipped[:, -1]
        return SufficientStatistics(x.T @ x, x.T @ y, float(y @ y))

    def loss(
        self, prepared: SufficientStatistics, points: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        quad = points @ prepared.xtx  # (N, d)
        if self.form == "gradient_norm":  # A = X'X θ - X'y, J = X'X
            sums = quad - prepared.xty
            return gradient_norm_loss(sums, sums @ prepared.xtx)
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
    form: str = "gradient_norm"
    family: str = "logistic_regression"

    def __post_init__(self) -> None:
        self._init_features()

    @property
    def loss_bound(self) -> float:
        """B = log(1 + e^{RX}), overflow-free."""
        rx = float_up(Fraction(self.radius) * self._x_exact)
        return up_ulps(max(rx, 0.0) + math.log1p(math.exp(-rx)), 4)  # increasing in rx

    @property
    def gradient_bound(self) -> float:
        """G = X: |y' x σ(·)| <= |x|."""
        return self._x_norm

    @property
    def gradient_lipschitz(self) -> float:
        """H = X²/4: the Jacobian of g is σ(m)σ(-m) x xᵀ with σσ' <= 1/4."""
        return float_up(self._x_exact**2 / 4)

    def sensitivity(self, neighbouring: str, n_max: int) -> Sensitivity:
        oscillation = float_up(Fraction(self.radius) * self._x_exact)
        return self._sensitivity(self.loss_bound, oscillation, neighbouring, n_max)

    def clip_records(self, records: Any) -> FloatArray:
        """Clipped features with the label mapped to ±1 in the last column, (n, d + 1)."""
        data = self.prepare(records)
        return np.column_stack([data.features_t.T, data.labels])

    def grid_sums(
        self, clipped: FloatArray, grid: FloatArray, quantum: float, limit: int, out: np.ndarray
    ) -> None:
        """Per-record integer contributions summed per grid point (exact path, :mod:`grid`)."""
        gradient = self.form == "gradient_norm"
        bound = self.gradient_bound if gradient else self.loss_bound
        logistic_grid_sums(grid, clipped, gradient, quantum, bound, limit, out)

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
        if self.form == "gradient_norm":
            sums = np.empty(points.shape)
            jac = np.empty((points.shape[0], points.shape[1], points.shape[1]))
            logistic_gradient_sum(points, prepared.features_t, prepared.labels, sums, jac)
            return gradient_norm_loss(sums, np.einsum("iab,ib->ia", jac, sums))
        v = np.empty(points.shape[0])
        g = np.empty(points.shape)
        logistic_loss(points, prepared.features_t, prepared.labels, v, g)
        return v, g

    def describe(self) -> dict[str, Any]:
        return describe(self)
