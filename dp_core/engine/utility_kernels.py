"""Compiled utility sums over private records, evaluated at every particle (certificates note §9).

Each kernel returns the *loss* ``L(θ) = Σ_x ℓ(θ; x)`` and its gradient at N points, so that
``u = -L`` and the exponential-mechanism potential is ``V = λ L``. Records arrive already clipped
to their public bounds (the utility modules do that). Where an exact summary makes a pass over
the records unnecessary it is used (ARCHITECTURE "Records scale too"):

* quantile counts ``N_D(θ) = #{x <= θ}`` by binary search in the sorted records, O(log n);
* the 1-D clipped mean ``Σ min((θ - x)², c²)`` from sorted records and prefix sums of x and x²,
  O(log n) per point;

and the rest — multi-d clipped mean, logistic loss, k-means — is one fused ``prange`` pass over
the records per point, O(n d) with no temporary arrays.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = [
    "clipped_mean_loss_1d",
    "clipped_mean_loss_nd",
    "kmeans_loss",
    "logistic_loss",
    "quantile_counts",
]


@njit(parallel=True, cache=True, nogil=True)
def quantile_counts(points, sorted_records, out):
    """out[i] = #{x <= θ_i}; points (N, 1), sorted_records (n,) ascending."""
    for i in prange(points.shape[0]):
        out[i] = np.searchsorted(sorted_records, points[i, 0], side="right")


@njit(parallel=True, cache=True, nogil=True)
def clipped_mean_loss_1d(points, sorted_records, prefix, prefix_sq, clip, v_out, g_out):
    """L(θ) = Σ_x min((θ - x)², c²) and dL/dθ from sorted records and prefix sums.

    ``prefix[k] = Σ_{j<k} x_j`` and ``prefix_sq[k] = Σ_{j<k} x_j²`` (length n + 1). Records with
    |θ - x| < c contribute (θ - x)² = θ² - 2θx + x²; the others contribute c².
    """
    n = sorted_records.shape[0]
    c2 = clip * clip
    for i in prange(points.shape[0]):
        theta = points[i, 0]
        lo = np.searchsorted(sorted_records, theta - clip, side="right")
        hi = np.searchsorted(sorted_records, theta + clip, side="left")
        m = hi - lo
        s1 = prefix[hi] - prefix[lo]
        s2 = prefix_sq[hi] - prefix_sq[lo]
        v_out[i] = m * theta * theta - 2.0 * theta * s1 + s2 + (n - m) * c2
        g_out[i, 0] = 2.0 * (m * theta - s1)


@njit(parallel=True, cache=True, nogil=True)
def clipped_mean_loss_nd(points, records, clip, v_out, g_out):
    """L(θ) = Σ_x min(|θ - x|², c²) and ∇L = Σ_{|θ-x|<c} 2(θ - x); points (N, d), records (n, d)."""
    n, d = records.shape
    c2 = clip * clip
    for i in prange(points.shape[0]):
        total = 0.0
        for k in range(d):
            g_out[i, k] = 0.0
        for r in range(n):
            r2 = 0.0
            for k in range(d):
                r2 += (points[i, k] - records[r, k]) ** 2
            if r2 < c2:
                total += r2
                for k in range(d):
                    g_out[i, k] += 2.0 * (points[i, k] - records[r, k])
            else:
                total += c2
        v_out[i] = total


@njit(parallel=True, cache=True, nogil=True)
def logistic_loss(points, features, labels, v_out, g_out):
    """L(θ) = Σ log(1 + exp(-y θ·x)), y ∈ {-1, +1}, and ∇L = -Σ y x σ(-y θ·x).

    Evaluated stably: log(1 + e^{-m}) = max(-m, 0) + log1p(e^{-|m|}).
    """
    n, d = features.shape
    for i in prange(points.shape[0]):
        total = 0.0
        for k in range(d):
            g_out[i, k] = 0.0
        for r in range(n):
            m = 0.0
            for k in range(d):
                m += points[i, k] * features[r, k]
            m *= labels[r]
            total += max(-m, 0.0) + math.log1p(math.exp(-abs(m)))
            # σ(-m) = 1 / (1 + e^m), computed without overflow
            s = 1.0 / (1.0 + math.exp(m)) if m < 0.0 else math.exp(-m) / (1.0 + math.exp(-m))
            for k in range(d):
                g_out[i, k] -= labels[r] * features[r, k] * s
        v_out[i] = total


@njit(parallel=True, cache=True, nogil=True)
def kmeans_loss(points, records, k, clip, v_out, g_out):
    """L(c) = Σ_x min(min_j |x - c_j|², τ²) for centres c = points[i].reshape(k, d), and the
    (a.e.) gradient ∂L/∂c_j = Σ_{x: j nearest, dist < τ} 2(c_j - x)."""
    n, d = records.shape
    t2 = clip * clip
    for i in prange(points.shape[0]):
        total = 0.0
        for q in range(k * d):
            g_out[i, q] = 0.0
        for r in range(n):
            best = np.inf
            arg = 0
            for j in range(k):
                r2 = 0.0
                for a in range(d):
                    r2 += (points[i, j * d + a] - records[r, a]) ** 2
                if r2 < best:
                    best = r2
                    arg = j
            if best < t2:
                total += best
                for a in range(d):
                    g_out[i, arg * d + a] += 2.0 * (points[i, arg * d + a] - records[r, a])
            else:
                total += t2
        v_out[i] = total
