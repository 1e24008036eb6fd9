"""The k-means utility (certificates note §9.3; API.md ``kmeans``).

θ = (c_1, ..., c_k), each centre in the box of the columns' public bounds (Θ = box^k, flattened
to dimension k·d); records clipped to the box; ``u = -Σ_x min(min_j |x - c_j|², τ²)``.
Per record ℓ ∈ [0, B] with B = min(τ², diam²), so add/remove Δu = Δ_osc = B, replace-one
Δ_osc = 2B, U = n_max·B. Kinks on Voronoi boundaries and the clip sphere: route (9) only.
The posterior is invariant under relabelling the centres; released samples are therefore put
in a canonical order (lexicographic by coordinates) — post-processing, no privacy cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dp_core.engine.utility_kernels import kmeans_loss
from dp_core.errors import InvalidParameter
from dp_core.privacy.utilities.base import Sensitivity, clip_columns, describe, sum_form_sensitivity
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
    """k centres in the box of the columns, clip radius τ. Records: (n, d)."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    k: int
    clip: float
    family: str = "kmeans"
    _lo: FloatArray = field(init=False, repr=False)
    _hi: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lo = np.atleast_1d(np.asarray(self.lower, dtype=np.float64))
        hi = np.atleast_1d(np.asarray(self.upper, dtype=np.float64))
        Domain.box(lo, hi)
        if not (isinstance(self.k, int) and 1 <= self.k <= 64):
            raise InvalidParameter("utility.k", "must be an integer in [1, 64]")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise InvalidParameter("utility.clip", "must be finite and positive")
        object.__setattr__(self, "_lo", lo)
        object.__setattr__(self, "_hi", hi)

    @property
    def domain(self) -> Domain:
        return Domain.box(np.tile(self._lo, self.k), np.tile(self._hi, self.k))

    @property
    def loss_bound(self) -> float:
        return min(self.clip**2, float(np.sum((self._hi - self._lo) ** 2)))

    def sensitivity(self, neighbouring: str, n_max: int) -> Sensitivity:
        return sum_form_sensitivity(self.loss_bound, self.loss_bound, neighbouring, n_max)

    def clip_records(self, records: Any) -> FloatArray:
        """Records clipped to the box, (n, d)."""
        return clip_columns(records, self._lo, self._hi, "records")

    def record_losses(self, clipped: FloatArray, thetas: FloatArray) -> FloatArray:
        """ℓ(c; x) = min(min_j |x - c_j|², τ²) for every grid point c and record, (g, n)."""
        centres = thetas.reshape(thetas.shape[0], self.k, -1)
        d2 = np.sum((centres[:, :, None, :] - clipped[None, None, :, :]) ** 2, axis=3)
        return np.minimum(d2.min(axis=1), self.clip**2)

    def prepare(self, records: Any) -> FloatArray:
        """The clipped records transposed, (d, n), for the fused pass."""
        return np.ascontiguousarray(self.clip_records(records).T)

    def loss(self, prepared: FloatArray, points: FloatArray) -> tuple[FloatArray, FloatArray]:
        v = np.empty(points.shape[0])
        g = np.empty(points.shape)
        kmeans_loss(points, prepared, self.k, self.clip, v, g)
        return v, g

    def describe(self) -> dict[str, Any]:
        return describe(self)
