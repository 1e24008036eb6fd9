"""Gaussian kernel density estimates on top of the fused kernel sums (flows note §6, P1/P3).

``log_kde_self`` is the birth–death rate's density term (F 30): the log of the mean Gaussian
kernel at each particle over all particles, self term included. Because the self term is 1, the
sum is at least 1/N and cannot underflow, so the plain kernel sum is exact to rounding there.
``log_kde`` evaluates at arbitrary points, where a point far from every centre would underflow a
plain sum: it goes through the max-shifted log-sum-exp. Normalising constants are dropped
(they cancel in the centred birth–death rates).
"""

from __future__ import annotations

import numpy as np

from dp_core.engine.kernels import (
    GAUSSIAN,
    TILE,
    kernel_grad_sum_self,
    kernel_sum,
    kernel_sum_self,
    logsumexp_cost,
)

__all__ = ["kde_score_self", "log_kde", "log_kde_self"]

_SYMMETRIC_MIN = 4 * TILE


def log_kde_self(x: np.ndarray, bandwidth: float) -> np.ndarray:
    """``log((1/N) Σ_j exp(-|x_i - x_j|² / (2h²)))`` for every particle; x (N, d) -> (N,).

    Uses the symmetric kernel sum (each pair once) above ``_SYMMETRIC_MIN`` particles, where it
    was measured faster (docs/benchmarks.md); below, the plain sum has less overhead.
    """
    n = x.shape[0]
    w = np.full(n, 1.0 / n)
    if n >= _SYMMETRIC_MIN:
        return np.log(kernel_sum_self(x, w, GAUSSIAN, bandwidth))
    return np.log(kernel_sum(x, x, w, GAUSSIAN, bandwidth))


def kde_score_self(x: np.ndarray, bandwidth: float) -> np.ndarray:
    """∇ log KDE at the particles (the self term keeps the denominator >= 1/N); (N, d)."""
    n = x.shape[0]
    w = np.full(n, 1.0 / n)
    density = kernel_sum_self(x, w, GAUSSIAN, bandwidth)
    return kernel_grad_sum_self(x, w, GAUSSIAN, bandwidth) / density[:, None]


def log_kde(
    x: np.ndarray, centres: np.ndarray, bandwidth: float, weights: np.ndarray | None = None
) -> np.ndarray:
    """``log Σ_j w_j exp(-|x_i - c_j|² / (2h²))`` at arbitrary points; uniform weights 1/M by
    default. x (N, d), centres (M, d) -> (N,)."""
    m = centres.shape[0]
    w = np.full(m, 1.0 / m) if weights is None else np.asarray(weights, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_w = np.log(w)
    return logsumexp_cost(x, centres, log_w, np.zeros(m), bandwidth * bandwidth)
