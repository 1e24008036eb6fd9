"""Per-record integer contributions on a public grid, for the exact grid mechanism (note §7.3).

The exact exponential mechanism over a public grid needs each record's contribution as an
integer in public units that depends on that record and the grid point only: adding or removing
another record must never change it, or the integer sensitivity claim is void. So every kernel
here evaluates one record at a time with scalar float64 operations in a fixed order (no BLAS, no
vectorised reduction across records, no fastmath), rounds the result to public units, and only
then sums the integers (exact, order-free). Grid points run in parallel; records never do.

Two forms, as the utility families (accuracy note §3):

* loss form: ``round(min(max(ℓ, 0), B)/q)`` per record (NaN counts as B), summed into
  ``out[g, 0]``: an integer in [0, ⌈B/q⌉] per record;
* gradient form: the record's gradient g, clipped to norm G, divided by q and rounded per
  coordinate; a rounded vector whose squared norm exceeds ``limit²`` (never, by the triangle
  inequality, but checked in integers) is replaced by zero; summed into ``out[g, :]``.

``round`` is floor(v + 1/2) of the float quotient: monotone, so the loss-form bound
⌈fl(B/q)⌉ of ``exact.grid_sensitivity`` holds.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["assignment_grid_sums", "linear_grid_sums", "logistic_grid_sums"]


@njit(cache=True, nogil=True, inline="always")
def _round_loss(loss, bound, quantum):
    v = bound if loss != loss else min(max(loss, 0.0), bound)
    return np.int64(math.floor(v / quantum + 0.5))


@njit(cache=True, nogil=True, inline="always")
def _add_rounded_gradient(g, norm_bound, quantum, limit, row, rounded):
    """Clip g to norm G, round g/q per coordinate, add it to ``row`` if |ĝ|² <= limit²."""
    sq = 0.0
    for a in range(g.shape[0]):
        sq += g[a] * g[a]
    scale = 1.0 if sq <= norm_bound * norm_bound else norm_bound / math.sqrt(sq)
    total = np.int64(0)
    for a in range(g.shape[0]):
        v = g[a] * scale / quantum
        rounded[a] = np.int64(math.floor(v + 0.5)) if v == v else np.int64(0)
        total += rounded[a] * rounded[a]
    if total <= limit * limit:
        for a in range(g.shape[0]):
            row[a] += rounded[a]


@njit(parallel=True, cache=True, nogil=True)
def assignment_grid_sums(grid, records, k, clip, gradient, quantum, bound, limit, out):
    """Mean (k = 1) and k-means on grid points c = grid[i].reshape(k, d); records (n, d).

    Loss form: ℓ = min(min_j |x - c_j|², τ²). Gradient form: g = c_j* - x in the block of the
    nearest centre j* (ties to the lowest index), clipped to norm ``bound`` = G; ``clip`` is τ
    of the loss form (unused by the gradient form, whose clip is G). ``out`` (g, 1) or (g, k·d)
    int64, zeroed here.
    """
    n, d = records.shape
    t2 = clip * clip
    for i in prange(grid.shape[0]):
        theta = grid[i]
        row = out[i]
        row[:] = 0
        g = np.zeros(k * d)
        rounded = np.zeros(k * d, dtype=np.int64)
        for r in range(n):
            best = np.inf
            nearest = 0
            for j in range(k):
                s = 0.0
                for a in range(d):
                    diff = theta[j * d + a] - records[r, a]
                    s += diff * diff
                if s < best:
                    best = s
                    nearest = j
            if not gradient:
                row[0] += _round_loss(min(best, t2), bound, quantum)
                continue
            g[:] = 0.0
            for a in range(d):
                g[nearest * d + a] = theta[nearest * d + a] - records[r, a]
            _add_rounded_gradient(g, bound, quantum, limit, row, rounded)


@njit(parallel=True, cache=True, nogil=True)
def linear_grid_sums(grid, records, gradient, quantum, bound, limit, out):
    """Least squares; records (n, d + 1), the target last. Loss form ℓ = (y - θ·x)²/2;
    gradient form g = (θ·x - y) x clipped to norm ``bound``."""
    n = records.shape[0]
    d = records.shape[1] - 1
    for i in prange(grid.shape[0]):
        theta = grid[i]
        row = out[i]
        row[:] = 0
        g = np.zeros(d)
        rounded = np.zeros(d, dtype=np.int64)
        for r in range(n):
            dot = 0.0
            for a in range(d):
                dot += theta[a] * records[r, a]
            residual = dot - records[r, d]
            if not gradient:
                row[0] += _round_loss(0.5 * residual * residual, bound, quantum)
                continue
            for a in range(d):
                g[a] = residual * records[r, a]
            _add_rounded_gradient(g, bound, quantum, limit, row, rounded)


@njit(parallel=True, cache=True, nogil=True)
def logistic_grid_sums(grid, records, gradient, quantum, bound, limit, out):
    """Logistic loss; records (n, d + 1), the last column a label y ∈ {-1, +1}. Loss form
    ℓ = log(1 + e^{-y θ·x}); gradient form g = -y x σ(-y θ·x) clipped to norm ``bound``."""
    n = records.shape[0]
    d = records.shape[1] - 1
    for i in prange(grid.shape[0]):
        theta = grid[i]
        row = out[i]
        row[:] = 0
        g = np.zeros(d)
        rounded = np.zeros(d, dtype=np.int64)
        for r in range(n):
            dot = 0.0
            for a in range(d):
                dot += theta[a] * records[r, a]
            y = records[r, d]
            m = y * dot
            e = math.exp(-abs(m))
            if not gradient:
                row[0] += _round_loss(max(-m, 0.0) + math.log1p(e), bound, quantum)
                continue
            sig = (e if m >= 0.0 else 1.0) / (1.0 + e)  # σ(-m)
            for a in range(d):
                g[a] = -y * records[r, a] * sig
            _add_rounded_gradient(g, bound, quantum, limit, row, rounded)
