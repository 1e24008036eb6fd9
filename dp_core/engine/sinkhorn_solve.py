"""Batched log-domain Sinkhorn solves, cost ``c(x, y) = ½|x − y|²`` (flows note §4.1, §9 P5).

Entropic OT ``OT_ε(α, β) = min_P ⟨P, C⟩ + ε KL(P‖α⊗β)`` with ε = blur² (flows note (F 4), §4.1).
The drivers below solve a *batch* of K independent problems in one call, on the compiled passes
of :mod:`dp_core.engine.sinkhorn` (dense) or :mod:`dp_core.engine.kernels` (tiled):

* **two-sided** :func:`sinkhorn_pairs`, ``(x_k, a_k)`` vs ``(y_k, b_k)``: alternating Sinkhorn
  ``f ← T_β(g)``, ``g ← T_α(f)`` (flows note §4.1, the fixed point of (F 16));
* **symmetric** :func:`sinkhorn_self`, ``(x_k, a_k)`` vs itself: the averaged map
  ``p ← ½(p + T_α(p))`` (flows note §4.1; the debiasing terms of (F 16)).

Convergence policy, per problem (problems stop independently, so a problem's result does not
depend on the rest of its batch):

1. **ε-scaling** on every cold solve (no ``f0``/``g0``/``p0``), as in GeomLoss: ε from
   diameter² down to blur² by factors ``scaling²``, one iteration per level. A warm start skips
   it (the caller decides when a warm start is close enough; see the Sinkhorn memory flow).
2. Iterations at ε = blur² until the **sup-change** of the potentials over one iteration is at
   most ``tol`` — for the two-sided map that change is ``ε max_j |log((Pᵀ1)_j / b_j)|``, a
   relative marginal error — or ``max_iter``.
3. **Newton polishing** of every problem still above ``tol`` at the cap and small enough
   (:data:`NEWTON_MAX_POINTS`, :data:`NEWTON_MAX_ENTRIES`): up to ``newton_steps`` damped
   Newton steps on the dual (:mod:`dp_core.engine.sinkhorn_newton`), then Sinkhorn iterations
   again from there (the same stopping rule and cap) to measure the residual. Sinkhorn stalls —
   a rate of 1 − 10⁻⁷ is common — when the plan is close to a permutation; Newton does not.
4. One last exact half-step ``f = T_β(g)`` (``p = T_α(p)``) fused with the soft-max barycentre
   ``T(x_i) = Σ_j softmax_j(log b_j + (g_j − c_ij)/ε) y_j`` of (F 19).

``converged`` in the result says, per problem, whether the stopping rule was met; a caller must
not present the potentials of an unconverged problem as converged values.

Two pass back-ends, chosen by size (``path="auto"``):

* **dense**: the cost matrices C_k and C_kᵀ are built once per solve and every pass streams over
  their rows. Memory O(Σ n_k m_k); used while that fits :data:`DENSE_MAX_ENTRIES` and the
  problems are small enough that it is measured faster (:data:`DENSE_CROSSOVER_PAIRS`). Batches
  of small problems are solved whole in one compiled call (:func:`sinkhorn.small_batch_solve`).
* **tiled**: :func:`dp_core.engine.kernels.logsumexp_tiled` (padded, transposed tiles, fastexp,
  fixed-tree sums), O((N + M) d) memory at any size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np

from dp_core.engine import kernels, sinkhorn
from dp_core.engine.sinkhorn_newton import c_transform, cost_matrix, newton_pair, newton_self

__all__ = [
    "DENSE_CROSSOVER_PAIRS",
    "DENSE_MAX_ENTRIES",
    "NEWTON_MAX_ENTRIES",
    "NEWTON_MAX_POINTS",
    "NEWTON_STEPS",
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

NEWTON_STEPS = 20
"""Default most Newton steps per problem after the Sinkhorn cap (0 turns polishing off)."""

NEWTON_MAX_POINTS = 1024
"""Newton polishing runs on a problem whose smaller side has at most this many points (its
Hessian is that size; O(n m²) to build, O(m³) to factor)."""

NEWTON_MAX_ENTRIES = 1 << 22
"""... and at most this many pairs (a few dense n × m arrays of float64 live at once)."""


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
            sinkhorn.build_costs(
                side.rows, side.row_prob, side.row_off, side.cols, side.col_off, self.mat_off, C
            )
        self.C = C
        self.max_m = int(max(1, m_k.max(initial=1)))
        self.parallel = int(self.mat_off[-1]) >= _PARALLEL_MIN_PAIRS
        self._resid = np.empty(side.rows.shape[0])

    def update(self, lw, pot, eps, active, old, average, bary=None) -> np.ndarray:
        s = self.s
        fn = sinkhorn.dense_pass_parallel if self.parallel else sinkhorn.dense_pass_serial
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
        self.tiles = [
            kernels.tiled_columns(side.cols[side.col_off[k] : side.col_off[k + 1]])
            for k in range(side.row_off.shape[0] - 1)
        ]

    def update(self, lw, pot, eps, active, old, average, bary=None) -> np.ndarray:
        s = self.s
        K = s.row_off.shape[0] - 1
        resid = np.zeros(K)
        for k in range(K):
            if not active[k]:
                continue
            r0, r1 = s.row_off[k], s.row_off[k + 1]
            c0, c1 = s.col_off[k], s.col_off[k + 1]
            lse = np.empty(r1 - r0)
            x = np.ascontiguousarray(s.rows[r0:r1])
            out_b = None if bary is None else bary[r0:r1]
            kernels.logsumexp_tiled(x, self.tiles[k], lw[c0:c1], pot[c0:c1], eps[k], lse, out_b)
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


# --------------------------------------------------------------------------- results
class SinkhornBatch(NamedTuple):
    """Potentials of K problems, packed like their inputs (per-problem offsets).

    ``f`` (R,) on the row points and ``g`` (Cn,) on the column points (two-sided); for a
    symmetric batch ``g is f``. ``barycentre`` (R, d): ``T(x_i)`` of (F 19) built from ``g``
    in the final pass (``f`` is exactly the soft c-transform of ``g``). Per problem (K,):
    ``iterations`` (Sinkhorn iterations at ε = blur², before and after any Newton polishing),
    ``residual`` (the last sup-change), ``converged`` (``residual <= tol``) and
    ``newton_steps`` (0 where the problem was not polished).
    """

    f: np.ndarray
    g: np.ndarray
    barycentre: np.ndarray
    iterations: np.ndarray
    residual: np.ndarray
    converged: np.ndarray
    newton_steps: np.ndarray


# --------------------------------------------------------------------------- drivers
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


def _small(x, x_off, la, y, y_off, lb, f, g, sched, lengths, tol, max_iter, symmetric):
    K = x_off.shape[0] - 1
    bary = np.empty_like(x)
    iters = np.zeros(K, dtype=np.int64)
    resid = np.zeros(K)
    conv = np.zeros(K, dtype=np.bool_)
    sinkhorn.small_batch_solve(
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
    return SinkhornBatch(f, g, bary, iters, resid, conv, np.zeros(K, dtype=np.int64))


def _solve_pairs(x, x_off, a, y, y_off, b, blur, f, g, scaling, tol, max_iter, path):
    """Steps 1, 2 and 4 of the module docstring for a two-sided batch (``path`` resolved)."""
    diam = np.zeros(x_off.shape[0] - 1) if scaling is None else _diameter(x, x_off, y, y_off)
    sched, lengths = _schedules(diam, blur, scaling)
    la, lb = _log_weights(a), _log_weights(b)
    n_k, m_k = np.diff(x_off), np.diff(y_off)
    if path == "dense" and (n_k * m_k).max(initial=0) <= _SMALL_PAIRS:
        return _small(x, x_off, la, y, y_off, lb, f, g, sched, lengths, tol, max_iter, False)
    fwd_side = _side(x, x_off, y, y_off)
    bwd_side = _side(y, y_off, x, x_off)
    if path == "dense":
        fwd, bwd = _DenseSide(fwd_side), _DenseSide(bwd_side)
    else:
        fwd, bwd = _TiledSide(fwd_side), _TiledSide(bwd_side)
    bary, iters, resid, conv = _drive(fwd, bwd, la, lb, f, g, sched, lengths, tol, max_iter, False)
    return SinkhornBatch(f, g, bary, iters, resid, conv, np.zeros(iters.shape[0], dtype=np.int64))


def _solve_self(x, x_off, a, blur, p, scaling, tol, max_iter, path):
    """Steps 1, 2 and 4 of the module docstring for a symmetric batch (``path`` resolved)."""
    diam = np.zeros(x_off.shape[0] - 1) if scaling is None else _diameter(x, x_off, x, x_off)
    sched, lengths = _schedules(diam, blur, scaling)
    la = _log_weights(a)
    n_k = np.diff(x_off)
    if path == "dense" and (n_k * n_k).max(initial=0) <= _SMALL_PAIRS:
        return _small(x, x_off, la, x, x_off, la, p, p, sched, lengths, tol, max_iter, True)
    side = _side(x, x_off, x, x_off)
    fwd = _DenseSide(side) if path == "dense" else _TiledSide(side)
    bary, iters, resid, conv = _drive(
        fwd, None, la, None, p, None, sched, lengths, tol, max_iter, True
    )
    return SinkhornBatch(p, p, bary, iters, resid, conv, np.zeros(iters.shape[0], dtype=np.int64))


# --------------------------------------------------------------------------- Newton polishing
def _to_polish(res: SinkhornBatch, n_k: np.ndarray, m_k: np.ndarray) -> np.ndarray:
    """Problems above the tolerance at the cap that are small enough for a dense Newton step."""
    small = (np.minimum(n_k, m_k) <= NEWTON_MAX_POINTS) & (n_k * m_k <= NEWTON_MAX_ENTRIES)
    return np.flatnonzero(~res.converged & small & (n_k > 0) & (m_k > 0))


def _gather(v: np.ndarray, off: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The blocks ``v[off[k]:off[k+1]]`` for k in idx, packed, and their offsets."""
    sizes = np.diff(off)[idx]
    parts = [v[off[k] : off[k + 1]] for k in idx]
    return np.ascontiguousarray(np.concatenate(parts)), _offsets(sizes)


