"""Semi-discrete OT reductions for the AE-OT / smoothed AE-OT generators (aeot.md §4).

The hard-map kernel writes scores in the cost form of aeot.md §1: for source points ``x_b`` and
codes ``y_j`` with ``φ_j = h_j + ½|y_j|²``, the affine pieces are ``a_j(x) = ½|x|² + s_j(x)`` with
``s_j(x) = φ_j − ½|x − y_j|²`` (exact differences, so the top-2 gap is exact to round-off).

* :func:`smoothed_energy_terms` — one evaluation of the smoothed energy (A 13) in the affine
  form ``a_j(x) = ⟨x, y_j⟩ + h_j``: the row log-sum-exp ``A_b = logsumexp_j(a_j(x_b)/ε)`` (P3
  over rows) and the soft cell masses ``m_j = B⁻¹ Σ_b exp(a_j(x_b)/ε − A_b)`` (P3 again over
  columns with row offsets ``−ε A_b``, aeot.md §4 step 3). Two register-blocked passes of
  :func:`dp_core.engine.affine.affine_logsumexp`, 2·Bn exps, memory O((B + n)d), never a B × n
  matrix; deterministic. (The affine form has no ``|x|² − 2⟨x, y⟩`` cancellation to fear: only
  differences of scores matter, and points are standardized, so ``|⟨x, y⟩|`` stays O(d).)
* :func:`top2_cost` — the max / top-2 variant of P3 (aeot.md §4 "Fit (hard)"): per row the two
  largest scores and their indices, for the hard map T_0 (A 3), the hard cell masses (A 7), the gap
  of (A 17) and AE-OT's angle test (A 11′). Tiled over columns with a tile-max skip (a tile whose
  maximum does not beat the current second best is not scanned); ties go to the lower index.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from dp_core.engine import kernels
from dp_core.engine.affine import affine_logsumexp
from dp_core.engine.kernels import TILE, _sq_dists, _tree_max

__all__ = ["smoothed_energy_terms", "top2_cost"]

_ROWS_PER_BLOCK = 8
_NEG_INF = -np.inf


@njit(parallel=True, cache=True, nogil=True)
def _top2_kernel(x, yT, f, m, idx_out, val_out):
    n = x.shape[0]
    mp = yT.shape[1]
    nblocks = (n + _ROWS_PER_BLOCK - 1) // _ROWS_PER_BLOCK
    for b in prange(nblocks):
        d2 = np.empty(TILE)
        s = np.empty(TILE)
        tmp = np.empty(TILE)
        for i in range(b * _ROWS_PER_BLOCK, min(n, (b + 1) * _ROWS_PER_BLOCK)):
            v1 = _NEG_INF
            v2 = _NEG_INF
            i1 = -1
            i2 = -1
            for j0 in range(0, mp, TILE):
                _sq_dists(x, i, yT, j0, d2)
                ft = f[j0 : j0 + TILE]
                for t in range(TILE):
                    s[t] = ft[t] - 0.5 * d2[t]
                    tmp[t] = s[t]
                if _tree_max(tmp) <= v2 and i2 >= 0:
                    continue
                for t in range(min(TILE, m - j0)):
                    st = s[t]
                    if st > v1:
                        v2 = v1
                        i2 = i1
                        v1 = st
                        i1 = j0 + t
                    elif st > v2 or i2 < 0:
                        v2 = st
                        i2 = j0 + t
            idx_out[i, 0] = i1
            idx_out[i, 1] = i2 if i2 >= 0 else i1
            val_out[i, 0] = v1
            val_out[i, 1] = v2 if i2 >= 0 else v1


def top2_cost(x: np.ndarray, y: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-2 of ``s_ij = f_j − ½|x_i − y_j|²`` over j for every row i.

    Parameters
    ----------
    x : (N, d) float64 C-contiguous source points.
    y : (M, d) float64 codes, M >= 1.
    f : (M,) float64 scores' offsets (φ = h + ½|y|² for the affine pieces of (A 2)).

    Returns
    -------
    (idx (N, 2) int64, val (N, 2) float64): the best and second-best index and score per row
    (with M = 1 both columns repeat the single code). ``argmax_j a_j(x_i) = idx[i, 0]`` (A 3) and
    ``gap(x_i) = val[i, 0] − val[i, 1]`` (A 17).
    """
    yT, fp = kernels._transposed_padded(y, f, _NEG_INF)
    idx = np.empty((x.shape[0], 2), dtype=np.int64)
    val = np.empty((x.shape[0], 2))
    _top2_kernel(x, yT, fp, y.shape[0], idx, val)
    return idx, val


def smoothed_energy_terms(
    x: np.ndarray, y: np.ndarray, h: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Row log-sum-exps and soft cell masses of the smoothed semi-discrete energy (A 13).

    Parameters
    ----------
    x : (B, d) float64 source sample.
    y : (n, d) float64 codes.
    h : (n,) heights.
    eps : temperature ε > 0.

    Returns
    -------
    (A (B,), m (n,)) with ``A_b = log Σ_j exp((h_j + ⟨x_b, y_j⟩)/ε)``, so that the smoothed
    potential is ``u_ε(x_b) = ε A_b`` (A 11), and the soft cell masses
    ``m_j = B⁻¹ Σ_b exp((h_j + ⟨x_b, y_j⟩)/ε − A_b)`` (Σ m = 1 up to round-off). The energy is
    ``B⁻¹ Σ_b ε A_b − Σ_j ν_j h_j`` and its gradient ``m − ν`` (A 13).
    """
    rows, _ = affine_logsumexp(x, y, h, eps)
    # columns: log Σ_b exp((−ε A_b + ⟨y_j, x_b⟩)/ε), then add h_j/ε and divide by B
    cols, _ = affine_logsumexp(y, x, -eps * rows, eps)
    masses = np.exp(cols + h / eps - math.log(x.shape[0]))
    return rows, masses
