"""Fused pairwise kernel reductions between two point sets (flows note §9, P1–P4).

Every function here reduces over the second point set ``y`` (M points) for each point of ``x``
(N points) without ever forming an N x M matrix: ``y`` is transposed into a padded ``(d, M')``
layout once, each row of ``x`` streams over tiles of ``TILE`` columns, and within a tile the
squared distances, the kernel profile (through the vectorisable :func:`fastexp.exp`) and the
accumulation run as separate straight loops over tile views (``yT[k, j0:j0 + TILE]``: indexing
with computed offsets defeats vectorisation) that LLVM vectorises without ``fastmath``. Each row
accumulates TILE independent partial sums over the tiles in order and reduces them at the end by a
fixed pairwise tree, so every result is bit-for-bit independent of the number of threads and more
accurate than a running sum. Memory is O((N + M) d + TILE d) per thread.

Kernels (``kind``), with ``r = |x - y|`` and bandwidth ``sigma`` (flows note (F 2)):

==========  ===========================  ==================================
code        k(x, y)                      ∇_x k(x, y)
==========  ===========================  ==================================
GAUSSIAN    exp(-r² / (2σ²))             -(x - y) k / σ²
IMQ         (1 + r²/σ²)^(-1/2)           -(x - y) k³ / σ²
LAPLACE     exp(-r / σ)                  -(x - y) k / (σ r)   (0 at r = 0)
==========  ===========================  ==================================

The log-sum-exp reductions use the OT cost ``c(x, y) = ½|x - y|²`` (flows note (F 4)) and the
scores ``s_ij = log_w_j + (f_j - c(x_i, y_j)) / eps`` of P3; they keep a running maximum per
row and rescale, so no term overflows and no row underflows to -inf unless all its weights are 0.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from dp_core.engine.fastexp import exp, fma

__all__ = [
    "GAUSSIAN",
    "IMQ",
    "KERNELS",
    "LAPLACE",
    "TILE",
    "kernel_grad_sum",
    "kernel_grad_sum_self",
    "kernel_sum",
    "kernel_sum_self",
    "logsumexp_cost",
    "logsumexp_tiled",
    "softmax_barycentre",
    "tiled_columns",
]

GAUSSIAN = 0
IMQ = 1
LAPLACE = 2
KERNELS = {"gaussian": GAUSSIAN, "imq": IMQ, "laplace": LAPLACE}

TILE = 256
_ROWS_PER_BLOCK = 4
_NEG_INF = -np.inf


# --------------------------------------------------------------------------- layout helpers
def _transposed_padded(y: np.ndarray, fill_weight: np.ndarray, pad_value: float):
    """Return ``(yT (d, M'), w (M',))`` with M' a multiple of TILE; padding gets ``pad_value``."""
    m, d = y.shape
    mp = -(-m // TILE) * TILE
    yT = np.zeros((d, mp))
    yT[:, :m] = y.T
    w = np.full(mp, pad_value)
    w[:m] = fill_weight
    return yT, w


@njit(cache=True, nogil=True, inline="always")
def _sq_dists(x, i, yT, j0, d2):
    """d2[t] = |x_i - y_{j0+t}|² for t < TILE (coordinate-major so the t loops vectorise)."""
    xi0 = x[i, 0]
    y0 = yT[0, j0 : j0 + TILE]
    for t in range(TILE):
        diff = xi0 - y0[t]
        d2[t] = diff * diff
    for k in range(1, x.shape[1]):
        xik = x[i, k]
        yk = yT[k, j0 : j0 + TILE]
        for t in range(TILE):
            diff = xik - yk[t]
            d2[t] = fma(diff, diff, d2[t])


@njit(cache=True, nogil=True, inline="always")
def _accumulate_values(kind, inv_s2, sigma, d2, wt, acc):
    """acc[t] += w_j k(r²) for the tile (module table)."""
    if kind == GAUSSIAN:
        c = -0.5 * inv_s2
        for t in range(TILE):
            acc[t] += wt[t] * exp(c * d2[t])
    elif kind == IMQ:
        for t in range(TILE):
            acc[t] += wt[t] / math.sqrt(fma(d2[t], inv_s2, 1.0))
    else:
        for t in range(TILE):
            acc[t] += wt[t] * exp(-math.sqrt(d2[t]) / sigma)


@njit(cache=True, nogil=True, inline="always")
def _kernel_values(kind, inv_s2, sigma, d2, val):
    """val[t] = k(r²), unweighted (module table)."""
    if kind == GAUSSIAN:
        c = -0.5 * inv_s2
        for t in range(TILE):
            val[t] = exp(c * d2[t])
    elif kind == IMQ:
        for t in range(TILE):
            val[t] = 1.0 / math.sqrt(fma(d2[t], inv_s2, 1.0))
    else:
        for t in range(TILE):
            val[t] = exp(-math.sqrt(d2[t]) / sigma)


@njit(cache=True, nogil=True, inline="always")
def _kernel_factors(kind, inv_s2, sigma, d2, fac):
    """fac[t] = φ(r²), unweighted, where ∇_x k = -s φ(r²)(x - y) (see :func:`_gradient_scale`)."""
    if kind == GAUSSIAN:
        c = -0.5 * inv_s2
        for t in range(TILE):
            fac[t] = exp(c * d2[t])
    elif kind == IMQ:
        for t in range(TILE):
            q = 1.0 / math.sqrt(fma(d2[t], inv_s2, 1.0))
            fac[t] = q * q * q
    else:
        for t in range(TILE):
            r = math.sqrt(d2[t])
            fac[t] = exp(-r / sigma) / r if r > 0.0 else 0.0


@njit(cache=True, nogil=True, inline="always")
def _factors_first_dim(kind, inv_s2, sigma, d2, wt, xi0, y0, fac, acc0):
    """fac[t] = w_j φ(r²) and acc0[t] += fac[t] (x_i0 - y_j0), where ∇_x k = -s φ(r²) (x - y)
    with the constant s of :func:`_gradient_scale` (module table). Dimension 0 is fused into the
    pass that computes the factors; the other dimensions reuse ``fac``."""
    if kind == GAUSSIAN:
        c = -0.5 * inv_s2
        for t in range(TILE):
            f = wt[t] * exp(c * d2[t])
            fac[t] = f
            acc0[t] = fma(f, xi0 - y0[t], acc0[t])
    elif kind == IMQ:
        for t in range(TILE):
            q = 1.0 / math.sqrt(fma(d2[t], inv_s2, 1.0))
            f = wt[t] * (q * q * q)
            fac[t] = f
            acc0[t] = fma(f, xi0 - y0[t], acc0[t])
    else:
        for t in range(TILE):
            r = math.sqrt(d2[t])
            f = wt[t] * exp(-r / sigma) / r if r > 0.0 else 0.0
            fac[t] = f
            acc0[t] = fma(f, xi0 - y0[t], acc0[t])


# Measured fast paths for the commonest case, a Gaussian kernel in d = 2: distances, exp and
# accumulation in one pass with no intermediate arrays (docs/benchmarks.md: the separate passes
# spend as much time on loads and stores as on the exp).
@njit(cache=True, nogil=True, inline="always")
def _gaussian_values_2d(xi0, xi1, yT, j0, w, c, acc):
    """acc[t] += w_j exp(c |x_i - y_j|²) for the tile, d = 2."""
    y0 = yT[0, j0 : j0 + TILE]
    y1 = yT[1, j0 : j0 + TILE]
    wt = w[j0 : j0 + TILE]
    for t in range(TILE):
        e0 = xi0 - y0[t]
        e1 = xi1 - y1[t]
        acc[t] += wt[t] * exp(c * fma(e1, e1, e0 * e0))


@njit(cache=True, nogil=True, inline="always")
def _gaussian_grad_2d(xi0, xi1, yT, j0, w, c, acc0, acc1):
    """acc_k[t] += w_j exp(c |x_i - y_j|²) (x_ik - y_jk) for the tile, d = 2."""
    y0 = yT[0, j0 : j0 + TILE]
    y1 = yT[1, j0 : j0 + TILE]
    wt = w[j0 : j0 + TILE]
    for t in range(TILE):
        e0 = xi0 - y0[t]
        e1 = xi1 - y1[t]
        f = wt[t] * exp(c * fma(e1, e1, e0 * e0))
        acc0[t] = fma(f, e0, acc0[t])
        acc1[t] = fma(f, e1, acc1[t])


@njit(cache=True, nogil=True, inline="always")
def _gradient_scale(kind, inv_s2, sigma):
    """The constant s of ∇_x k = -s φ(r²)(x - y): 1/σ² (Gaussian, IMQ) or 1/σ (Laplace)."""
    return 1.0 / sigma if kind == LAPLACE else inv_s2


@njit(cache=True, nogil=True, inline="always")
def _tree_sum(v):
    """Sum of ``v[:TILE]`` by a fixed pairwise tree (destroys ``v``).

    Each level is a straight loop over independent elements, so it vectorises without
    reassociation, and the order of additions is fixed: results are deterministic and more
    accurate than a running sum. Unrolled by hand because TILE is a compile-time constant.
    """
    for t in range(128):
        v[t] += v[t + 128]
    for t in range(64):
        v[t] += v[t + 64]
    for t in range(32):
        v[t] += v[t + 32]
    for t in range(16):
        v[t] += v[t + 16]
    for t in range(8):
        v[t] += v[t + 8]
    return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]))


