"""Shared value types: the bounded parameter domain and array aliases.

Particles are ``float64`` C-contiguous arrays of shape ``(N, d)``; weights have shape ``(N,)``.
A :class:`Domain` is public: it is part of every schedule and certificate (certificates note §2:
Θ is a public bounded interval, box or ball).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from dp_core.errors import InvalidParameter

__all__ = ["Domain", "FloatArray", "Potential", "as_particles"]

FloatArray = npt.NDArray[np.float64]


class Potential(Protocol):
    """A target π ∝ exp(-V) given by a batch function returning V and ∇V.

    ``value_and_grad`` receives float64 C-contiguous (N, d) points inside the domain and returns
    ``(V (N,), ∇V (N, d))``. Utility potentials (V = -λu) and test targets implement it.
    """

    @property
    def dim(self) -> int: ...

    def value_and_grad(self, points: FloatArray) -> tuple[FloatArray, FloatArray]: ...


@dataclass(frozen=True)
class Domain:
    """A public bounded domain Θ ⊂ R^d: an axis-aligned box or a Euclidean ball.

    Box: ``lower[k] <= θ_k <= upper[k]``. Ball: ``|θ - center| <= radius``.
    Use :meth:`box` and :meth:`ball` to build one; both validate their inputs.
    """

    kind: Literal["box", "ball"]
    lower: tuple[float, ...] = ()
    upper: tuple[float, ...] = ()
    center: tuple[float, ...] = ()
    radius: float = 0.0

    @staticmethod
    def box(lower: npt.ArrayLike, upper: npt.ArrayLike) -> Domain:
        lo = np.atleast_1d(np.asarray(lower, dtype=np.float64))
        hi = np.atleast_1d(np.asarray(upper, dtype=np.float64))
        if lo.ndim != 1 or lo.shape != hi.shape or lo.size == 0:
            raise InvalidParameter("domain", "lower and upper must be equal-length vectors")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
            raise InvalidParameter("domain", "need finite bounds with lower < upper")
        return Domain("box", lower=tuple(lo.tolist()), upper=tuple(hi.tolist()))

    @staticmethod
    def ball(center: npt.ArrayLike, radius: float) -> Domain:
        c = np.atleast_1d(np.asarray(center, dtype=np.float64))
        if c.ndim != 1 or c.size == 0 or not np.all(np.isfinite(c)):
            raise InvalidParameter("domain", "center must be a finite vector")
        if not (np.isfinite(radius) and radius > 0):
            raise InvalidParameter("domain", "radius must be finite and positive")
        return Domain("ball", center=tuple(c.tolist()), radius=float(radius))

    @property
    def dim(self) -> int:
        return len(self.lower) if self.kind == "box" else len(self.center)

    @property
    def scale(self) -> float:
        """A public length scale: the smallest box side, or the ball diameter."""
        if self.kind == "box":
            return float(np.min(np.subtract(self.upper, self.lower)))
        return 2.0 * self.radius

    def engine_arrays(self) -> tuple[int, FloatArray, FloatArray]:
        """Encode for engine kernels: ``(kind_code, a, b)``.

        Box: ``(0, lower, upper)``. Ball: ``(1, center, [radius] * d)``.
        """
        if self.kind == "box":
            return 0, np.array(self.lower), np.array(self.upper)
        return 1, np.array(self.center), np.full(self.dim, self.radius)

    def describe(self) -> dict[str, object]:
        """JSON-ready public description."""
        if self.kind == "box":
            return {"kind": "box", "lower": list(self.lower), "upper": list(self.upper)}
        return {"kind": "ball", "center": list(self.center), "radius": self.radius}


def as_particles(points: npt.ArrayLike, field: str = "points") -> FloatArray:
    """Return ``points`` as a float64 C-contiguous (N, d) array; checks shape and finiteness."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidParameter(field, "expected a non-empty (N, d) array of points")
    if not np.all(np.isfinite(arr)):
        raise InvalidParameter(field, "points must be finite")
    return np.ascontiguousarray(arr)
