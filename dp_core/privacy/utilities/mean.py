"""The mean utility (accuracy note §3; certificates note §9.4; API.md ``mean``).

Θ = the box of the columns' public bounds; records clipped to that box. Two forms:

* ``gradient_norm`` (default, the K-norm gradient mechanism): ℓ = |θ - x|²/2, g = θ - x,
  optionally clipped to norm c (``clip``); ``u(D, θ) = -|Σ_x clip_c(θ - x)|``. |g| <= G =
  min(c, diam Θ), so add/remove Δu = G, Δ_osc = 2G; replace-one: θ cancels,
  |clip_c(θ - x) - clip_c(θ - x')| <= min(|x - x'|, 2c) (the clip is a projection, hence
  1-Lipschitz), so Δu = min(diam, 2c), Δ_osc = 2Δu; U = n_max·G. Without a binding clip,
  u = -|n θ - Σx| exactly from the count and the centred sum (O(d) per point, any d): the law
  is a K-norm (Laplace-like) law centred at the sample mean with scale 1/(λn) — the 1/(εn) rate.
* ``loss`` (the first landing's Gibbs form): ``u(D, θ) = -Σ_x min(|θ - x|², c²)``, per record
  ℓ ∈ [0, B], B = min(c², diam²), sum-form lemma of §9: add/remove Δu = Δ_osc = B, replace-one
  Δ_osc = 2B, U = n_max·B. Its law has width ~ 1/√(εn): preferable only when one wants the
  posterior-like spread itself.

Summaries (ARCHITECTURE "Records scale too"): 1-D uses sorted records with prefix sums (O(log n)
per point) in both forms; d > 1 uses the count and centred sums whenever the clip cannot bind,
and one fused pass over the records otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dp_core.engine.grid_scores import assignment_grid_sums
from dp_core.engine.utility_kernels import (
    assignment_curvature,
    assignment_gradient_sum,
    clipped_gradient_sum_1d,
    clipped_mean_loss_1d,
    clipped_mean_loss_nd,
)
from dp_core.errors import InvalidParameter
from dp_core.privacy.bounds import box_diameter, square_up
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

__all__ = ["ClippedMean", "MeanData", "assignment_gradient_loss"]


@dataclass(frozen=True)
class MeanData:
    """The private summary a release evaluates the utility from (one of three forms):

    * 1-D: sorted records with prefix sums of x and x²;
    * d > 1 where the clip can never bind: the count and the sums of ``x − centre`` and
      ``|x − centre|²`` about the box centre (exact sufficient statistics);
    * otherwise the records transposed, (d, n), for the fused pass.
    """

    records_t: FloatArray | None = None
    sorted_records: FloatArray | None = None
    prefix: FloatArray | None = None
    prefix_sq: FloatArray | None = None
    count: int = 0
    centre: FloatArray | None = None
    centred_sum: FloatArray | None = None
    centred_sum_sq: float = 0.0


def _box(lower: Any, upper: Any) -> tuple[FloatArray, FloatArray]:
    lo = np.atleast_1d(np.asarray(lower, dtype=np.float64))
    hi = np.atleast_1d(np.asarray(upper, dtype=np.float64))
    Domain.box(lo, hi)  # validates
    return lo, hi


def assignment_gradient_loss(
    points: FloatArray, records_t: FloatArray, k: int, clip: float
) -> tuple[FloatArray, FloatArray]:
    """|A| and J A/|A| of the nearest-centre gradient sums (mean: k = 1; k-means) by record
    passes: one pass for A and the unclipped part W of J, a second only where the clip can
    bind (the curvature of the clipped records)."""
    n_points, dim = points.shape
    d = dim // k
    sums = np.empty((n_points, dim))
    weights = np.empty((n_points, k))
    assignment_gradient_sum(points, records_t, k, clip, sums, weights)
    jac = sums * np.repeat(weights, d, axis=1)
    if math.isfinite(clip):
        norm = np.sqrt(np.einsum("ij,ij->i", sums, sums))
        directions = np.ascontiguousarray(sums / np.where(norm > 0.0, norm, 1.0)[:, None])
        curvature = np.empty((n_points, dim))
        assignment_curvature(points, records_t, k, clip, directions, curvature)
        jac -= curvature * norm[:, None]
    return gradient_norm_loss(sums, jac)


@dataclass(frozen=True)
class ClippedMean:
    """Mean of ``len(lower)`` columns with public bounds; ``clip`` c is optional in the gradient
    form (a per-record gradient clip) and the loss clip of the loss form (default: the
    diameter, which never binds). Records: (n, d)."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    clip: float | None = None
    form: str = "gradient_norm"
    family: str = "mean"
    _lo: FloatArray = field(init=False, repr=False)
    _hi: FloatArray = field(init=False, repr=False)
    _diameter: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lo, hi = _box(self.lower, self.upper)
        if self.clip is not None and not (math.isfinite(self.clip) and self.clip > 0):
            raise InvalidParameter("utility.clip", "must be finite and positive")
        check_form(self.form)
        object.__setattr__(self, "_lo", lo)
        object.__setattr__(self, "_hi", hi)
        object.__setattr__(self, "_diameter", box_diameter(lo.tolist(), hi.tolist()))

    @property
    def domain(self) -> Domain:
        return Domain.box(self._lo, self._hi)

    @property
    def diameter(self) -> float:
        return self._diameter  # rounded up: dp_core.privacy.bounds

    @property
    def effective_clip(self) -> float:
        """c, or +inf where no clip was asked for or c >= diam(Θ) (it can never bind)."""
        c = self.clip
        return math.inf if c is None or c >= self.diameter else float(c)

    @property
    def gradient_bound(self) -> float:
        """G = min(c, diam Θ) bounds |θ - x| (clipped) for θ and x in the box."""
        return min(self.effective_clip, self.diameter)

    @property
    def loss_bound(self) -> float:
        """B = min(c², diam²) bounds every record's loss-form loss."""
        return square_up(min(self.effective_clip, self.diameter))

    def sensitivity(self, neighbouring: str, n_max: int) -> Sensitivity:
        if self.form == "loss":
            return sum_form_sensitivity(self.loss_bound, self.loss_bound, neighbouring, n_max)
        big_g = self.gradient_bound
        return gradient_norm_sensitivity(
            big_g,
            neighbouring,
            n_max,
            replace_delta_u=min(self.diameter, 2.0 * big_g),
            gradient_lipschitz=1.0,  # g = clip_c(θ - x): a projection of θ - x
        )

    def clip_records(self, records: Any) -> FloatArray:
        """Records clipped to the box, (n, d)."""
        return clip_columns(records, self._lo, self._hi, "records")

    def grid_sums(
        self,
        clipped: FloatArray,
        grid: FloatArray,
        quantum: float,
        limit: int,
        out: np.ndarray,
    ) -> None:
        """Per-record integer contributions summed per grid point (exact path, :mod:`grid`)."""
        bound = self.gradient_bound if self.form == "gradient_norm" else self.loss_bound
        clip = self.effective_clip if self.form == "loss" else math.inf
        assignment_grid_sums(
            grid, clipped, 1, clip, self.form == "gradient_norm", quantum, bound, limit, out
        )

    def prepare(self, records: Any) -> MeanData:
        clipped = self.clip_records(records)
        if clipped.shape[1] == 1:
            xs = np.sort(clipped[:, 0])
            prefix = np.concatenate([[0.0], np.cumsum(xs)])
            prefix_sq = np.concatenate([[0.0], np.cumsum(xs * xs)])
            return MeanData(sorted_records=xs, prefix=prefix, prefix_sq=prefix_sq)
        if math.isinf(self.effective_clip):
            centre = 0.5 * (self._lo + self._hi)
            z = clipped - centre
            return MeanData(
                count=clipped.shape[0],
                centre=centre,
                centred_sum=z.sum(axis=0),
                centred_sum_sq=float(np.einsum("ij,ij->", z, z)),
            )
        return MeanData(records_t=np.ascontiguousarray(clipped.T))

    def loss(self, prepared: MeanData, points: FloatArray) -> tuple[FloatArray, FloatArray]:
        if self.form == "gradient_norm":
            return self._gradient_norm(prepared, points)
        if prepared.centre is not None:
            # Σ|θ − x|² = n|θ'|² − 2θ'·Σx' + Σ|x'|² with θ' = θ − centre, x' = x − centre
            assert prepared.centred_sum is not None
            t = points - prepared.centre
            n = prepared.count
            v = (
                n * np.einsum("ij,ij->i", t, t)
                - 2.0 * (t @ prepared.centred_sum)
                + prepared.centred_sum_sq
            )
            return v, 2.0 * (n * t - prepared.centred_sum)
        v = np.empty(points.shape[0])
        g = np.empty(points.shape)
        clip = min(self.effective_clip, self.diameter)
        if prepared.sorted_records is not None:
            clipped_mean_loss_1d(
                points, prepared.sorted_records, prepared.prefix, prepared.prefix_sq, clip, v, g
            )
        else:
            clipped_mean_loss_nd(points, prepared.records_t, clip, v, g)
        return v, g

    def _gradient_norm(
        self, prepared: MeanData, points: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        if prepared.sorted_records is not None:
            sums = np.empty(points.shape)
            jac = np.empty(points.shape[0])
            clipped_gradient_sum_1d(
                points, prepared.sorted_records, prepared.prefix, self.effective_clip, sums, jac
            )
            return gradient_norm_loss(sums, sums * jac[:, None])
        if prepared.centre is not None:
            # A = Σ(θ - x) = n(θ - centre) - Σ(x - centre); J = n I
            assert prepared.centred_sum is not None
            sums = prepared.count * (points - prepared.centre) - prepared.centred_sum
            return gradient_norm_loss(sums, prepared.count * sums)
        assert prepared.records_t is not None
        return assignment_gradient_loss(points, prepared.records_t, 1, self.effective_clip)

    def describe(self) -> dict[str, Any]:
        return describe(self)