@njit(cache=True, nogil=True, inline="always")
def _tile_max(v):
    """Maximum of ``v[:TILE]`` with eight independent running maxima (the compiler packs them
    into one vector: a single running maximum is a serial chain of compare-selects, about 3x
    slower here). ``-inf`` entries are ignored unless all are; ``v`` is left intact."""
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = _NEG_INF
    for t in range(0, TILE, 8):
        x = v[t]
        m0 = x if x > m0 else m0
        x = v[t + 1]
        m1 = x if x > m1 else m1
        x = v[t + 2]
        m2 = x if x > m2 else m2
        x = v[t + 3]
        m3 = x if x > m3 else m3
        x = v[t + 4]
        m4 = x if x > m4 else m4
        x = v[t + 5]
        m5 = x if x > m5 else m5
        x = v[t + 6]
        m6 = x if x > m6 else m6
        x = v[t + 7]
        m7 = x if x > m7 else m7
    m0 = m0 if m0 > m4 else m4
    m1 = m1 if m1 > m5 else m5
    m2 = m2 if m2 > m6 else m6
    m3 = m3 if m3 > m7 else m7
    m0 = m0 if m0 > m2 else m2
    m1 = m1 if m1 > m3 else m3
    return m0 if m0 > m1 else m1


# --------------------------------------------------------------------------- P1 / P2
@njit(parallel=True, cache=True, nogil=True)
def _kernel_sum_kernel(x, yT, w, kind, sigma, out):
    n = x.shape[0]
    mp = yT.shape[1]
    inv_s2 = 1.0 / (sigma * sigma)
    nblocks = (n + _ROWS_PER_BLOCK - 1) // _ROWS_PER_BLOCK
    for b in prange(nblocks):
        d2 = np.empty(TILE)
        acc = np.empty(TILE)
        for i in range(b * _ROWS_PER_BLOCK, min(n, (b + 1) * _ROWS_PER_BLOCK)):
            acc[:] = 0.0
            for j0 in range(0, mp, TILE):
                if kind == GAUSSIAN and x.shape[1] == 2:
                    _gaussian_values_2d(x[i, 0], x[i, 1], yT, j0, w, -0.5 * inv_s2, acc)
                    continue
                _sq_dists(x, i, yT, j0, d2)
                _accumulate_values(kind, inv_s2, sigma, d2, w[j0 : j0 + TILE], acc)
            out[i] = _tree_sum(acc)


