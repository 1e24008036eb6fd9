"""Dense kernel matrices for the one M×M solve of the DrMMD flow (flows note §3.2, P6).

:func:`kernel_matrix` forms ``K[i, j] = k(x_i, y_j)`` for the kernels of :mod:`kernels` (same
codes, same formulas, same vectorisable exp). It is for the target Gram ``K_YY`` that the DrMMD
closed form (F 11) factorises once (M ≲ 10⁴); particle–particle and particle–target reductions
never form a matrix and go through :mod:`kernels` instead.

Squared distances are accumulated coordinate by coordinate from explicit differences (no
``|x|² + |y|² − 2x·y`` expansion, so no cancellation): the diagonal of ``k(Y, Y)`` is exactly 1 for
every kernel and the matrix is exactly symmetric. Parallel over rows, deterministic.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from dp_core.engine.fastexp import exp, fma
from dp_core.engine.kernels import GAUSSIAN, IMQ

__all__ = ["kernel_matrix"]


@njit(parallel=True, cache=True, nogil=True)
def _kernel_matrix_kernel(x, yT, kind, sigma, out):
    n, d = x.shape
    m = yT.shape[1]
    inv_s2 = 1.0 / (sigma * sigma)
    for i in prange(n):
        row = out[i]
        xi0 = x[i, 0]
        y0 = yT[0]
        for j in range(m):
            diff = xi0 - y0[j]
            row[j] = diff * diff
        for k in range(1, d):
            xik = x[i, k]
            yk = yT[k]
            for j in range(m):
                diff = xik - yk[j]
                row[j] = fma(diff, diff, row[j])
        if kind == GAUSSIAN:
            c = -0.5 * inv_s2
            for j in range(m):
                row[j] = exp(c * row[j])
        elif kind == IMQ:
            for j in range(m):
                row[j] = 1.0 / math.sqrt(fma(row[j], inv_s2, 1.0))
        else:
            for j in range(m):
                row[j] = exp(-math.sqrt(row[j]) / sigma)


def kernel_matrix(x: np.ndarray, y: np.ndarray, kind: int, sigma: float) -> np.ndarray:
    """``K[i, j] = k(x_i, y_j)`` for x (N, d), y (M, d) float64 C-contiguous; returns (N, M).

    ``kind`` is ``kernels.GAUSSIAN``, ``IMQ`` or ``LAPLACE`` (formulas in :mod:`kernels`),
    ``sigma`` the bandwidth. Memory N·M doubles: for small target sets only.
    """
    out = np.empty((x.shape[0], y.shape[0]))
    _kernel_matrix_kernel(x, np.ascontiguousarray(y.T), kind, float(sigma), out)
    return out
