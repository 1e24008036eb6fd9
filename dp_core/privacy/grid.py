"""The exponential mechanism over a public grid of a low-dimensional domain (note §7.3), exact.

For a sum-form family (mean, regressions, k-means) with per-record loss ℓ ∈ [0, B], the grid
mechanism scores each point θ_g of a public grid by ``ũ(θ_g) = -Σ_x round(ℓ(θ_g; x)/q)`` with a
public quantum ``q = B / QUANTUM_DIVISIONS``: each record's contribution is an integer in
[0, ⌈B/q⌉] (``exact.grid_sensitivity``; the rounding of each record, not of the sum, is what
keeps the sensitivity exact), so Δ̃_osc = ⌈B/q⌉ under add/remove and twice that under
replace-one. The draw is the exact base-2 mechanism (31): DP as implemented. The privacy is
exact; the utility loss is at most the mesh times the loss's Lipschitz constant plus the
log|grid| term of (28), and n·q/2 from the rounding.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dp_core.errors import InvalidParameter
from dp_core.privacy import exact
from dp_core.types import Domain, FloatArray

__all__ = ["GRID_POINTS", "MAX_GRID_DIM", "QUANTUM_DIVISIONS", "grid_release", "public_grid"]

GRID_POINTS = 4096
MAX_GRID_DIM = 3
QUANTUM_DIVISIONS = 1024
_CHUNK = 1 << 22  # grid points × records per chunk of the loss evaluation


def public_grid(domain: Domain, max_points: int = GRID_POINTS) -> FloatArray:
    """Cell midpoints of a regular grid over the domain's bounding box (kept inside a ball):
    ``floor(max_points^(1/d))`` points per axis. Depends on the public domain only."""
    d = domain.dim
    if d > MAX_GRID_DIM:
        raise InvalidParameter("method", f"exact is available up to dimension {MAX_GRID_DIM}")
    per_axis = max(2, math.floor(max_points ** (1.0 / d) + 1e-9))
    if domain.kind == "box":
        lo, hi = np.array(domain.lower), np.array(domain.upper)
    else:
        c = np.array(domain.center)
        lo, hi = c - domain.radius, c + domain.radius
    axes = [lo[k] + (np.arange(per_axis) + 0.5) * (hi[k] - lo[k]) / per_axis for k in range(d)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, d)
    if domain.kind == "ball":
        grid = grid[np.sum((grid - np.array(domain.center)) ** 2, axis=1) <= domain.radius**2]
    return np.ascontiguousarray(grid)


def grid_release(
    utility: Any, records: Any, epsilon: float, neighbouring: str, n_samples: int
) -> FloatArray:
    """``n_samples`` independent exact draws, each ε-DP, for a family with ``record_losses``
    and ``loss_bound``; returns grid points (n_samples, d)."""
    grid = public_grid(utility.domain)
    bound = float(utility.loss_bound)
    quantum = bound / QUANTUM_DIVISIONS
    clipped = utility.clip_records(records)
    totals = np.zeros(grid.shape[0], dtype=np.int64)
    rows = max(1, _CHUNK // max(1, clipped.shape[0]))
    for g0 in range(0, grid.shape[0], rows):
        losses = utility.record_losses(clipped, grid[g0 : g0 + rows])  # (g, n)
        losses = np.clip(np.nan_to_num(losses, nan=bound), 0.0, bound)
        totals[g0 : g0 + rows] = np.rint(losses / quantum).astype(np.int64).sum(axis=1)
    osc = exact.grid_sensitivity(bound, quantum) * (1 if neighbouring == "add_remove" else 2)
    scores = (-totals).tolist()
    picks = [exact.exact_grid_mechanism(scores, epsilon, osc).index for _ in range(n_samples)]
    return grid[picks]