@njit(parallel=True, cache=True, nogil=True)
def _kernel_grad_sum_kernel(x, yT, w, kind, sigma, out):
    n, d = x.shape
    mp = yT.shape[1]
    inv_s2 = 1.0 / (sigma * sigma)
    scale = -_gradient_scale(kind, inv_s2, sigma)
    nblocks = (n + _ROWS_PER_BLOCK - 1) // _ROWS_PER_BLOCK
    for b in prange(nblocks):
        d2 = np.empty(TILE)
        fac = np.empty(TILE)
        acc = np.empty((d, TILE))
        for i in range(b * _ROWS_PER_BLOCK, min(n, (b + 1) * _ROWS_PER_BLOCK)):
            acc[:, :] = 0.0
            if kind == GAUSSIAN and d == 2:
                acc0 = acc[0]
                acc1 = acc[1]
                xi0 = x[i, 0]
                xi1 = x[i, 1]
                for j0 in range(0, mp, TILE):
                    _gaussian_grad_2d(xi0, xi1, yT, j0, w, -0.5 * inv_s2, acc0, acc1)
            else:
                _grad_row_generic(x, i, yT, w, kind, inv_s2, sigma, d2, fac, acc)
            for k in range(d):
                out[i, k] = scale * _tree_sum(acc[k])


