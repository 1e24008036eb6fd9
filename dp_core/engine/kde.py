"""Gaussian kernel density estimates on top of the fused kernel sums (flows note §6, P1/P3).

``log_kde_self`` is the birth–death rate's density term (F 30): the log of the mean Gaussian
kernel at each particle over all particles, self term included. Because the self term is 1, the
sum is at least 1/N and cannot underflow, so the plain kernel sum is exact to rounding there.
In d = 1 it has its own path (below), O(N) for clustered particles instead of O(N²).
``log_kde`` evaluates at arbitrary points, where a point far from every centre would underflow a
plain sum: it goes through the max-shifted log-sum-exp. Normalising constants are dropped
(they cancel in the centred birth–death rates).

**The 1-D path.** With z = x/(√2 h) the unnormalised sum is S_i = Σ_j exp(-(z_i - z_j)²) >= 1
(the self term). The particles are grouped into cells of width w = 1/2 in z (a counting sort on
a grid, or a sort when the grid would be sparse); a cell's centre is the midpoint of its points,
its radius r <= w/2 their largest distance from it. For a target cell T and a source cell S with
centres c_T, c_S, D = c_T - c_S, t = z_i - c_T, u = z_j - c_S, the kernel factorises exactly,

    exp(-(D + t - u)²) = exp(-(D + t)²) · exp(u(2D - u)) · exp(2tu),

so with exp(2tu) replaced by its first p <= 12 Taylor terms a pair of cells costs
O((n_T + n_S) p) instead of O(n_T n_S): the source moments Σ_j exp(u_j(2D - u_j)) u_j^k once
(pairwise sums), then a Horner pass per target. Small pairs are summed directly (each target's
terms by a pairwise sum); the choice depends on the two cells alone. Nothing is approximated
beyond rounding:

* *Taylor remainder.* |2tu| <= x = 2 r_T r_S <= w²/2 = 1/8, and the remainder of exp(y) after p
  terms is at most x^p/p! · e^x relative to exp(y) for |y| <= x; p is the fewest terms that make
  this <= 2^-64 (12 at x = 1/8: 2^-64.7; 7 for a cluster a third of a cell wide). The terms are
  positive, so the sum carries the same relative bound.
* *Cancellation.* Every product of the factors above is bounded by the exact term times
  e^{4|tu|} <= e^{w²} = 1.28, so the rounding of the expansion is a few ulp of the exact sum.
* *Cutoff.* Pairs of cells whose points are all farther apart than d with d² = 60 ln 2 + ln N
  are skipped: each skipped term is below e^{-d²} = 2^-60/N, so together they are below
  2^-60 <= 2^-60 S_i. Double rounding of S_i itself is 2^-53.

Measured against a long-double full sum (tests/unit/engine/test_kde.py): within 1e-14 relative
on uniform, clustered, duplicated, far-offset and sparse particle sets, like the plain sum.
Every target's sum is formed in an order fixed by the cells alone, so the result does not depend
on the thread count; target cells (the large ones cut into blocks) run in parallel.
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_num_threads, njit, prange

from dp_core.engine.fastexp import exp, fma
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

    In d = 1 the cell expansion of the module docstring (exact to rounding, O(N) once the
    particles cluster). Otherwise the symmetric kernel sum (each pair once) above
    ``_SYMMETRIC_MIN`` particles, where it was measured faster (docs/benchmarks.md); below, the
    plain sum has less overhead.
    """
    n = x.shape[0]
    if x.shape[1] == 1:
        out = np.empty(n)
        if n:
            _log_kde_1d_kernel(x, 1.0 / (math.sqrt(2.0) * bandwidth), get_num_threads(), out)
        return out
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


# --------------------------------------------------------------------------- 1-D fast path
# Constants of the 1-D sums (see log_kde_self's docstring for the error argument).
_CELL = 0.5  # cell width in units of √2·h
_TERMS = 12  # most Taylor terms: (CELL²/2)^TERMS / TERMS! · e^(CELL²/2) = 2^-64.7
_TAIL_BITS = 60  # pairs of cells farther apart than the cutoff are skipped (terms < 2^-60 / N)
_DIRECT_MAX = 12.0  # a pair of cells is summed directly when nT·nS <= _DIRECT_MAX·(nT + nS)
_BLOCK_MIN = 512  # target cells are split into blocks of at least this many points (threads)
_SPARSE_CELLS = 4  # grid cells per particle above which the cells come from a sort instead
_TAYLOR = tuple(2.0**k / math.factorial(k) for k in range(_TERMS))  # 2^k / k!
_TAYLOR_TOL = 2.0**-64


