"""Batched log-domain Sinkhorn for the cost ``c(x, y) = ½|x − y|²`` (flows note §4.1, §9 P5).

Entropic OT ``OT_ε(α, β) = min_P ⟨P, C⟩ + ε KL(P‖α⊗β)`` with ε = blur² (flows note (F 4), §4.1).
Everything is one primitive, the **soft c-transform** (P3), written for the side being updated::

    T_β(g)_i = −ε log Σ_j b_j exp((g_j − c(x_i, y_j)) / ε)

evaluated as one max-shifted log-sum-exp pass per row, never overflowing or underflowing. The
drivers below solve a *batch* of K independent problems in one call:

* **two-sided** ``(x_k, a_k)`` vs ``(y_k, b_k)``: alternating Sinkhorn ``f ← T_β(g)``,
  ``g ← T_α(f)`` (flows note §4.1, the fixed point of (F 16));
* **symmetric** ``(x_k, a_k)`` vs itself: the averaged map ``p ← ½(p + T_α(p))`` (flows note §4.1;
  the debiasing terms of (F 16)).

Every problem runs its own ε-schedule (ε-scaling as in GeomLoss: ε from diameter² down to blur²
by factors ``scaling²``, one iteration per level), then iterates at ε = blur² until the
**sup-change** of its potentials over one iteration is at most ``tol`` (or ``max_iter``), then
takes one last exact half-step ``f = T_β(g)`` (``p = T_α(p)``) fused with the soft-max barycentre
``T(x_i) = Σ_j softmax_j(log b_j + (g_j − c_ij)/ε) y_j`` of (F 19). Problems stop
independently, so a problem's result does not depend on the rest of its batch.

Two pass back-ends, chosen by size (``path="auto"``):

* **dense**: the cost matrices C_k and C_kᵀ are built once per solve (exact differences, no
  ``|x|² + |y|² − 2x·y`` cancellation) and every pass streams over their rows. Memory
  O(Σ n_k m_k); used while that fits :data:`DENSE_MAX_ENTRIES` and the problems are small
  enough that it is measured faster (:data:`DENSE_CROSSOVER_PAIRS`).
* **tiled**: :func:`dp_core.engine.kernels.logsumexp_cost`'s compiled kernel (padded, transposed
  tiles, fastexp, fixed-tree sums), O((N + M) d) memory at any size.

Rows are reduced in a fixed order by one thread each (lane sums and a fixed tree), so the results
are bit-for-bit the same on one thread or many. No ``fastmath``.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
from numba import njit, prange

from dp_core.engine import kernels
from dp_core.engine.fastexp import exp, fma

__all__ = [
    "DENSE_CROSSOVER_PAIRS",
    "DENSE_MAX_ENTRIES",
    "Path",
    "SinkhornBatch",
    "eps_schedule",
    "sinkhorn_pairs",
    "sinkhorn_self",
]

Path = Literal["auto", "dense", "tiled"]

DENSE_MAX_ENTRIES = 1 << 23
"""Memory budget of the dense path: at most this many cost entries per matrix (64 MB)."""

DENSE_CROSSOVER_PAIRS = 1 << 20
"""``auto`` picks the dense path for a problem with n·m <= this in d >= 4, and whenever its
columns fit in fewer than two tiles (tiles of 256 columns pad small problems). Measured (one
thread, best of 15 passes, ε = 0.01, uniform points, shared machine under load): n = m = 256:
dense 0.13 ms vs tiled 0.14 (d = 2) and 0.25 (d = 10); n = m = 1000: dense 2.3 ms vs tiled
1.8 (d = 2) and 3.1 (d = 10); n = m = 2000: dense 22 ms vs tiled 15 (d = 2) and 33 (d = 10),
where the 32 MB matrix no longer stays in cache. So dense wins for small column sets and for
d >= 4 up to about 10^6 pairs; tiled wins in d = 2 from about 500 columns on."""

_DENSE_MIN_DIM = 4
_PARALLEL_MIN_PAIRS = 200_000
"""Below this many pairs per pass the dense pass runs on one thread: a parallel region costs
about 0.1 ms on the reference machine (bench noise probe), more than the pass itself."""

_SMALL_PAIRS = 1 << 16
"""Problems with at most this many pairs are solved whole inside one compiled call, problems in
parallel (the Python driver's per-iteration overhead, ~50 µs, would dominate them)."""

_LANES = 8
_ROWS_PER_BLOCK = 4
_NEG_INF = -np.inf


# --------------------------------------------------------------------------- row primitives
@njit(cache=True, nogil=True, inline="always")
def _lane_sum(v, m, lanes):
    """Σ_{j<m} v[j] in a fixed order: ``_LANES`` partial sums, a fixed tree, then the tail."""
    for t in range(_LANES):
        lanes[t] = 0.0
    full = m - m % _LANES
    for j0 in range(0, full, _LANES):
        vj = v[j0 : j0 + _LANES]
        for t in range(_LANES):
            lanes[t] += vj[t]
    total = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + (
        (lanes[1] + lanes[5]) + (lanes[3] + lanes[7])
    )
    for j in range(full, m):
        total += v[j]
    return total


@njit(cache=True, nogil=True, inline="always")
def _lane_max(v, m, lanes):
    """max_{j<m} v[j] with ``_LANES`` partial maxima (max is exact: the order does not matter)."""
    for t in range(_LANES):
        lanes[t] = _NEG_INF
    full = m - m % _LANES
    for j0 in range(0, full, _LANES):
        vj = v[j0 : j0 + _LANES]
        for t in range(_LANES):
            lanes[t] = max(lanes[t], vj[t])
    mx = _NEG_INF
    for t in range(_LANES):
        mx = max(mx, lanes[t])
    for j in range(full, m):
        mx = max(mx, v[j])
    return mx


@njit(cache=True, nogil=True, inline="always")
def _softmin_row(c_row, lw, pot, inv_eps, buf, lanes):
    """``(L, Z)`` with ``L = log Σ_j exp(s_j)``, ``s_j = lw_j + (pot_j − c_j)/ε`` (P3).

    On return ``buf[j] = exp(s_j − max s)`` and ``Z = Σ_j buf[j]`` (the soft-max weights of the
    barycentre). ``L = −inf`` when every weight is 0.
    """
    m = c_row.shape[0]
    for j in range(m):
        buf[j] = lw[j] + (pot[j] - c_row[j]) * inv_eps
    mx = _lane_max(buf, m, lanes)
    if mx == _NEG_INF:
        return _NEG_INF, 0.0
    for j in range(m):
        buf[j] = exp(buf[j] - mx)
    total = _lane_sum(buf, m, lanes)
    return mx + math.log(total), total


@njit(cache=True, nogil=True, inline="always")
def _dense_block(
    blk,
    row_prob,
    row_off,
    col_off,
    mat_off,
    C,
    lw,
    pot,
    eps,
    active,
    average,
    old,
    resid,
    want_bary,
    cols,
    bary,
    buf,
    lanes,
):
    """Rows of block ``blk``: ``new_i = −ε_k L_i``; ``resid_i = |new_i − old_i|``; ``old_i`` is
    replaced by ``new_i`` (or by ``½(old_i + new_i)`` when ``average``); optional barycentre."""
    n_rows = row_prob.shape[0]
    d = cols.shape[1]
    for r in range(blk * _ROWS_PER_BLOCK, min(n_rows, (blk + 1) * _ROWS_PER_BLOCK)):
        k = row_prob[r]
        if not active[k]:
            resid[r] = 0.0
            continue
        i = r - row_off[k]
        c0 = col_off[k]
        m = col_off[k + 1] - c0
        base = mat_off[k] + i * m
        e = eps[k]
        lse, total = _softmin_row(
            C[base : base + m], lw[c0 : c0 + m], pot[c0 : c0 + m], 1.0 / e, buf, lanes
        )
        new = -e * lse
        resid[r] = abs(new - old[r])
        old[r] = 0.5 * (old[r] + new) if average else new
        if want_bary:
            for q in range(d):
                s = 0.0
                for j in range(m):
                    s = fma(buf[j], cols[c0 + j, q], s)
                bary[r, q] = s / total


@njit(cache=True, nogil=True)
def _dense_pass_serial(
    row_prob,
    row_off,
    col_off,
    mat_off,
    C,
    lw,
    pot,
    eps,
    active,
    average,
    old,
    resid,
    want_bary,
    cols,
    bary,
    max_m,
):
    """One soft c-transform pass over the dense rows of every active problem, one thread."""
    buf = np.empty(max_m)
    lanes = np.empty(_LANES)
    nblocks = (row_prob.shape[0] + _ROWS_PER_BLOCK - 1) // _ROWS_PER_BLOCK
    for blk in range(nblocks):
        _dense_block(
            blk,
            row_prob,
            row_off,
            col_off,
            mat_off,
            C,
            lw,
            pot,
            eps,
            active,
            average,
            old,
            resid,
            want_bary,
            cols,
            bary,
            buf,
            lanes,
        )


@njit(parallel=True, cache=True, nogil=True)
def _dense_pass_parallel(
    row_prob,
    row_off,
    col_off,
    mat_off,
    C,
    lw,
    pot,
    eps,
    active,
    average,
    old,
    resid,
    want_bary,
    cols,
    bary,
    max_m,
):
    """:func:`_dense_pass_serial` with blocks of rows in parallel (each row by one thread)."""
    nblocks = (row_prob.shape[0] + _ROWS_PER_BLOCK - 1) // _ROWS_PER_BLOCK
    for blk in prange(nblocks):
        buf = np.empty(max_m)
        lanes = np.empty(_LANES)
        _dense_block(
            blk,
            row_prob,
            row_off,
            col_off,
            mat_off,
            C,
            lw,
            pot,
            eps,
            active,
            average,
            old,
            resid,
            want_bary,
            cols,
            bary,
            buf,
            lanes,
        )


@njit(parallel=True, cache=True, nogil=True)
def _build_costs(rows, row_prob, row_off, cols, col_off, mat_off, C):
    """``C[mat_off[k] + i m_k + j] = ½|rows_{row_off[k] + i} − cols_{col_off[k] + j}|²``."""
    d = rows.shape[1]
    for r in prange(rows.shape[0]):
        k = row_prob[r]
        i = r - row_off[k]
        c0 = col_off[k]
        m = col_off[k + 1] - c0
        base = mat_off[k] + i * m
        for j in range(m):
            diff = rows[r, 0] - cols[c0 + j, 0]
            s = diff * diff
            for q in range(1, d):
                diff = rows[r, q] - cols[c0 + j, q]
                s = fma(diff, diff, s)
            C[base + j] = 0.5 * s


@njit(cache=True, nogil=True, inline="always")
def _local_costs(rows, r0, n, cols, c0, m, C):
    """``C[i * m + j] = ½|rows_{r0+i} − cols_{c0+j}|²`` for one problem (same arithmetic as
    :func:`_build_costs`, so both paths see the same bits)."""
    d = rows.shape[1]
    for i in range(n):
        for j in range(m):
            diff = rows[r0 + i, 0] - cols[c0 + j, 0]
            s = diff * diff
            for q in range(1, d):
                diff = rows[r0 + i, q] - cols[c0 + j, q]
                s = fma(diff, diff, s)
            C[i * m + j] = 0.5 * s


@njit(cache=True, nogil=True, inline="always")
def _half_step(C, n, m, lw, pot, e, out, average, buf, lanes):
    """``out_i ← −ε L_i`` (or the average with the old value) for the n rows of a dense (n, m)
    cost matrix; returns the sup-change ``max_i |−ε L_i − out_i|``."""
    res = 0.0
    for i in range(n):
        lse, _ = _softmin_row(C[i * m : (i + 1) * m], lw, pot, 1.0 / e, buf, lanes)
        new = -e * lse
        res = max(res, abs(new - out[i]))
        out[i] = 0.5 * (out[i] + new) if average else new
    return res


@njit(cache=True, nogil=True)
def _solve_one(
    k,
    rows,
    row_off,
    la,
    cols,
    col_off,
    lb,
    f,
    g,
    sched,
    lengths,
    tol,
    max_iter,
    symmetric,
    bary,
    iters,
    resid,
    conv,
):
    """Problem k of :func:`_small_batch_solve`, on the calling thread."""
    d = rows.shape[1]
    r0, c0 = row_off[k], col_off[k]
    n, m = row_off[k + 1] - r0, col_off[k + 1] - c0
    C = np.empty(n * m)
    _local_costs(rows, r0, n, cols, c0, m, C)
    CT = C
    if not symmetric:
        CT = np.empty(n * m)
        _local_costs(cols, c0, m, rows, r0, n, CT)
    buf = np.empty(max(n, m))
    lanes = np.empty(_LANES)
    fk = f[r0 : r0 + n]
    gk = g[c0 : c0 + m]
    lak = la[r0 : r0 + n]
    lbk = lb[c0 : c0 + m]
    old = np.empty(n)
    stage = 0
    it = 0
    res = np.inf
    while True:
        e = sched[k, min(stage, lengths[k] - 1)]
        if symmetric:
            old[:] = fk
            res = _half_step(C, n, n, lak, old, e, fk, True, buf, lanes)
        else:
            res = _half_step(C, n, m, lbk, gk, e, fk, False, buf, lanes)
            res = max(res, _half_step(CT, m, n, lak, fk, e, gk, False, buf, lanes))
        if stage >= lengths[k] - 1:
            it += 1
            if res <= tol or it >= max_iter:
                break
        stage += 1
    iters[k] = it
    resid[k] = res
    conv[k] = res <= tol
    e = sched[k, lengths[k] - 1]
    pot = gk
    lw = lbk
    pts = cols[c0 : c0 + m]
    if symmetric:
        old[:] = fk
        pot = old
        lw = lak
    for i in range(n):
        lse, total = _softmin_row(C[i * m : (i + 1) * m], lw, pot, 1.0 / e, buf, lanes)
        fk[i] = -e * lse
        for q in range(d):
            acc = 0.0
            for j in range(m):
                acc = fma(buf[j], pts[j, q], acc)
            bary[r0 + i, q] = acc / total


@njit(parallel=True, cache=True, nogil=True)
def _small_batch_solve(
    rows,
    row_off,
    la,
    cols,
    col_off,
    lb,
    f,
    g,
    eps_table,
    eps_len,
    tol,
    max_iter,
    symmetric,
    bary,
    iters,
    resid,
    conv,
):
    """The whole solve of many small problems in one call: problems in parallel, each on one
    thread (so results do not depend on the thread count); the same schedule, stopping rule and
    last exact half-step as the Python driver :func:`_drive`."""
    for k in prange(row_off.shape[0] - 1):
        _solve_one(
            k,
            rows,
            row_off,
            la,
            cols,
            col_off,
            lb,
            f,
            g,
            eps_table,
            eps_len,
            tol,
            max_iter,
            symmetric,
            bary,
            iters,
            resid,
            conv,
        )


# --------------------------------------------------------------------------- pass back-ends
def _offsets(sizes: np.ndarray) -> np.ndarray:
    off = np.zeros(sizes.shape[0] + 1, dtype=np.int64)
    np.cumsum(sizes, out=off[1:])
    return off


class _Side(NamedTuple):
    """One direction of a batch: rows of each problem against that problem's columns."""

    rows: np.ndarray  # (R, d)
    row_off: np.ndarray  # (K + 1,)
    row_prob: np.ndarray  # (R,)
    cols: np.ndarray  # (Cn, d)
    col_off: np.ndarray  # (K + 1,)


def _side(rows: np.ndarray, row_off: np.ndarray, cols: np.ndarray, col_off: np.ndarray) -> _Side:
    prob = np.repeat(np.arange(row_off.shape[0] - 1), np.diff(row_off))
    return _Side(rows, row_off, prob, cols, col_off)


class _DenseSide:
    """Dense passes of one side: its cost matrices are built once per solve."""

    def __init__(self, side: _Side, C: np.ndarray | None = None) -> None:
        self.s = side
        n_k = np.diff(side.row_off)
        m_k = np.diff(side.col_off)
        self.mat_off = _offsets(n_k * m_k)
        if C is None:
            C = np.empty(int(self.mat_off[-1]))
            _build_costs(
                side.rows, side.row_prob, side.row_off, side.cols, side.col_off, self.mat_off, C
            )
        self.C = C
        self.max_m = int(max(1, m_k.max(initial=1)))
        self.parallel = int(self.mat_off[-1]) >= _PARALLEL_MIN_PAIRS
        self._resid = np.empty(side.rows.shape[0])

    def update(self, lw, pot, eps, active, old, average, bary=None) -> np.ndarray:
        s = self.s
        fn = _dense_pass_parallel if self.parallel else _dense_pass_serial
        want = bary is not None
        out_b = bary if want else np.empty((0, s.cols.shape[1]))
        fn(
            s.row_prob,
            s.row_off,
            s.col_off,
            self.mat_off,
            self.C,
            lw,
            pot,
            eps,
            active,
            average,
            old,
            self._resid,
            want,
            s.cols,
            out_b,
            self.max_m,
        )
        return _problem_max(self._resid, s.row_off)


class _TiledSide:
    """Tiled passes of one side through :mod:`kernels` (O((N + M) d) memory at any size)."""

    def __init__(self, side: _Side) -> None:
        self.s = side
        self.tiles = []
        for k in range(side.row_off.shape[0] - 1):
            y = side.cols[side.col_off[k] : side.col_off[k + 1]]
            yT, _ = kernels._transposed_padded(y, np.zeros(y.shape[0]), 0.0)
            self.tiles.append(yT)

    def update(self, lw, pot, eps, active, old, average, bary=None) -> np.ndarray:
        s = self.s
        K = s.row_off.shape[0] - 1
        resid = np.zeros(K)
        for k in range(K):
            if not active[k]:
                continue
            r0, r1 = s.row_off[k], s.row_off[k + 1]
            c0, c1 = s.col_off[k], s.col_off[k + 1]
            yT = self.tiles[k]
            lwp = np.full(yT.shape[1], _NEG_INF)
            lwp[: c1 - c0] = lw[c0:c1]
            potp = np.zeros(yT.shape[1])
            potp[: c1 - c0] = pot[c0:c1]
            lse = np.empty(r1 - r0)
            want = bary is not None
            out_b = bary[r0:r1] if want else np.empty((0, s.rows.shape[1]))
            x = np.ascontiguousarray(s.rows[r0:r1])
            kernels._lse_kernel(x, yT, lwp, potp, float(eps[k]), want, lse, out_b)
            new = -eps[k] * lse
            diff = np.abs(new - old[r0:r1])
            resid[k] = diff.max(initial=0.0)
            old[r0:r1] = 0.5 * (old[r0:r1] + new) if average else new
        return resid


def _problem_max(v: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Per-problem maximum of a packed vector (max is exact: order does not matter)."""
    out = np.zeros(off.shape[0] - 1)
    nonempty = np.diff(off) > 0
    if nonempty.any():
        out[nonempty] = np.maximum.reduceat(v, off[:-1][nonempty])
    return out


# --------------------------------------------------------------------------- schedules
def eps_schedule(diameter: float, blur: float, scaling: float | None) -> np.ndarray:
    """ε-scaling schedule of GeomLoss: ``diameter², (diameter·s)², …`` while above blur², then
    blur² (ε = blur², cost ½|x − y|²). ``scaling=None`` (or a diameter below blur): ``[blur²]``.
    """
    target = blur * blur
    if scaling is None or not diameter > blur:
        return np.array([target])
    if not 0.0 < scaling < 1.0:
        raise ValueError("scaling must be in (0, 1)")
    levels = np.exp(np.arange(2 * math.log(diameter), 2 * math.log(blur), 2 * math.log(scaling)))
    return np.append(levels, target)


def _diameter(pts: np.ndarray, off: np.ndarray, other: np.ndarray, other_off: np.ndarray):
    """Per problem, the diagonal of the bounding box of both point sets (GeomLoss)."""
    K = off.shape[0] - 1
    out = np.zeros(K)
    for k in range(K):
        both = np.concatenate([pts[off[k] : off[k + 1]], other[other_off[k] : other_off[k + 1]]])
        out[k] = float(np.linalg.norm(both.max(axis=0) - both.min(axis=0)))
    return out


def _schedules(
    diam: np.ndarray, blur: float, scaling: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-problem schedules, padding at the end with blur²: (K, L) and lengths (K,)."""
    scheds = [eps_schedule(float(dk), blur, scaling) for dk in diam]
    lengths = np.array([s.shape[0] for s in scheds], dtype=np.int64)
    L = int(lengths.max(initial=1))
    out = np.full((len(scheds), L), blur * blur)
    for k, s in enumerate(scheds):
        out[k, : s.shape[0]] = s
    return out, lengths


# --------------------------------------------------------------------------- results and driver
class SinkhornBatch(NamedTuple):
    """Potentials of K problems, packed like their inputs (per-problem offsets).

    ``f`` (R,) on the row points and ``g`` (Cn,) on the column points (two-sided); for a
    symmetric batch ``g is f``. ``barycentre`` (R, d): ``T(x_i)`` of (F 19) built from ``g``
    in the final pass (``f`` is exactly the soft c-transform of ``g``). ``iterations``,
    ``residual`` (the last sup-change) and ``converged`` are per problem (K,).
    """

    f: np.ndarray
    g: np.ndarray
    barycentre: np.ndarray
    iterations: np.ndarray
    residual: np.ndarray
    converged: np.ndarray


def _pick_path(path: Path, n_k: np.ndarray, m_k: np.ndarray, d: int) -> str:
    if path != "auto":
        return path
    pairs = n_k * m_k
    if pairs.sum() > DENSE_MAX_ENTRIES:
        return "tiled"
    if m_k.max(initial=0) < 2 * kernels.TILE:
        return "dense"
    return "dense" if d >= _DENSE_MIN_DIM and pairs.max() <= DENSE_CROSSOVER_PAIRS else "tiled"


def _drive(
    fwd, bwd, la, lb, f, g, sched, lengths, tol, max_iter, symmetric
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run every problem's schedule and stopping rule; returns (bary, iterations, residual,
    converged). ``fwd`` updates the row side from the columns, ``bwd`` the column side."""
    K, L = sched.shape
    active = np.ones(K, dtype=np.uint8)
    iters = np.zeros(K, dtype=np.int64)
    resid = np.full(K, np.inf)
    converged = np.zeros(K, dtype=bool)
    stage = 0
    while active.any():
        eps = np.ascontiguousarray(sched[:, min(stage, L - 1)])
        if symmetric:
            r = fwd.update(la, f.copy(), eps, active, f, True)
        else:
            r = fwd.update(lb, g, eps, active, f, False)
            r = np.maximum(r, bwd.update(la, f, eps, active, g, False))
        at_target = (stage >= lengths - 1) & active.astype(bool)
        iters[at_target] += 1
        resid[at_target] = r[at_target]
        done = at_target & ((r <= tol) | (iters >= max_iter))
        converged |= at_target & (r <= tol)
        active[done] = 0
        stage += 1
    eps = np.ascontiguousarray(sched[np.arange(K), lengths - 1])
    bary = np.empty_like(fwd.s.rows)
    ones = np.ones(K, dtype=np.uint8)
    if symmetric:
        fwd.update(la, f.copy(), eps, ones, f, False, bary)
    else:
        fwd.update(lb, g, eps, ones, f, False, bary)
    return bary, iters, resid, converged


def _log_weights(w: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(w)


def sinkhorn_pairs(
    x: np.ndarray,
    x_off: np.ndarray,
    a: np.ndarray,
    y: np.ndarray,
    y_off: np.ndarray,
    b: np.ndarray,
    blur: float,
    *,
    f0: np.ndarray | None = None,
    g0: np.ndarray | None = None,
    scaling: float | None = 0.5,
    tol: float = 1e-9,
    max_iter: int = 1000,
    path: Path = "auto",
) -> SinkhornBatch:
    """Two-sided potentials of K problems ``(x_k, a_k)`` vs ``(y_k, b_k)`` (flows note §4.1).

    Parameters
    ----------
    x, a : (R, d) float64 C-contiguous points and (R,) weights, problem k in rows
        ``x_off[k]:x_off[k+1]`` (``x_off`` (K + 1,) int64).
    y, b, y_off : the same for the column measures.
    blur : ε = blur² (cost ½|x − y|²).
    f0, g0 : warm start (R,), (Cn,); when given, ``scaling`` is ignored (no annealing).
    scaling : ε-scaling factor (GeomLoss's ``scaling``), or None for no annealing.
    tol : stop when the sup-change of (f, g) over one iteration at ε = blur² is <= tol.
    max_iter : most iterations at ε = blur².
    path : "dense", "tiled" or "auto" (by size, see module docstring).

    Returns
    -------
    :class:`SinkhornBatch`; ``OT_ε(α_k, β_k) = ⟨a_k, f_k⟩ + ⟨b_k, g_k⟩`` at convergence.
    """
    n_k, m_k = np.diff(x_off), np.diff(y_off)
    warm = f0 is not None and g0 is not None
    f = np.array(f0, dtype=np.float64) if warm else np.zeros(x.shape[0])
    g = np.array(g0, dtype=np.float64) if warm else np.zeros(y.shape[0])
    diam = np.zeros(n_k.shape[0]) if warm else _diameter(x, x_off, y, y_off)
    sched, lengths = _schedules(diam, blur, None if warm else scaling)
    la, lb = _log_weights(a), _log_weights(b)
    dense = _pick_path(path, n_k, m_k, x.shape[1]) == "dense"
    if dense and (n_k * m_k).max(initial=0) <= _SMALL_PAIRS:
        return _small(x, x_off, la, y, y_off, lb, f, g, sched, lengths, tol, max_iter, False)
    fwd_side = _side(x, x_off, y, y_off)
    bwd_side = _side(y, y_off, x, x_off)
    if dense:
        fwd, bwd = _DenseSide(fwd_side), _DenseSide(bwd_side)
    else:
        fwd, bwd = _TiledSide(fwd_side), _TiledSide(bwd_side)
    bary, iters, resid, conv = _drive(fwd, bwd, la, lb, f, g, sched, lengths, tol, max_iter, False)
    return SinkhornBatch(f, g, bary, iters, resid, conv)


def sinkhorn_self(
    x: np.ndarray,
    x_off: np.ndarray,
    a: np.ndarray,
    blur: float,
    *,
    p0: np.ndarray | None = None,
    scaling: float | None = 0.5,
    tol: float = 1e-9,
    max_iter: int = 1000,
    path: Path = "auto",
) -> SinkhornBatch:
    """Symmetric potentials ``p_k`` of ``OT_ε(α_k, α_k)`` (flows note §4.1, the debiasing terms
    of (F 16)) by the averaged map ``p ← ½(p + T_α(p))``; arguments as in :func:`sinkhorn_pairs`.
    ``OT_ε(α_k, α_k) = 2⟨a_k, p_k⟩`` at convergence; the result's ``g`` is ``f``.
    """
    n_k = np.diff(x_off)
    warm = p0 is not None
    p = np.array(p0, dtype=np.float64) if warm else np.zeros(x.shape[0])
    diam = np.zeros(n_k.shape[0]) if warm else _diameter(x, x_off, x, x_off)
    sched, lengths = _schedules(diam, blur, None if warm else scaling)
    la = _log_weights(a)
    dense = _pick_path(path, n_k, n_k, x.shape[1]) == "dense"
    if dense and (n_k * n_k).max(initial=0) <= _SMALL_PAIRS:
        return _small(x, x_off, la, x, x_off, la, p, p, sched, lengths, tol, max_iter, True)
    side = _side(x, x_off, x, x_off)
    fwd = _DenseSide(side) if dense else _TiledSide(side)
    bary, iters, resid, conv = _drive(
        fwd, None, la, None, p, None, sched, lengths, tol, max_iter, True
    )
    return SinkhornBatch(p, p, bary, iters, resid, conv)


def _small(x, x_off, la, y, y_off, lb, f, g, sched, lengths, tol, max_iter, symmetric):
    K = x_off.shape[0] - 1
    bary = np.empty_like(x)
    iters = np.zeros(K, dtype=np.int64)
    resid = np.zeros(K)
    conv = np.zeros(K, dtype=np.bool_)
    _small_batch_solve(
        x,
        x_off,
        la,
        y,
        y_off,
        lb,
        f,
        g,
        sched,
        lengths,
        float(tol),
        int(max_iter),
        symmetric,
        bary,
        iters,
        resid,
        conv,
    )
    return SinkhornBatch(f, g, bary, iters, resid, conv)


def _warm() -> None:
    """Compile every kernel of this module once on tiny inputs (``warmup.SIGNATURES``)."""
    x = np.linspace(-1.0, 1.0, 6).reshape(3, 2)
    off = np.array([0, 3], dtype=np.int64)
    w = np.full(3, 1.0 / 3.0)
    sinkhorn_pairs(x, off, w, x, off, w, 0.5, max_iter=2, path="dense")  # small-batch solver
    sinkhorn_self(x, off, w, 0.5, max_iter=2, path="dense")
    side = _side(x, off, x, off)
    dense = _DenseSide(side)
    lw, pot, eps, act = np.log(w), np.zeros(3), np.full(1, 0.25), np.ones(1, dtype=np.uint8)
    for parallel in (False, True):
        dense.parallel = parallel
        dense.update(lw, pot, eps, act, np.zeros(3), False, np.empty((3, 2)))
        dense.update(lw, pot, eps, act, np.zeros(3), True)