@njit(cache=True, nogil=True, inline="always")
def _grad_row_generic(x, i, yT, w, kind, inv_s2, sigma, d2, fac, acc):
    """Row i of the gradient sum by separate passes (any kernel, any d)."""
    d = x.shape[1]
    for j0 in range(0, yT.shape[1], TILE):
        _sq_dists(x, i, yT, j0, d2)
        wt = w[j0 : j0 + TILE]
        _factors_first_dim(kind, inv_s2, sigma, d2, wt, x[i, 0], yT[0, j0 : j0 + TILE], fac, acc[0])
        for k in range(1, d):
            xik = x[i, k]
            yk = yT[k, j0 : j0 + TILE]
            acck = acc[k]
            for t in range(TILE):
                acck[t] = fma(fac[t], xik - yk[t], acck[t])


_SELF_TASKS = 32
_SELF_MEMORY_DOUBLES = 8_000_000  # cap on the column accumulators (64 MB)


@njit(cache=True, nogil=True, inline="always")
def _self_block_rows(x, xT, w, kind, inv_s2, sigma, want_grad, blk, d2, val, acc, colacc, rows):
    """Rows of block ``blk`` against column tiles J >= blk (see ``_self_kernel``).

    Values: row i gets w_j k_ij, column j gets w_i k_ij. Gradients: row i gets
    w_j φ_ij (x_i - x_j), column j gets w_i φ_ij (x_j - x_i) (antisymmetry, flows note §2.3).
    The diagonal tile adds to the rows only (it holds both orders of its pairs).
    """
    n, d = x.shape
    mp = xT.shape[1]
    for i in range(blk * TILE, min(n, (blk + 1) * TILE)):
        acc[:, :] = 0.0
        wi = w[i]
        for j0 in range(blk * TILE, mp, TILE):
            diagonal = j0 == blk * TILE
            _sq_dists(x, i, xT, j0, d2)
            wt = w[j0 : j0 + TILE]
            if not want_grad:
                _kernel_values(kind, inv_s2, sigma, d2, val)
                a0 = acc[0]
                c0 = colacc[0, j0 : j0 + TILE]
                for t in range(TILE):
                    a0[t] = fma(wt[t], val[t], a0[t])
                if not diagonal:
                    for t in range(TILE):
                        c0[t] = fma(wi, val[t], c0[t])
                continue
            _kernel_factors(kind, inv_s2, sigma, d2, val)
            for k in range(d):
                xik = x[i, k]
                yk = xT[k, j0 : j0 + TILE]
                ak = acc[k]
                ck = colacc[k, j0 : j0 + TILE]
                for t in range(TILE):
                    d2[t] = val[t] * (xik - yk[t])  # d2 is free once the factors exist
                    ak[t] = fma(wt[t], d2[t], ak[t])
                if not diagonal:
                    for t in range(TILE):
                        ck[t] = fma(-wi, d2[t], ck[t])
        for k in range(acc.shape[0]):
            rows[i, k] = _tree_sum(acc[k])


@njit(parallel=True, cache=True, nogil=True)
def _self_kernel(x, xT, w, kind, sigma, n_tasks, want_grad, out):
    """Symmetric P1 / antisymmetric P2 at the points themselves: each pair of tiles once.

    Row block I visits column tiles J >= I; off-diagonal tiles add to the rows of I and to the
    columns of J in the task's column accumulator. Blocks I and nb-1-I form a pair of equal
    work (nb + 1 tiles); pairs are dealt round-robin to ``n_tasks`` tasks, a number fixed
    independently of the thread count, and the column accumulators are added in task order:
    deterministic, memory O(n_tasks · N · n_out) with n_out = 1 (values) or d (gradients).
    """
    n = x.shape[0]
    n_out = out.shape[1]
    mp = xT.shape[1]
    nb = mp // TILE
    inv_s2 = 1.0 / (sigma * sigma)
    cols = np.zeros((n_tasks, n_out, mp))
    rows = np.empty((n, n_out))
    n_pairs = (nb + 1) // 2
    for task in prange(n_tasks):
        d2 = np.empty(TILE)
        val = np.empty(TILE)
        acc = np.empty((n_out, TILE))
        colacc = cols[task]
        for pair in range(task, n_pairs, n_tasks):
            _self_block_rows(
                x, xT, w, kind, inv_s2, sigma, want_grad, pair, d2, val, acc, colacc, rows
            )
            if nb - 1 - pair != pair:
                _self_block_rows(
                    x,
                    xT,
                    w,
                    kind,
                    inv_s2,
                    sigma,
                    want_grad,
                    nb - 1 - pair,
                    d2,
                    val,
                    acc,
                    colacc,
                    rows,
                )
    scale = -_gradient_scale(kind, inv_s2, sigma) if want_grad else 1.0
    for i in range(n):
        for k in range(n_out):
            total = rows[i, k]
            for task in range(n_tasks):
                total += cols[task, k, i]
            out[i, k] = scale * total