def _merge(res: SinkhornBatch, sub: SinkhornBatch, idx, x_off, y_off, newton) -> SinkhornBatch:
    """Write the re-solved problems ``idx`` (packed in ``sub``) back into ``res``."""
    sx, sy = _offsets(np.diff(x_off)[idx]), _offsets(np.diff(y_off)[idx])
    iters, resid, conv = res.iterations.copy(), res.residual.copy(), res.converged.copy()
    for i, k in enumerate(idx):
        res.f[x_off[k] : x_off[k + 1]] = sub.f[sx[i] : sx[i + 1]]
        if res.g is not res.f:
            res.g[y_off[k] : y_off[k + 1]] = sub.g[sy[i] : sy[i + 1]]
        res.barycentre[x_off[k] : x_off[k + 1]] = sub.barycentre[sx[i] : sx[i + 1]]
        iters[k] += sub.iterations[i]
        resid[k], conv[k] = sub.residual[i], sub.converged[i]
    return res._replace(iterations=iters, residual=resid, converged=conv, newton_steps=newton)


def _polish(
    res: SinkhornBatch,
    n_k: np.ndarray,
    m_k: np.ndarray,
    newton_one: Callable[[int], int],
    resolve: Callable[[np.ndarray], SinkhornBatch],
    offsets: tuple[np.ndarray, np.ndarray],
) -> SinkhornBatch:
    """The polishers' common frame: the problems :func:`_to_polish` picks get Newton steps in
    place (``newton_one(k)`` returns how many), then one more batched solve from there
    (``resolve(idx)``), merged back."""
    idx = _to_polish(res, n_k, m_k)
    if idx.size == 0:
        return res
    newton = res.newton_steps.copy()
    for k in idx:
        newton[k] = newton_one(k)
    return _merge(res, resolve(idx), idx, offsets[0], offsets[1], newton)


