"""The mean-field two-layer unit of the student–teacher task (flows note §2.4, §5.6).

A particle is one unit ``Z = [W₁ | w₂] ∈ R^{H×(D+1)}`` (row h holds the D input weights of hidden
neuron h and, in column D, its output weight), and

    ψ(x; Z) = g(s),   s = Σ_h w₂[h]·relu(W₁[h]·x),

with output non-linearity ``QUADEXP``, ``g(s) = exp(−s²/σ_out²)`` (Arbel et al.'s "quadexp";
σ_out = 2 in their code, i.e. exp(−s²/4)), or ``LINEAR``, ``g(s) = s``. The model is the particle
mean ``f_ν(x) = Σ_i a_i ψ(x; Z_i)``, and the feature kernel of the MMD flow on this task is
``k(z, z′) = mean_n ψ(x_n; z) ψ(x_n; z′)`` over a set of inputs (flows note §9, "feature kernel"):
it is never formed; everything goes through the reductions below.

* :func:`mean_output` — ``f_n = Σ_i a_i ψ(x_n; Z_i)``: parallel over tiles of inputs, particles
  summed in index order;
* :func:`pullback` — for a residual ``r`` over the inputs, ``v_i = Σ_n r_n ψ(x_n; Z_i)`` and
  ``G_i = Σ_n r_n ∇_Z ψ(x_n; Z_i)``: parallel over particles; the W₁ part is accumulated as a
  sum of outer products over the inputs in index order (a straight loop over the D coordinates
  of each input), with ``∂ψ/∂w₂[h] = g′(s)·relu(W₁[h]·x)``
  and ``∂ψ/∂W₁[h, k] = g′(s)·w₂[h]·1[W₁[h]·x > 0]·x_k`` (the ReLU derivative at 0 is 0);
* :func:`unit_outputs` — the dense (N, n) matrix ``ψ(x_n; Z_i)``, for small N (a teacher's Gram).

Layout: the inputs are copied once into tiles of ``TILE`` inputs stored coordinate-major,
``(n'/TILE, D, TILE)`` with zero padding, and into rows ``(n, D')`` padded to a multiple of 8
coordinates. The two contractions — pre-activations ``W₁x`` over a tile and the W₁ gradient
``Σ_n e_n x_n`` — run as micro-kernels with eight independent accumulators that stay in
registers (8 inputs, or 8 coordinates, per vector), so they vectorise without ``fastmath``; the
quadexp goes through the vectorisable :func:`fastexp.exp`. Every sum has a fixed order (inputs
and coordinates in index order, per-lane partial sums ending in a fixed pairwise tree, particles
in index order): results do not depend on the number of threads. Padded inputs carry a zero
residual and are never written out.
Cost O(N·n·H·D) per call; memory O(N·H·D + n·D) plus O(H·D·TILE) per thread.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from dp_core.engine.fastexp import exp, fma

__all__ = ["LINEAR", "QUADEXP", "TILE", "mean_output", "pullback", "unit_outputs"]

QUADEXP = 0
LINEAR = 1
TILE = 32


def _input_layouts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (n, D) as tiles ``(n'/TILE, D, TILE)`` (inputs of a tile contiguous per coordinate, zero
    padding to n' a multiple of TILE) and as rows ``(n, D')`` with D' a multiple of 16."""
    n, d = x.shape
    ntiles = -(-n // TILE)
    tiles = np.zeros((ntiles * TILE, d))
    tiles[:n] = x
    tiles = np.ascontiguousarray(tiles.reshape(ntiles, TILE, d).transpose(0, 2, 1))
    rows = np.zeros((n, -(-d // 16) * 16))
    rows[:, :d] = x
    return tiles, rows


@njit(cache=True, nogil=True, inline="always")
def _dot16(zi, h, xt, t0, d):
    """``Σ_k zi[h, k]·xt[k, t0 + l]`` for l < 16: sixteen independent accumulators (two vector
    registers, two dependency chains), summed over k in order."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = 0.0
    for k in range(d):
        zk = zi[h, k]
        xk = xt[k, t0 : t0 + 16]  # constant indices below: no negative-index handling
        a0 = fma(zk, xk[0], a0)
        a1 = fma(zk, xk[1], a1)
        a2 = fma(zk, xk[2], a2)
        a3 = fma(zk, xk[3], a3)
        a4 = fma(zk, xk[4], a4)
        a5 = fma(zk, xk[5], a5)
        a6 = fma(zk, xk[6], a6)
        a7 = fma(zk, xk[7], a7)
        b0 = fma(zk, xk[8], b0)
        b1 = fma(zk, xk[9], b1)
        b2 = fma(zk, xk[10], b2)
        b3 = fma(zk, xk[11], b3)
        b4 = fma(zk, xk[12], b4)
        b5 = fma(zk, xk[13], b5)
        b6 = fma(zk, xk[14], b6)
        b7 = fma(zk, xk[15], b7)
    return (a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7)


@njit(cache=True, nogil=True, inline="always")
def _axpy16(eh, rows, n, k0):
    """``Σ_m eh[m]·rows[m, k0 + l]`` for l < 16, inputs in order (as :func:`_dot16`)."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = 0.0
    for m in range(n):
        em = eh[m]
        xm = rows[m, k0 : k0 + 16]
        a0 = fma(em, xm[0], a0)
        a1 = fma(em, xm[1], a1)
        a2 = fma(em, xm[2], a2)
        a3 = fma(em, xm[3], a3)
        a4 = fma(em, xm[4], a4)
        a5 = fma(em, xm[5], a5)
        a6 = fma(em, xm[6], a6)
        a7 = fma(em, xm[7], a7)
        b0 = fma(em, xm[8], b0)
        b1 = fma(em, xm[9], b1)
        b2 = fma(em, xm[10], b2)
        b3 = fma(em, xm[11], b3)
        b4 = fma(em, xm[12], b4)
        b5 = fma(em, xm[13], b5)
        b6 = fma(em, xm[14], b6)
        b7 = fma(em, xm[15], b7)
    return (a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7)


@njit(cache=True, nogil=True, inline="always")
def _tile_forward(zi, xt, kind, inv_s2, pre, s, g, dg):
    """For one particle and one tile of inputs ``xt`` (D, TILE): pre[h, t] = W₁[h]·x_t,
    s[t] = Σ_h w₂[h] relu(pre[h, t]), g[t] = g(s[t]), dg[t] = g′(s[t])."""
    hidden, width = zi.shape
    d = width - 1
    for h in range(hidden):
        ph = pre[h]
        for t0 in range(0, TILE, 16):
            acc = _dot16(zi, h, xt, t0, d)
            for lane in range(16):
                ph[t0 + lane] = acc[lane]
    for t in range(TILE):
        s[t] = 0.0
    for h in range(hidden):
        ph = pre[h]
        w2 = zi[h, d]
        for t in range(TILE):
            s[t] = fma(w2, max(ph[t], 0.0), s[t])
    if kind == QUADEXP:
        for t in range(TILE):
            e = exp(-s[t] * s[t] * inv_s2)
            g[t] = e
            dg[t] = -2.0 * s[t] * inv_s2 * e
    else:
        for t in range(TILE):
            g[t] = s[t]
            dg[t] = 1.0


@njit(cache=True, nogil=True, inline="always")
def _tree_sum(v):
    """Sum of ``v[:TILE]`` by a fixed pairwise tree (destroys ``v``)."""
    for t in range(16):
        v[t] += v[t + 16]
    for t in range(8):
        v[t] += v[t + 8]
    return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]))


@njit(parallel=True, cache=True, nogil=True)
def _mean_output_kernel(z, a, tiles, kind, out_scale, out):
    n_part, hidden, _ = z.shape
    n = out.shape[0]
    inv_s2 = 1.0 / (out_scale * out_scale)
    for b in prange(tiles.shape[0]):
        n0 = b * TILE
        xt = tiles[b]
        pre = np.empty((hidden, TILE))
        s = np.empty(TILE)
        g = np.empty(TILE)
        dg = np.empty(TILE)
        acc = np.zeros(TILE)
        for i in range(n_part):
            _tile_forward(z[i], xt, kind, inv_s2, pre, s, g, dg)
            ai = a[i]
            for t in range(TILE):
                acc[t] = fma(ai, g[t], acc[t])
        for t in range(min(TILE, n - n0)):
            out[n0 + t] = acc[t]


@njit(parallel=True, cache=True, nogil=True)
def _pullback_kernel(z, tiles, rows, r, kind, out_scale, want_grad, values, grads):
    n_part, hidden, width = z.shape
    d = width - 1
    n = rows.shape[0]
    inv_s2 = 1.0 / (out_scale * out_scale)
    ntiles = tiles.shape[0]
    for i in prange(n_part):
        pre = np.empty((hidden, TILE))
        s = np.empty(TILE)
        g = np.empty(TILE)
        dg = np.empty(TILE)
        c = np.empty(TILE)
        vacc = np.zeros(TILE)
        w2acc = np.zeros((hidden, TILE))
        e = np.empty((hidden, ntiles * TILE) if want_grad else (0, 0))
        zi = z[i]
        for b in range(ntiles):
            n0 = b * TILE
            _tile_forward(zi, tiles[b], kind, inv_s2, pre, s, g, dg)
            rt = r[n0 : n0 + TILE]
            for t in range(TILE):
                vacc[t] = fma(rt[t], g[t], vacc[t])
            if not want_grad:
                continue
            for t in range(TILE):
                c[t] = rt[t] * dg[t]
            for h in range(hidden):
                ph = pre[h]
                w2 = zi[h, d]
                wa = w2acc[h]
                eh = e[h, n0 : n0 + TILE]
                for t in range(TILE):
                    wa[t] = fma(c[t], max(ph[t], 0.0), wa[t])
                    eh[t] = c[t] * w2 if ph[t] > 0.0 else 0.0
        values[i] = _tree_sum(vacc)
        if not want_grad:
            continue
        gi = grads[i]
        for h in range(hidden):
            gi[h, d] = _tree_sum(w2acc[h])
            eh = e[h]
            for k0 in range(0, rows.shape[1], 16):  # Σ_m e[h, m] x_m, 16 coordinates at a time
                acc = _axpy16(eh, rows, n, k0)
                for lane in range(16):
                    if k0 + lane < d:
                        gi[h, k0 + lane] = acc[lane]


@njit(parallel=True, cache=True, nogil=True)
def _unit_outputs_kernel(z, tiles, kind, out_scale, out):
    n_part, hidden, _ = z.shape
    n = out.shape[1]
    inv_s2 = 1.0 / (out_scale * out_scale)
    for i in prange(n_part):
        pre = np.empty((hidden, TILE))
        s = np.empty(TILE)
        g = np.empty(TILE)
        dg = np.empty(TILE)
        for b in range(tiles.shape[0]):
            n0 = b * TILE
            _tile_forward(z[i], tiles[b], kind, inv_s2, pre, s, g, dg)
            for t in range(min(TILE, n - n0)):
                out[i, n0 + t] = g[t]


def mean_output(
    z: np.ndarray, a: np.ndarray, x: np.ndarray, kind: int, out_scale: float
) -> np.ndarray:
    """``f_n = Σ_i a_i ψ(x_n; Z_i)``.

    Parameters
    ----------
    z : (N, H, D+1) float64 C-contiguous units ``[W₁ | w₂]``.
    a : (N,) particle weights (signed allowed).
    x : (n, D) inputs.
    kind : QUADEXP or LINEAR; out_scale : σ_out of the quadexp (ignored for LINEAR).

    Returns
    -------
    (n,) float64.
    """
    out = np.empty(x.shape[0])
    a = np.ascontiguousarray(a, dtype=np.float64)
    tiles, _ = _input_layouts(np.asarray(x, dtype=np.float64))
    _mean_output_kernel(z, a, tiles, kind, float(out_scale), out)
    return out


def pullback(
    z: np.ndarray,
    x: np.ndarray,
    r: np.ndarray,
    kind: int,
    out_scale: float,
    want_grad: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``(v, G)`` with ``v_i = Σ_n r_n ψ(x_n; Z_i)`` (N,) and ``G_i = Σ_n r_n ∇_Z ψ(x_n; Z_i)``
    (N, H, D+1); G is left empty (shape (0, H, D+1)) when ``want_grad`` is False.

    Shapes as in :func:`mean_output`; r is (n,).
    """
    tiles, rows = _input_layouts(np.asarray(x, dtype=np.float64))
    rp = np.zeros(tiles.shape[0] * TILE)
    rp[: x.shape[0]] = r
    values = np.empty(z.shape[0])
    grads = np.empty(z.shape if want_grad else (0, *z.shape[1:]))
    _pullback_kernel(z, tiles, rows, rp, kind, float(out_scale), want_grad, values, grads)
    return values, grads


def unit_outputs(z: np.ndarray, x: np.ndarray, kind: int, out_scale: float) -> np.ndarray:
    """The dense matrix ``ψ(x_n; Z_i)``, (N, n): for small N only (e.g. the teacher's Gram)."""
    out = np.empty((z.shape[0], x.shape[0]))
    tiles, _ = _input_layouts(np.asarray(x, dtype=np.float64))
    _unit_outputs_kernel(z, tiles, kind, float(out_scale), out)
    return out