def _self_call(x: np.ndarray, w: np.ndarray, kind: int, sigma: float, want_grad: bool):
    xT, wp = _transposed_padded(x, w, 0.0)
    n_out = x.shape[1] if want_grad else 1
    pairs = (xT.shape[1] // TILE + 1) // 2
    tasks = max(1, min(_SELF_TASKS, pairs, _SELF_MEMORY_DOUBLES // (n_out * xT.shape[1])))
    out = np.empty((x.shape[0], n_out))
    _self_kernel(x, xT, wp, kind, float(sigma), tasks, want_grad, out)
    return out


def kernel_sum_self(x: np.ndarray, w: np.ndarray, kind: int, sigma: float) -> np.ndarray:
    """P1 at the points themselves, ``s_i = Σ_j w_j k(x_i, x_j)``, using the kernel's symmetry
    (each pair once: half the work of :func:`kernel_sum`). x (N, d), w (N,) -> (N,)."""
    return _self_call(x, w, kind, sigma, False)[:, 0]


def kernel_grad_sum_self(x: np.ndarray, w: np.ndarray, kind: int, sigma: float) -> np.ndarray:
    """P2 at the points themselves, ``g_i = Σ_j w_j ∇_1 k(x_i, x_j)``, using antisymmetry
    (each pair once; the self term of the MMD flow without noise, flows note §2.3).
    x (N, d), w (N,) -> (N, d)."""
    return _self_call(x, w, kind, sigma, True)


def kernel_sum(x: np.ndarray, y: np.ndarray, w: np.ndarray, kind: int, sigma: float) -> np.ndarray:
    """P1: ``s_i = Σ_j w_j k(x_i, y_j)``.

    Parameters
    ----------
    x : (N, d) float64 C-contiguous evaluation points.
    y : (M, d) float64 source points.
    w : (M,) float64 weights (signed allowed).
    kind : GAUSSIAN, IMQ or LAPLACE (module table).
    sigma : bandwidth σ > 0.

    Returns
    -------
    (N,) float64.
    """
    yT, wp = _transposed_padded(y, w, 0.0)
    out = np.empty(x.shape[0])
    _kernel_sum_kernel(x, yT, wp, kind, float(sigma), out)
    return out


def kernel_grad_sum(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, kind: int, sigma: float
) -> np.ndarray:
    """P2: ``g_i = Σ_j w_j ∇_x k(x_i, y_j)`` (the MMD witness gradient, flows note (F 7)).

    Shapes as in :func:`kernel_sum`; returns (N, d) float64.
    """
    yT, wp = _transposed_padded(y, w, 0.0)
    out = np.empty(x.shape)
    _kernel_grad_sum_kernel(x, yT, wp, kind, float(sigma), out)
    return out


# --------------------------------------------------------------------------- P3 / P4
@njit(parallel=True, cache=True, nogil=True)
def _lse_kernel(x, yT, log_w, f, eps, want_bary, lse_out, bary_out):
    n, d = x.shape
    mp = yT.shape[1]
    inv_eps = 1.0 / eps
    nblocks = (n + _ROWS_PER_BLOCK - 1) // _ROWS_PER_BLOCK
    for b in prange(nblocks):
        d2 = np.empty(TILE)
        s = np.empty(TILE)
        acc = np.empty(TILE)
        bacc = np.empty((d, TILE))
        for i in range(b * _ROWS_PER_BLOCK, min(n, (b + 1) * _ROWS_PER_BLOCK)):
            acc[:] = 0.0
            bacc[:, :] = 0.0
            run_max = _NEG_INF
            for j0 in range(0, mp, TILE):
                _sq_dists(x, i, yT, j0, d2)
                lw = log_w[j0 : j0 + TILE]
                ft = f[j0 : j0 + TILE]
                for t in range(TILE):
                    s[t] = lw[t] + (ft[t] - 0.5 * d2[t]) * inv_eps
                tile_max = _tile_max(s)
                if tile_max == _NEG_INF:
                    continue
                if tile_max > run_max:
                    rescale = exp(run_max - tile_max)  # 0 on the first contributing tile
                    for t in range(TILE):
                        acc[t] *= rescale
                    if want_bary:
                        for k in range(d):
                            for t in range(TILE):
                                bacc[k, t] *= rescale
                    run_max = tile_max
                for t in range(TILE):
                    s[t] = exp(s[t] - run_max)
                    acc[t] += s[t]
                if want_bary:
                    for k in range(d):
                        yk = yT[k, j0 : j0 + TILE]
                        bk = bacc[k]
                        for t in range(TILE):
                            bk[t] = fma(s[t], yk[t], bk[t])
            total = _tree_sum(acc)
            lse_out[i] = run_max + math.log(total) if run_max != _NEG_INF else _NEG_INF
            if want_bary:
                for k in range(d):
                    bary_out[i, k] = _tree_sum(bacc[k]) / total


def _lse_call(x, y, log_w, f, eps, want_bary):
    yT, lw = _transposed_padded(y, log_w, _NEG_INF)
    fp = np.zeros(yT.shape[1])
    fp[: y.shape[0]] = f
    lse = np.empty(x.shape[0])
    bary = np.empty(x.shape if want_bary else (0, x.shape[1]))
    _lse_kernel(x, yT, lw, fp, float(eps), want_bary, lse, bary)
    return lse, bary


def logsumexp_cost(
    x: np.ndarray, y: np.ndarray, log_w: np.ndarray, f: np.ndarray, eps: float
) -> np.ndarray:
    """P3: ``L_i = log Σ_j exp(log_w_j + (f_j - ½|x_i - y_j|²) / eps)``.

    Parameters
    ----------
    x : (N, d) float64 C-contiguous.
    y : (M, d) float64.
    log_w : (M,) log-weights (``-inf`` allowed: that column is ignored).
    f : (M,) potential (a Sinkhorn dual variable; zeros for a KDE).
    eps : temperature > 0 (for a Gaussian KDE of bandwidth h, eps = h²).

    Returns
    -------
    (N,) float64; ``-inf`` for a row whose weights are all zero.
    """
    return _lse_call(x, y, log_w, f, eps, False)[0]


def softmax_barycentre(
    x: np.ndarray, y: np.ndarray, log_w: np.ndarray, f: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """P4: the log-sum-exp of :func:`logsumexp_cost` and, fused in the same pass, the soft-max
    barycentre ``T_i = Σ_j softmax_j(s_ij) y_j`` (flows note (F 19), AE-OT (A 12)).

    Returns
    -------
    (lse (N,), barycentre (N, d)).
    """
    return _lse_call(x, y, log_w, f, eps, True)


def tiled_columns(y: np.ndarray) -> np.ndarray:
    """``y`` (M, d) in this module's column layout: ``(d, M')``, M' a multiple of :data:`TILE`,
    zero padding. Prepare a column set once, then reduce against it many times with
    :func:`logsumexp_tiled` (a Sinkhorn solve does so every iteration)."""
    return _transposed_padded(y, np.zeros(y.shape[0]), 0.0)[0]


def logsumexp_tiled(
    x: np.ndarray,
    yT: np.ndarray,
    log_w: np.ndarray,
    f: np.ndarray,
    eps: float,
    lse_out: np.ndarray,
    bary_out: np.ndarray | None = None,
) -> None:
    """P3, and P4 when ``bary_out`` is given, against columns prepared by :func:`tiled_columns`.

    x (N, d) C-contiguous; yT (d, M') from ``tiled_columns(y)``; log_w, f (M,) as in
    :func:`logsumexp_cost`. Writes ``lse_out`` (N,) and, if given, the soft-max barycentre into
    ``bary_out`` (N, d) C-contiguous; the same pass and bits as :func:`softmax_barycentre`.
    """
    m = log_w.shape[0]
    lw = np.full(yT.shape[1], _NEG_INF)
    lw[:m] = log_w
    fp = np.zeros(yT.shape[1])
    fp[:m] = f
    want = bary_out is not None
    out_b = bary_out if want else np.empty((0, x.shape[1]))
    _lse_kernel(x, yT, lw, fp, float(eps), want, lse_out, out_b)