@njit(cache=True, nogil=True)
def _cells_1d(x, width, order, xs, starts, centres, radii):
    """Group the particles into cells of ``width``; returns the number of non-empty cells.

    ``xs`` receives the positions grouped by cell (``order`` the original indices), cell c holds
    ``xs[starts[c]:starts[c + 1]]``, ``centres[c]`` is the midpoint of its points and
    ``radii[c]`` <= width/2 their largest distance from it; cells are in increasing position. A
    grid anchored at the leftmost particle (counting sort, O(N + cells)) unless it would have
    more than ``_SPARSE_CELLS`` cells per particle; then the sorted particles are cut greedily
    (a cell starts at its first point).
    """
    n = x.shape[0]
    lo = x[0, 0]
    hi = x[0, 0]
    for i in range(1, n):
        lo = min(lo, x[i, 0])
        hi = max(hi, x[i, 0])
    grid = (hi - lo) / width
    if grid < _SPARSE_CELLS * n:
        n_grid = int(grid) + 1
        cell = np.empty(n, dtype=np.int64)
        count = np.zeros(n_grid + 1, dtype=np.int64)
        for i in range(n):
            c = min(int((x[i, 0] - lo) / width), n_grid - 1)
            cell[i] = c
            count[c + 1] += 1
        for c in range(n_grid):
            count[c + 1] += count[c]
        fill = count[:n_grid].copy()
        for i in range(n):  # stable: within a cell, original index order
            c = cell[i]
            order[fill[c]] = i
            fill[c] += 1
        m = 0
        for c in range(n_grid):
            if count[c + 1] > count[c]:
                starts[m] = count[c]
                m += 1
        starts[m] = n
    else:
        srt = np.argsort(x[:, 0], kind="mergesort")
        for k in range(n):
            order[k] = srt[k]
        m = 0
        first = 0.0
        for k in range(n):
            xk = x[order[k], 0]
            if k == 0 or xk - first > width:
                first = xk
                starts[m] = k
                m += 1
        starts[m] = n
    for k in range(n):
        xs[k] = x[order[k], 0]
    for c in range(m):
        a = xs[starts[c]]
        b = a
        for k in range(starts[c] + 1, starts[c + 1]):
            a = min(a, xs[k])
            b = max(b, xs[k])
        centres[c] = 0.5 * (a + b)
        radii[c] = max(centres[c] - a, b - centres[c])
    return m


@njit(cache=True, nogil=True, inline="always")
def _chunk_sum(a, j0, j1):
    """Σ a[j0:j1] (at most 64 terms): eight lane sums, then a fixed tree (the lanes vectorise)."""
    p0 = p1 = p2 = p3 = p4 = p5 = p6 = p7 = 0.0
    n8 = j0 + (j1 - j0) // 8 * 8
    for j in range(j0, n8, 8):
        p0 += a[j]
        p1 += a[j + 1]
        p2 += a[j + 2]
        p3 += a[j + 3]
        p4 += a[j + 4]
        p5 += a[j + 5]
        p6 += a[j + 6]
        p7 += a[j + 7]
    for j in range(n8, j1):
        p0 += a[j]
    return ((p0 + p4) + (p2 + p6)) + ((p1 + p5) + (p3 + p7))


@njit(cache=True, nogil=True, inline="always")
def _pairwise_sum(a, n, stack, level):
    """Σ a[:n] by pairwise summation over chunks of 64 (a binary counter merges equal-sized
    partial sums), so the rounding grows like log n, not n; the order depends on n only.
    ``stack`` and ``level`` are work arrays of 64 entries."""
    top = 0
    for j0 in range(0, n, 64):
        s = _chunk_sum(a, j0, min(n, j0 + 64))
        lv = 0
        while top > 0 and level[top - 1] == lv:
            top -= 1
            s = stack[top] + s
            lv += 1
        stack[top] = s
        level[top] = lv
        top += 1
    total = 0.0
    for k in range(top - 1, -1, -1):
        total = stack[k] + total
    return total


@njit(cache=True, nogil=True, inline="always")
def _taylor_terms(x):
    """The fewest Taylor terms p <= _TERMS with x^p/p! · e^x <= 2^-64: the remainder of exp(y)
    after p terms, relative to exp(y), for every |y| <= x (x <= CELL²/2 needs at most _TERMS)."""
    bound = math.exp(x)
    p = 0
    while p < _TERMS and bound > _TAYLOR_TOL:
        p += 1
        bound *= x / p
    return max(p, 1)


@njit(cache=True, nogil=True, inline="always")
def _pair_direct(xs, a0, a1, b0, b1, s, val, stack, level, acc):
    """acc[i - a0] += Σ_{j in [b0, b1)} exp(-((xs_i - xs_j) s)²) for i in [a0, a1): the terms
    of each target into ``val`` (vectorised over the sources), then a pairwise sum."""
    ns = b1 - b0
    src = xs[b0:b1]
    for i in range(a1 - a0):
        xi = xs[a0 + i]
        for j in range(ns):
            z = (xi - src[j]) * s
            val[j] = exp(-z * z)
        acc[i] += _pairwise_sum(val, ns, stack, level)