def _polish_pairs(res, x, x_off, a, y, y_off, b, blur, tol, max_iter, newton_steps, path):
    eps = blur * blur

    def newton_one(k: int) -> int:
        rows, cols = slice(x_off[k], x_off[k + 1]), slice(y_off[k], y_off[k + 1])
        ra, cb = a[rows] > 0, b[cols] > 0
        C = cost_matrix(x[rows][ra], y[cols][cb])
        f, g = res.f[rows], res.g[cols]  # views: written in place
        if C.shape[1] <= C.shape[0]:  # the Hessian on the smaller side
            fk, gk, steps, _ = newton_pair(
                C, a[rows][ra], b[cols][cb], g[cb], eps, tol / 10, newton_steps
            )
        else:
            gk, fk, steps, _ = newton_pair(
                C.T, b[cols][cb], a[rows][ra], f[ra], eps, tol / 10, newton_steps
            )
        f[ra], g[cb] = fk, gk
        return steps

    def resolve(idx: np.ndarray) -> SinkhornBatch:
        xs, xo = _gather(x, x_off, idx)
        ys, yo = _gather(y, y_off, idx)
        a_s, b_s = _gather(a, x_off, idx)[0], _gather(b, y_off, idx)[0]
        f0, g0 = _gather(res.f, x_off, idx)[0], _gather(res.g, y_off, idx)[0]
        return _solve_pairs(xs, xo, a_s, ys, yo, b_s, blur, f0, g0, None, tol, max_iter, path)

    return _polish(res, np.diff(x_off), np.diff(y_off), newton_one, resolve, (x_off, y_off))


