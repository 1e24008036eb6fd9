"""The clipped-mean utility (certificates note §9.4, clipped version; API.md ``mean``).

Θ = the box of the columns' public bounds; records clipped to that box;
``u(D, θ) = -Σ_x min(|θ - x|², c²)``. Per record ℓ ∈ [0, B] with
B = min(c², diam(Θ)²) (θ and x both lie in the box), so by the sum-form lemma of §9
add/remove Δu = Δ_osc = B, replace-one Δu = B, Δ_osc = 2B, and U = n_max·B. The loss has kinks
at |θ - x| = c (G2 = ∞): only route (9) applies.

In one dimension the loss is exact from sorted records and prefix sums (O(log n) per point); in
d > 1 it is exact from the count and two centred sums when ``c >= diam(Θ)`` (the clip cannot
bind, O(d) per point), and otherwise one fused pass over the records per point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dp_core.engine.utility_kernels import clipped_mean_loss_1d, clipped_mean_loss_nd
from dp_core.errors import InvalidParameter
from dp_core.privacy.utilities.base import Sensitivity, clip_columns, describe, sum_form_sensitivity
from dp_core.types import Domain, FloatArray

__all__ = ["ClippedMean", "MeanData"]


@dataclass(frozen=True)
class MeanData:
    """The private summary a release evaluates the loss from (one of three forms):

    * 1-D: sorted records with prefix sums of x and x²;
    * d > 1 with ``c² >= diam(Θ)²`` (the clip can never bind): the count and the sums of
      ``x − centre`` and ``|x − centre|²`` about the box centre (exact sufficient statistics);
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


@dataclass(frozen=True)
class ClippedMean:
    """Mean of ``len(lower)`` columns with public bounds and clip radius c. Records: (n, d)."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    clip: float
    family: str = "mean"
    _lo: FloatArray = field(init=False, repr=False)
    _hi: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lo, hi = _box(self.lower, self.upper)
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise InvalidParameter("utility.clip", "must be finite and positive")
        object.__setattr__(self, "_lo", lo)
        object.__setattr__(self, "_hi", hi)

    @property
    def domain(self) -> Domain:
        return Domain.box(self._lo, self._hi)

    @property
    def loss_bound(self) -> float:
        """B = min(c², diam²) bounds every record's loss."""
        diam2 = float(np.sum((self._hi - self._lo) ** 2))
        return min(self.clip**2, diam2)

    def sensitivity(self, neighbouring: str, n_max: int) -> Sensitivity:
        return sum_form_sensitivity(self.loss_bound, self.loss_bound, neighbouring, n_max)

    def clip_records(self, records: Any) -> FloatArray:
        """Records clipped to the box, (n, d)."""
        return clip_columns(records, self._lo, self._hi, "records")

    def record_losses(self, clipped: FloatArray, thetas: FloatArray) -> FloatArray:
        """ℓ(θ_g; x) = min(|θ_g - x|², c²) for every grid point and record, (g, n)."""
        d2 = np.sum((thetas[:, None, :] - clipped[None, :, :]) ** 2, axis=2)
        return np.minimum(d2, self.clip**2)

    def prepare(self, records: Any) -> MeanData:
        clipped = self.clip_records(records)
        if clipped.shape[1] == 1:
            xs = np.sort(clipped[:, 0])
            prefix = np.concatenate([[0.0], np.cumsum(xs)])
            prefix_sq = np.concatenate([[0.0], np.cumsum(xs * xs)])
            return MeanData(sorted_records=xs, prefix=prefix, prefix_sq=prefix_sq)
        diam2 = float(np.sum((self._hi - self._lo) ** 2))
        if self.clip**2 >= diam2:
            # |θ − x|² <= diam² <= c² for θ, x in the box: the loss is the plain sum of squares
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
        if prepared.sorted_records is not None:
            clipped_mean_loss_1d(
                points,
                prepared.sorted_records,
                prepared.prefix,
                prepared.prefix_sq,
                self.clip,
                v,
                g,
            )
        else:
            clipped_mean_loss_nd(points, prepared.records_t, self.clip, v, g)
        return v, g

    def describe(self) -> dict[str, Any]:
        return describe(self)
