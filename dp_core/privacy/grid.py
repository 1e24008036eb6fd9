"""The exponential mechanism over a public grid of a low-dimensional domain (note §7.3), exact.

For the families with a per-record loss ℓ or gradient g (mean, regressions, k-means) the grid
mechanism scores each point θ_g of a public grid with integers in public units, from per-record
integer contributions (:mod:`dp_core.engine.grid_scores`: one record at a time, so a record's
contribution never depends on another record), and draws with the exact base-2 mechanism (31):
DP as implemented.

* gradient form (accuracy note §3): each record's gradient, clipped to norm G, is divided by the
  public quantum ``q = G / QUANTUM_DIVISIONS`` and rounded per coordinate, giving an integer
  vector ĝ with |ĝ| <= G/q + √d/2 <= K (the integer ``limit``); the score is
  ``ũ(θ_g) = -⌈|Σ_x ĝ(θ_g; x)|⌉`` computed in integers. Adding a record moves |Σĝ| by at most
  |ĝ| <= K and the ceiling by at most K, so Δ̃u = K and Δ̃_osc = 2K (add/remove), 4K
  (replace-one, no cancellation claimed).
* loss form: ``ũ(θ_g) = -Σ_x round(ℓ(θ_g; x)/q)`` with ``q = B / QUANTUM_DIVISIONS``; each
  record contributes an integer in [0, ⌈B/q⌉] (``exact.grid_sensitivity``), so Δ̃_osc = ⌈B/q⌉
  under add/remove and twice that under replace-one.

The privacy is exact; the utility loss is at most the mesh times the utility's Lipschitz
constant plus the log|grid| term of (28), and the rounding (n·q/2 per coordinate).
:func:`grid_inverse_temperature` is the λ actually sampled, in the utility's own units.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dp_core.errors import InvalidParameter
from dp_core.privacy import exact
from dp_core.types import Domain, FloatArray

__all__ = [
    "GRID_POINTS",
    "MAX_GRID_DIM",
    "QUANTUM_DIVISIONS",
    "grid_inverse_temperature",
    "grid_release",
    "grid_scores",
    "public_grid",
]

GRID_POINTS = 4096
MAX_GRID_DIM = 3
QUANTUM_DIVISIONS = 1024


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


def _units(utility: Any) -> tuple[bool, float, int]:
    """(gradient form?, quantum q, integer sensitivity unit K) — public parameters only."""
    gradient = utility.form == "gradient_norm"
    bound = float(utility.gradient_bound if gradient else utility.loss_bound)
    quantum = bound / QUANTUM_DIVISIONS
    if gradient:
        dim = utility.domain.dim
        return True, quantum, math.ceil(QUANTUM_DIVISIONS * (1 + 1e-9) + math.sqrt(dim) / 2)
    return False, quantum, exact.grid_sensitivity(bound, quantum)


def _osc(utility: Any, neighbouring: str) -> int:
    gradient, _, unit = _units(utility)
    return unit * (2 if gradient else 1) * (1 if neighbouring == "add_remove" else 2)


def grid_inverse_temperature(utility: Any, epsilon: float, neighbouring: str) -> float:
    """The λ of π ∝ exp(λu) that :func:`grid_release` samples at a per-sample ε: the base
    b = e^{-ε/Δ̃_osc} per integer unit, one unit being q of u (up to the rounding of (31))."""
    _, quantum, _ = _units(utility)
    return epsilon / (_osc(utility, neighbouring) * quantum)


def _ceil_norm(row: list[int]) -> int:
    square = sum(v * v for v in row)
    root = math.isqrt(square)
    return root if root * root == square else root + 1


def grid_scores(utility: Any, records: Any, grid: FloatArray) -> list[int]:
    """The integer scores ũ(θ_g) of the module docstring for every grid point."""
    gradient, quantum, unit = _units(utility)
    clipped = np.ascontiguousarray(utility.clip_records(records))
    width = grid.shape[1] if gradient else 1
    sums = np.empty((grid.shape[0], width), dtype=np.int64)
    utility.grid_sums(clipped, np.ascontiguousarray(grid), quantum, unit if gradient else 0, sums)
    if gradient:
        return [-_ceil_norm(row) for row in sums.tolist()]
    return (-sums[:, 0]).tolist()


def grid_release(
    utility: Any, records: Any, epsilon: float, neighbouring: str, n_samples: int
) -> FloatArray:
    """``n_samples`` independent exact draws, each ε-DP, for a family with ``grid_sums``;
    returns grid points (n_samples, d)."""
    grid = public_grid(utility.domain)
    scores = grid_scores(utility, records, grid)
    osc = _osc(utility, neighbouring)
    picks = [exact.exact_grid_mechanism(scores, epsilon, osc).index for _ in range(n_samples)]
    return grid[picks]