def _polish_self(res, x, x_off, a, blur, tol, max_iter, newton_steps, path):
    eps = blur * blur

    def newton_one(k: int) -> int:
        rows = slice(x_off[k], x_off[k + 1])
        ra = a[rows] > 0
        p = res.f[rows]
        pk, steps, _ = newton_self(
            cost_matrix(x[rows][ra], x[rows][ra]), a[rows][ra], p[ra], eps, tol / 10, newton_steps
        )
        p[ra] = pk
        if not ra.all():  # points of weight 0: their potential is the c-transform of the rest
            C0 = cost_matrix(x[rows][~ra], x[rows][ra])
            p[~ra] = c_transform(C0, np.log(a[rows][ra]), pk, eps)
        return steps

    def resolve(idx: np.ndarray) -> SinkhornBatch:
        xs, xo = _gather(x, x_off, idx)
        a_s, p0 = _gather(a, x_off, idx)[0], _gather(res.f, x_off, idx)[0]
        return _solve_self(xs, xo, a_s, blur, p0, None, tol, max_iter, path)

    n_k = np.diff(x_off)
    return _polish(res, n_k, n_k, newton_one, resolve, (x_off, x_off))


# --------------------------------------------------------------------------- public API
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
    newton_steps: int = NEWTON_STEPS,
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
    scaling : ε-scaling factor (GeomLoss's ``scaling``) of a cold solve, or None for none.
    tol : stop when the sup-change of (f, g) over one iteration at ε = blur² is <= tol.
    max_iter : most iterations at ε = blur², before and again after Newton polishing.
    newton_steps : most Newton steps for a problem still above ``tol`` at ``max_iter``
        (0: none; see the module docstring).
    path : "dense", "tiled" or "auto" (by size, see module docstring).

    Returns
    -------
    :class:`SinkhornBatch`; ``OT_ε(α_k, β_k) = ⟨a_k, f_k⟩ + ⟨b_k, g_k⟩`` where converged.
    """
    warm = f0 is not None and g0 is not None
    f = np.array(f0, dtype=np.float64) if warm else np.zeros(x.shape[0])
    g = np.array(g0, dtype=np.float64) if warm else np.zeros(y.shape[0])
    chosen = _pick_path(path, np.diff(x_off), np.diff(y_off), x.shape[1])
    args = (tol, max_iter, chosen)
    res = _solve_pairs(x, x_off, a, y, y_off, b, blur, f, g, None if warm else scaling, *args)
    if newton_steps > 0 and not res.converged.all():
        res = _polish_pairs(
            res, x, x_off, a, y, y_off, b, blur, tol, max_iter, newton_steps, chosen
        )
    return res


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
    newton_steps: int = NEWTON_STEPS,
    path: Path = "auto",
) -> SinkhornBatch:
    """Symmetric potentials ``p_k`` of ``OT_ε(α_k, α_k)`` (flows note §4.1, the debiasing terms
    of (F 16)) by the averaged map ``p ← ½(p + T_α(p))``; arguments as in :func:`sinkhorn_pairs`.
    ``OT_ε(α_k, α_k) = 2⟨a_k, p_k⟩`` where converged; the result's ``g`` is ``f``.
    """
    warm = p0 is not None
    p = np.array(p0, dtype=np.float64) if warm else np.zeros(x.shape[0])
    n_k = np.diff(x_off)
    chosen = _pick_path(path, n_k, n_k, x.shape[1])
    res = _solve_self(x, x_off, a, blur, p, None if warm else scaling, tol, max_iter, chosen)
    if newton_steps > 0 and not res.converged.all():
        res = _polish_self(res, x, x_off, a, blur, tol, max_iter, newton_steps, chosen)
    return res
