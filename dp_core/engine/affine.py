"""Register-blocked log-sum-exp and soft-max barycentre of affine scores (aeot.md §4, P3 / P4).

For points ``x_i`` and ``y_j`` and offsets ``f_j`` the scores are affine in ``x``:
``s_ij = (f_j + ⟨x_i, y_j⟩)/ε`` (AE-OT's pieces ``a_j(x) = ⟨x, y_j⟩ + h_j``, aeot.md (A 2)). This
module reduces them per row without ever forming an N × M matrix:

* :func:`affine_logsumexp` — ``A_i = log Σ_j exp(s_ij)`` (P3), and fused in the same pass, on
  request, the soft-max barycentre ``T_i = Σ_j softmax_j(s_ij) y_j`` (P4, aeot.md (A 12)).

Unlike the distance-form kernels of :mod:`dp_core.engine.kernels`, which stream one row at a time
through memory-resident per-lane partial sums, the scores here are a small matrix product, so the
kernel is blocked for registers: four rows share every load of a ``(4, TILE)`` slab of ``yᵀ``, four
coordinates are folded per pass with fused multiply-adds, and the exp sums and barycentre
coordinates are reduced in registers. That last step needs the ``reassoc`` fast-math flag (and only
that one: no finite-math assumptions, so infinities and NaN keep IEEE meaning): the order of each
reduction is then fixed by the compiled code rather than by the source, so results are still
bit-for-bit deterministic and independent of the number of threads (every row is reduced inside
one thread), but not identical to a left-to-right sum. The architecture note forbids fast-math only
on paths that feed a certificate, an acceptance decision or a birth–death rate; the users here are
the generators' fit and sampling on public points, none of which do.

Each row's stabiliser is its first tile's maximum, raised (with rescaling) only when a later tile's
exp sum would pass ``2^600``: most tiles need no maximum at all, nothing overflows, and since the
stabiliser never exceeds the row's true maximum, only terms below ``e^-708`` times the largest are
flushed to zero (as the engine's :func:`dp_core.engine.fastexp.exp` does anyway). When all four
rows of a block have only zero terms in a tile, the barycentre pass over it is skipped: an exact
shortcut (the terms are exactly zero) that pays off when ε is small and most weights underflow.

Memory is O((N + M) d) for the padded copies plus O(TILE) per thread.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from dp_core.engine.fastexp import exp, fma
from dp_core.engine.kernels import TILE, _tile_max

__all__ = ["affine_logsumexp", "affine_top2"]

_ROWS = 4
_NEG_INF = -np.inf
_REDUCE = {"reassoc", "contract"}
_RESCALE_ABOVE = 2.0**600


@njit(cache=True, nogil=True, inline="always", fastmath=_REDUCE)
def _scores(xs, i, yT, j0, f, s):
    """``s[r, t] = f[j0 + t] + Σ_k xs[i + r, k] yT[k, j0 + t]`` for the four rows of a block.

    Coordinates are folded four at a time (``yT`` has a multiple of 4 rows), so each pass over the
    tile does 16 multiply-adds per 4 loads of ``yᵀ`` and 4 loads and stores of ``s``.
    """
    s0 = s[0]
    s1 = s[1]
    s2 = s[2]
    s3 = s[3]
    ft = f[j0 : j0 + TILE]
    for t in range(TILE):
        s0[t] = ft[t]
        s1[t] = ft[t]
        s2[t] = ft[t]
        s3[t] = ft[t]
    for g in range(0, yT.shape[0], 4):
        y0 = yT[g, j0 : j0 + TILE]
        y1 = yT[g + 1, j0 : j0 + TILE]
        y2 = yT[g + 2, j0 : j0 + TILE]
        y3 = yT[g + 3, j0 : j0 + TILE]
        a00, a01, a02, a03 = xs[i, g], xs[i, g + 1], xs[i, g + 2], xs[i, g + 3]
        a10, a11, a12, a13 = xs[i + 1, g], xs[i + 1, g + 1], xs[i + 1, g + 2], xs[i + 1, g + 3]
        a20, a21, a22, a23 = xs[i + 2, g], xs[i + 2, g + 1], xs[i + 2, g + 2], xs[i + 2, g + 3]
        a30, a31, a32, a33 = xs[i + 3, g], xs[i + 3, g + 1], xs[i + 3, g + 2], xs[i + 3, g + 3]
        for t in range(TILE):
            v0 = y0[t]
            v1 = y1[t]
            v2 = y2[t]
            v3 = y3[t]
            s0[t] = fma(a03, v3, fma(a02, v2, fma(a01, v1, fma(a00, v0, s0[t]))))
            s1[t] = fma(a13, v3, fma(a12, v2, fma(a11, v1, fma(a10, v0, s1[t]))))
            s2[t] = fma(a23, v3, fma(a22, v2, fma(a21, v1, fma(a20, v0, s2[t]))))
            s3[t] = fma(a33, v3, fma(a32, v2, fma(a31, v1, fma(a30, v0, s3[t]))))


@njit(cache=True, nogil=True, inline="always", fastmath=_REDUCE)
def _exp_sum(sr, er, m):
    """``er[t] = exp(sr[t] − m)``; returns their sum."""
    acc = 0.0
    for t in range(TILE):
        e = exp(sr[t] - m)
        er[t] = e
        acc += e
    return acc


@njit(cache=True, nogil=True, inline="always")
def _exp_row(sr, er, r, stab, total, bary, d):
    """Row r's tile terms ``er = exp(sr − stab[r])``, their sum added to ``total[r]``.

    The stabiliser ``stab[r]`` is the first tile's maximum and is raised (rescaling the row's
    sums) only when a tile's sum exceeds :data:`_RESCALE_ABOVE`, so most tiles need no maximum
    at all. Every term is at most ``2^600``-scaled, so nothing overflows, and since the stabiliser
    never exceeds the row's maximum, no term is flushed that an exact running maximum would keep.
    Returns False when every term of the tile is exactly zero (``er`` is then all zeros).
    """
    if stab[r] == _NEG_INF:
        tile_max = _tile_max(sr)
        if tile_max == _NEG_INF:
            er[:] = 0.0
            return False
        stab[r] = tile_max
    acc = _exp_sum(sr, er, stab[r])
    if not acc <= _RESCALE_ABOVE:
        tile_max = _tile_max(sr)
        rescale = exp(stab[r] - tile_max)
        total[r] *= rescale
        for k in range(d):
            bary[r, k] *= rescale
        stab[r] = tile_max
        acc = _exp_sum(sr, er, tile_max)
    total[r] += acc
    return acc > 0.0


@njit(cache=True, nogil=True, inline="always", fastmath=_REDUCE)
def _bary_tile(s, yT, j0, d, bary):
    """``bary[r, k] += Σ_t s[r, t] yT[k, j0 + t]`` for the block's four rows, two coordinates
    per pass (``yT`` has a multiple of 4 rows; padding coordinates are zero and not stored)."""
    e0 = s[0]
    e1 = s[1]
    e2 = s[2]
    e3 = s[3]
    for k in range(0, d, 2):
        ya = yT[k, j0 : j0 + TILE]
        yb = yT[k + 1, j0 : j0 + TILE]
        a0 = a1 = a2 = a3 = 0.0
        b0 = b1 = b2 = b3 = 0.0
        for t in range(TILE):
            va = ya[t]
            vb = yb[t]
            f0 = e0[t]
            f1 = e1[t]
            f2 = e2[t]
            f3 = e3[t]
            a0 += f0 * va
            a1 += f1 * va
            a2 += f2 * va
            a3 += f3 * va
            b0 += f0 * vb
            b1 += f1 * vb
            b2 += f2 * vb
            b3 += f3 * vb
        bary[0, k] += a0
        bary[1, k] += a1
        bary[2, k] += a2
        bary[3, k] += a3
        bary[0, k + 1] += b0
        bary[1, k + 1] += b1
        bary[2, k + 1] += b2
        bary[3, k + 1] += b3


@njit(parallel=True, cache=True, nogil=True, fastmath=_REDUCE)
def _affine_kernel(xs, yT, f, d_bary, lse_out, bary_out):
    n_blocks = xs.shape[0] // _ROWS
    mp = yT.shape[1]
    for b in prange(n_blocks):
        i = b * _ROWS
        s = np.empty((_ROWS, TILE))
        e = np.empty((_ROWS, TILE))
        stab = np.full(_ROWS, _NEG_INF)
        total = np.zeros(_ROWS)
        bary = np.zeros((_ROWS, d_bary + 1))
        for j0 in range(0, mp, TILE):
            _scores(xs, i, yT, j0, f, s)
            live = 0
            for r in range(_ROWS):
                if _exp_row(s[r], e[r], r, stab, total, bary, d_bary):
                    live += 1
            if live > 0 and d_bary > 0:
                _bary_tile(e, yT, j0, d_bary, bary)
        for r in range(_ROWS):
            lse_out[i + r] = stab[r] + np.log(total[r]) if stab[r] != _NEG_INF else _NEG_INF
            for k in range(d_bary):
                bary_out[i + r, k] = bary[r, k] / total[r]


def affine_logsumexp(
    x: np.ndarray, y: np.ndarray, f: np.ndarray, eps: float, *, barycentre: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """P3 / P4 for affine scores ``s_ij = (f_j + ⟨x_i, y_j⟩)/ε``.

    Parameters
    ----------
    x : (N, d) float64 points (rows of the reduction).
    y : (M, d) float64 points, M >= 1.
    f : (M,) float64 offsets (``-inf`` allowed: that column is ignored).
    eps : temperature ε > 0.
    barycentre : also return ``T_i = Σ_j softmax_j(s_ij) y_j``.

    Returns
    -------
    (A (N,), T (N, d) or None) with ``A_i = log Σ_j exp(s_ij)`` (``-inf`` for a row whose
    offsets are all ``-inf``).
    """
    n, d = x.shape
    xs, yT, fs = _padded(x, y, f, 1.0 / float(eps))
    lse = np.empty(xs.shape[0])
    d_bary = d if barycentre else 0
    bary = np.empty((xs.shape[0], d_bary))
    _affine_kernel(xs, yT, fs, d_bary, lse, bary)
    return lse[:n], (bary[:n] if barycentre else None)


def _padded(
    x: np.ndarray, y: np.ndarray, f: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(scale·x, yᵀ, scale·f)`` padded for the kernels: rows to a multiple of 4 (zeros),
    coordinates to a multiple of 4 (zeros), columns to a multiple of TILE (offsets ``-inf``)."""
    n, d = x.shape
    m = y.shape[0]
    xs = np.zeros((-(-n // _ROWS) * _ROWS, -(-d // 4) * 4))
    xs[:n, :d] = x * scale
    yT = np.zeros((xs.shape[1], -(-m // TILE) * TILE))
    yT[:d, :m] = y.T
    fs = np.full(yT.shape[1], _NEG_INF)
    fs[:m] = f * scale
    return xs, yT, fs


@njit(parallel=True, cache=True, nogil=True)
def _top2_kernel(xs, yT, f, m, idx_out, val_out):
    n_blocks = xs.shape[0] // _ROWS
    mp = yT.shape[1]
    for b in prange(n_blocks):
        i = b * _ROWS
        s = np.empty((_ROWS, TILE))
        v1 = np.full(_ROWS, _NEG_INF)
        v2 = np.full(_ROWS, _NEG_INF)
        i1 = np.full(_ROWS, -1)
        i2 = np.full(_ROWS, -1)
        for j0 in range(0, mp, TILE):
            _scores(xs, i, yT, j0, f, s)
            for r in range(_ROWS):
                sr = s[r]
                if i2[r] >= 0 and _tile_max(sr) <= v2[r]:
                    continue  # nothing here beats the second best (ties keep the lower index)
                for t in range(min(TILE, m - j0)):
                    st = sr[t]
                    if st > v1[r]:
                        v2[r] = v1[r]
                        i2[r] = i1[r]
                        v1[r] = st
                        i1[r] = j0 + t
                    elif st > v2[r] or i2[r] < 0:
                        v2[r] = st
                        i2[r] = j0 + t
        for r in range(_ROWS):
            idx_out[i + r, 0] = i1[r]
            val_out[i + r, 0] = v1[r]
            idx_out[i + r, 1] = i2[r] if i2[r] >= 0 else i1[r]
            val_out[i + r, 1] = v2[r] if i2[r] >= 0 else v1[r]


def affine_top2(x: np.ndarray, y: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two largest affine scores ``a_ij = f_j + ⟨x_i, y_j⟩`` per row, and their columns.

    The max / top-2 variant of P3 (aeot.md §4 "Fit (hard)"), on the same register-blocked scores
    as :func:`affine_logsumexp` (no fast-math: the comparisons are exact on the computed scores).
    A tile whose maximum does not beat the row's current second best is not scanned; ties go to
    the lower column index.

    Parameters
    ----------
    x : (N, d) float64 points; y : (M, d) float64, M >= 1; f : (M,) float64 offsets.

    Returns
    -------
    (idx (N, 2) int64, val (N, 2) float64): best and second-best column and score per row (with
    M = 1 both columns repeat the single one). ``argmax_j a_j(x_i) = idx[i, 0]`` (A 3),
    ``max_j a_j(x_i) = val[i, 0]`` (A 2) and the gap of (A 17) is ``val[i, 0] − val[i, 1]``.
    """
    xs, yT, fs = _padded(x, y, f, 1.0)
    idx = np.empty((xs.shape[0], 2), dtype=np.int64)
    val = np.empty((xs.shape[0], 2))
    _top2_kernel(xs, yT, fs, y.shape[0], idx, val)
    return idx[: x.shape[0]], val[: x.shape[0]]
