"""The k-means utility (accuracy note §3; certificates note §9.3; API.md ``kmeans``).

θ = (c_1, ..., c_k), each centre in the box of the columns' public bounds (Θ = box^k, flattened
to dimension k·d); records clipped to the box. Two forms; unlike the other families the default
is ``loss``, because the gradient form concentrates on degenerate stationary points (below):

* ``gradient_norm``: ℓ = min_j |x - c_j|²/2, whose gradient g is c_j* - x in the
  block of the nearest centre j* (ties to the lowest index) and 0 elsewhere, optionally clipped
  to norm τ; ``u = -|Σ_x g|``, i.e. -√(Σ_j |W_j c_j - S_j|²) without a clip (W_j records and
  S_j their sum in cell j). |g| <= G = min(τ, diam box): add/remove Δu = G, Δ_osc = 2G.
  replace-one: g(x) - g(x') has norm <= min(|x - x'|, 2τ) <= min(diam, 2G) when both records
  pick the same centre and √(G² + G²) = √2·G when they pick different ones, so
  Δu = min(2G, max(diam, √2·G)), Δ_osc = 2Δu; U = n_max·G.
  Its maximum, u = 0, is attained at every stationary point of the k-means objective, including
  the degenerate ones where a centre no record is nearest to has an empty gradient block and can
  sit anywhere: a set of positive volume, on which the law concentrates as λ grows
  (docs/benchmarks.md, "Peers": exact error 12.8 → 21.6 from ε = 0.1 to 4 at n = 10^3).
* ``loss`` (default): ``u = -Σ_x min(min_j |x - c_j|², τ²)``, ℓ ∈ [0, B] with
  B = min(τ², diam²): the sum-form lemma (add/remove Δu = Δ_osc = B, replace-one Δ_osc = 2B,
  U = n_max·B).

Kinks on Voronoi boundaries and the clip sphere: route (9) only. The law is invariant under
relabelling the centres; released samples are therefore put in a canonical order
(lexicographic by coordinates) — post-processing, no privacy cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from dp_core.engine.grid_scores import assignment_grid_sums
from dp_core.engine.utility_kernels import kmeans_loss
from dp_core.errors import InvalidParameter
from dp_core.privacy.bounds import box_diameter, float_up, sqrt_up, square_up
from dp_core.privacy.utilities.base import (
    Sensitivity,
    check_form,
    clip_columns,
    describe,
    gradient_norm_sensitivity,
    sum_form_sensitivity,
)
from dp_core.privacy.utilities.mean import assignment_gradient_loss
from dp_core.types import Domain, FloatArray

__all__ = ["KMeans", "canonical_centres"]


def canonical_centres(samples: FloatArray, k: int) -> FloatArray:
    """Sort each sample's k centres lexicographically (rows of (k, d)); samples (m, k·d)."""
    m = samples.shape[0]
    centres = samples.reshape(m, k, -1)
    out = np.empty_like(centres)
    for s in range(m):
        order = np.lexsort(centres[s].T[::-1])
        out[s] = centres[s][order]
    return out.reshape(m, -1)


@dataclass(frozen=True)
class KMeans:
    """k centres in the box of the columns; optional clip τ (gradient clip in the gradient form,
    loss clip in the loss form; default: the box diameter, which never binds). Records: (n, d)."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    k: int
    clip: float | None = None
    form: str = "loss"
    family: str = "kmeans"
    _lo: FloatArray = field(init=False, repr=False)
    _hi: FloatArray = field(init=False, repr=False)
    _diameter: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lo = np.atleast_1d(np.asarray(self.lower, dtype=np.float64))
        hi = np.atleast_1d(np.asarray(self.upper, dtype=np.float64))
        Domain.box(lo, hi)
        if not (isinstance(self.k, int) and 1 <= self.k <= 64):
            raise InvalidParameter("utility.k", "must be an integer in [1, 64]")
        if self.clip is not None and not (math.isfinite(self.clip) and self.clip > 0):
            raise InvalidParameter("utility.clip", "must be finite and positive")
        check_form(self.form)
        object.__setattr__(self, "_lo", lo)
        object.__setattr__(self, "_hi", hi)
        object.__setattr__(self, "_diameter", box_diameter(lo.tolist(), hi.tolist()))

    @property
    def domain(self) -> Domain:
        return Domain.box(np.tile(self._lo, self.k), np.tile(self._hi, self.k))

    @property
    def diameter(self) -> float:
        """Diameter of one centre's box (records and centres both lie in it)."""
        return self._diameter  # rounded up: dp_core.privacy.bounds

    @property
    def effective_clip(self) -> float:
        """τ, or +inf where none was asked for or τ >= the diameter (it can never bind)."""
        c = self.clip
        return math.inf if c is None or c >= self.diameter else float(c)

    @property
    def gradient_bound(self) -> float:
        return min(self.effective_clip, self.diameter)

    @property
    def loss_bound(self) -> float:
        return square_up(self.gradient_bound)

    def sensitivity(self, neighbouring: str, n_max: int) -> Sensitivity:
        if self.form == "loss":
            return sum_form_sensitivity(self.loss_bound, self.loss_bound, neighbouring, n_max)
        big_g = self.gradient_bound
        same_cell = min(self.diameter, 2.0 * big_g)
        return gradient_norm_sensitivity(
            big_g,
            neighbouring,
            n_max,
            replace_delta_u=max(same_cell, float_up(sqrt_up(Fraction(2)) * Fraction(big_g))),
            gradient_lipschitz=1.0,  # inside each Voronoi cell (g jumps across its faces)
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
        gradient = self.form == "gradient_norm"
        bound = self.gradient_bound if gradient else self.loss_bound
        clip = self.gradient_bound  # the distance clip; the loss bound is its square rounded up
        assignment_grid_sums(grid, clipped, self.k, clip, gradient, quantum, bound, limit, out)

    def prepare(self, records: Any) -> FloatArray:
        """The clipped records transposed, (d, n), for the fused pass."""
        return np.ascontiguousarray(self.clip_records(records).T)

    def loss(self, prepared: FloatArray, points: FloatArray) -> tuple[FloatArray, FloatArray]:
        if self.form == "gradient_norm":
            return assignment_gradient_loss(points, prepared, self.k, self.effective_clip)
        v = np.empty(points.shape[0])
        g = np.empty(points.shape)
        kmeans_loss(points, prepared, self.k, self.gradient_bound, v, g)
        return v, g

    def describe(self) -> dict[str, Any]:
        return describe(self)
