"""Compiled potentials V (and ∇V) for public targets: isotropic Gaussian mixtures.

A potential is anything with ``dim`` and ``value_and_grad(points (N, d)) -> (V (N,), ∇V (N, d))``
(``dp_core.types.Potential``). The mixture here serves tests, benchmarks and public demo runs:
``π(x) ∝ Σ_k w_k N(x; μ_k, s_k² I)``, so

    V(x) = -log Σ_k w_k (2π s_k²)^{-d/2} exp(-|x - μ_k|² / (2 s_k²)),
    ∇V(x) = Σ_k r_k(x) (x - μ_k) / s_k²,   r_k = posterior responsibility of component k.

Evaluation is a parallel pass over points with a max-shifted log-sum-exp over components.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange

from dp_core.errors import InvalidParameter

__all__ = ["GaussianMixturePotential"]


@njit(parallel=True, cache=True, nogil=True)
def _mixture_value_and_grad(x, log_w, means, sds, v_out, g_out):
    n, d = x.shape
    kc = means.shape[0]
    for i in prange(n):
        logs = np.empty(kc)
        top = -np.inf
        for c in range(kc):
            r2 = 0.0
            for k in range(d):
                r2 += (x[i, k] - means[c, k]) ** 2
            s2 = sds[c] * sds[c]
            logs[c] = log_w[c] - 0.5 * d * math.log(2.0 * math.pi * s2) - 0.5 * r2 / s2
            top = max(top, logs[c])
        total = 0.0
        for c in range(kc):
            logs[c] = math.exp(logs[c] - top)
            total += logs[c]
        v_out[i] = -(top + math.log(total))
        for k in range(d):
            g = 0.0
            for c in range(kc):
                g += logs[c] * (x[i, k] - means[c, k]) / (sds[c] * sds[c])
            g_out[i, k] = g / total


@dataclass(frozen=True)
class GaussianMixturePotential:
    """V = -log of an isotropic Gaussian mixture density (module docstring).

    Parameters
    ----------
    weights : (K,) positive mixture weights (normalised here).
    means : (K, d) component means.
    sds : (K,) component standard deviations.
    """

    weights: np.ndarray
    means: np.ndarray
    sds: np.ndarray
    _log_w: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float64)
        mu = np.ascontiguousarray(np.asarray(self.means, dtype=np.float64))
        if mu.ndim == 1:
            mu = np.ascontiguousarray(mu[:, None])
        s = np.asarray(self.sds, dtype=np.float64)
        if w.ndim != 1 or mu.shape[0] != w.size or s.shape != w.shape:
            raise InvalidParameter("target", "weights (K,), means (K, d), sds (K,) must agree")
        if np.any(w <= 0) or np.any(s <= 0):
            raise InvalidParameter("target", "weights and sds must be positive")
        object.__setattr__(self, "weights", w / w.sum())
        object.__setattr__(self, "means", mu)
        object.__setattr__(self, "sds", s)
        object.__setattr__(self, "_log_w", np.log(w / w.sum()))

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def value_and_grad(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """V and ∇V at ``points`` (N, d) -> ((N,), (N, d))."""
        v = np.empty(points.shape[0])
        g = np.empty(points.shape)
        _mixture_value_and_grad(points, self._log_w, self.means, self.sds, v, g)
        return v, g
