"""Standardization of the public points (aeot.md §1, (A 1)).

Centre the points at their weighted mean ȳ and divide by one scalar
``s = (mean per-coordinate weighted variance)^{1/2}``, so the geometry is preserved and ε is in
units of s². Generated points map back by ``y ↦ ȳ + s·y``; this commutes with T_ε because T_ε(x)
is a convex combination of the codes (A 12). Degenerate clouds (s = 0: one point, or all equal)
use s = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dp_core.types import FloatArray

__all__ = ["Standardization", "standardize"]


@dataclass(frozen=True)
class Standardization:
    """``standardized = (points − mean) / scale``; ``points = mean + scale · standardized``."""

    mean: FloatArray
    scale: float

    def forward(self, points: FloatArray) -> FloatArray:
        return np.ascontiguousarray((points - self.mean) / self.scale)

    def inverse(self, z: FloatArray) -> FloatArray:
        return self.mean + self.scale * z


def standardize(points: FloatArray, weights: FloatArray) -> Standardization:
    """The standardization of ``points`` (n, d) under probability ``weights`` (n,) (A 1)."""
    mean = weights @ points
    var = weights @ ((points - mean) ** 2)
    scale = float(np.sqrt(np.mean(var)))
    if not (np.isfinite(scale) and scale > 0.0):
        scale = 1.0
    return Standardization(mean=np.asarray(mean, dtype=np.float64), scale=scale)
