"""Compiled passes of the batched log-domain Sinkhorn, cost ``c(x, y) = ½|x − y|²`` (flows note
§4.1, §9 P3/P5). Kernels only: the schedules, stopping rules, Newton polishing and the choice of
back-end are the driver's, :mod:`dp_core.engine.sinkhorn_solve`.

Everything is one primitive, the **soft c-transform** (P3), written for the side being updated::

    T_β(g)_i = −ε log Σ_j b_j exp((g_j − c(x_i, y_j)) / ε)

evaluated as one max-shifted log-sum-exp pass per row, never overflowing or underflowing.
Problems are *packed*: K problems, problem k's rows in ``row_off[k]:row_off[k+1]`` and its
columns in ``col_off[k]:col_off[k+1]``; ``row_prob[r]`` names the problem of row r.

* :func:`build_costs`: the dense cost matrices ``C_k`` of every problem, flat, at ``mat_off[k]``
  (exact differences, no ``|x|² + |y|² − 2x·y`` cancellation).
* :func:`dense_pass_serial` / :func:`dense_pass_parallel`: one soft c-transform pass over the
  rows of every active problem against its dense ``C_k`` (``new_i = −ε_k L_i``), the per-row
  change ``resid_i = |new_i − old_i|``, the update ``old_i ← new_i`` (or ``½(old_i + new_i)``,
  the averaged map of the symmetric problem), and optionally, fused, the soft-max barycentre
  ``T(x_i) = Σ_j softmax_j(log b_j + (g_j − c_ij)/ε) y_j`` of (F 19). Serial and row-parallel
  twins give the same bits.
* :func:`small_batch_solve`: the whole solve of many small problems in one call, problems in
  parallel, each on one thread: per problem its ε-schedule (one iteration per level), then
  iterations at the target until the sup-change of the potentials is at most ``tol`` (or
  ``max_iter``), then one exact half-step fused with the barycentre.

Rows are reduced in a fixed order by one thread each (lane sums and a fixed tree), so the results
are bit-for-bit the same on one thread or many. No ``fastmath``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from dp_core.engine.fastexp import exp, fma

__all__ = ["build_costs", "dense_pass_parallel", "dense_pass_serial", "small_batch_solve"]

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
def dense_pass_serial(
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
def dense_pass_parallel(
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
    """:func:`dense_pass_serial` with blocks of rows in parallel (each row by one thread)."""
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
def build_costs(rows, row_prob, row_off, cols, col_off, mat_off, C):
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
    :func:`build_costs`, so both paths see the same bits)."""
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
    """Problem k of :func:`small_batch_solve`, on the calling thread."""
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
def small_batch_solve(
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
    last exact half-step as the driver's passes (:mod:`dp_core.engine.sinkhorn_solve`)."""
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