@njit(cache=True, nogil=True, inline="always")
def _pair_taylor(xs, a0, a1, b0, b1, ct, cs, s, terms, coef, su, pw, tt, rr, stack, level, acc):
    """The same sum by the factorised Taylor expansion about the cell centres ct (targets) and
    cs (sources): with t = (x_i - ct)s, u = (x_j - cs)s and D = (ct - cs)s,
    exp(-(D + t - u)²) = exp(-(D + t)²) · exp(u(2D - u)) · exp(2tu), and exp(2tu) is replaced
    by its first ``terms`` Taylor terms: coef_k = (2^k/k!) Σ_j exp(u_j(2D - u_j)) u_j^k once per
    pair (pairwise sums), then a Horner pass per target. ``su``, ``pw`` (>= sources), ``tt``,
    ``rr`` (>= targets), ``coef`` (>= terms), ``stack`` and ``level`` (64) are work arrays."""
    d = (ct - cs) * s
    two_d = 2.0 * d
    ns = b1 - b0
    src = xs[b0:b1]
    for j in range(ns):
        u = (src[j] - cs) * s
        su[j] = u
        pw[j] = exp(u * (two_d - u))
    for k in range(terms):
        coef[k] = _TAYLOR[k] * _pairwise_sum(pw, ns, stack, level)
        for j in range(ns):
            pw[j] *= su[j]
    nt = a1 - a0
    xt = xs[a0:a1]
    top = coef[terms - 1]
    for i in range(nt):
        tt[i] = (xt[i] - ct) * s
        rr[i] = top
    for k in range(terms - 2, -1, -1):
        ck = coef[k]
        for i in range(nt):
            rr[i] = fma(rr[i], tt[i], ck)
    for i in range(nt):
        q = d + tt[i]
        acc[i] = fma(exp(-q * q), rr[i], acc[i])


@njit(cache=True, nogil=True)
def _blocks_1d(starts, m, n_split):
    """Target blocks (rows: cell, first, end): every cell, the large ones cut into up to
    ``n_split`` parts of at least _BLOCK_MIN points. Blocks only share out the work: every
    target's sum is formed the same way whatever the split."""
    count = 0
    for c in range(m):
        size = starts[c + 1] - starts[c]
        count += max(1, min(n_split, size // _BLOCK_MIN))
    blocks = np.empty((count, 3), dtype=np.int64)
    k = 0
    for c in range(m):
        a0 = starts[c]
        size = starts[c + 1] - a0
        parts = max(1, min(n_split, size // _BLOCK_MIN))
        for p in range(parts):
            blocks[k, 0] = c
            blocks[k, 1] = a0 + (size * p) // parts
            blocks[k, 2] = a0 + (size * (p + 1)) // parts
            k += 1
    return blocks


@njit(parallel=True, cache=True, nogil=True)
def _log_kde_1d_kernel(x, s, n_split, out):
    """out[i] = log((1/N) Σ_j exp(-((x_i - x_j) s)²)) for x (N, 1): cells of width _CELL/s,
    pairs of cells within the cutoff summed directly or by the Taylor expansion, whichever is
    cheaper for their sizes; target blocks in parallel (see :func:`log_kde_self`)."""
    n = x.shape[0]
    order = np.empty(n, dtype=np.int64)
    xs = np.empty(n)
    starts = np.empty(n + 1, dtype=np.int64)
    centres = np.empty(n)
    radii = np.empty(n)
    m = _cells_1d(x, _CELL / s, order, xs, starts, centres, radii)
    blocks = _blocks_1d(starts, m, n_split)
    widest = 0
    for c in range(m):
        widest = max(widest, starts[c + 1] - starts[c])
    cut = math.sqrt(_TAIL_BITS * math.log(2.0) + math.log(n))
    reach = cut + _CELL  # centres farther apart than this hold no pair within the cutoff
    sums = np.empty(n)
    for b in prange(blocks.shape[0]):
        t = blocks[b, 0]
        a0 = blocks[b, 1]
        a1 = blocks[b, 2]
        nt = a1 - a0
        size = starts[t + 1] - starts[t]  # the whole cell's: the choice below is per cell pair
        acc = np.zeros(nt)
        tt = np.empty(nt)
        rr = np.empty(nt)
        coef = np.empty(_TERMS)
        su = np.empty(widest)
        pw = np.empty(widest)
        stack = np.empty(64)
        level = np.empty(64, dtype=np.int64)
        ct = centres[t]
        first = t
        while first > 0 and (ct - centres[first - 1]) * s <= reach:
            first -= 1
        last = t
        while last < m - 1 and (centres[last + 1] - ct) * s <= reach:
            last += 1
        rt = radii[t] * s
        for c in range(first, last + 1):
            rs = radii[c] * s
            if abs(ct - centres[c]) * s - (rt + rs) > cut:
                continue  # every term below 2^-60 / N
            b0 = starts[c]
            b1 = starts[c + 1]
            ns = b1 - b0
            if size * ns <= _DIRECT_MAX * (size + ns):
                _pair_direct(xs, a0, a1, b0, b1, s, pw, stack, level, acc)
            else:
                terms = _taylor_terms(2.0 * rt * rs)
                _pair_taylor(
                    xs,
                    a0,
                    a1,
                    b0,
                    b1,
                    ct,
                    centres[c],
                    s,
                    terms,
                    coef,
                    su,
                    pw,
                    tt,
                    rr,
                    stack,
                    level,
                    acc,
                )
        for i in range(nt):
            sums[a0 + i] = acc[i]
    log_n = math.log(n)
    for k in range(n):
        out[order[k]] = math.log(sums[k]) - log_n
