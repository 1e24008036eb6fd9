"""Dense NumPy log-domain Sinkhorn: the independent oracle of ``dp_core.engine.sinkhorn``.

Cost ``c(x, y) = ½|x − y|²`` (flows note (F 4)), ε = blur². Plain alternating Sinkhorn on the
full cost matrix with :func:`scipy.special.logsumexp`, no ε-scaling, no tiling, no shared code
with the engine (flows note §4.1):

* two-sided: ``f_i = −ε log Σ_j b_j e^{(g_j − C_ij)/ε}``,
  ``g_j = −ε log Σ_i a_i e^{(f_i − C_ij)/ε}``;
* symmetric: ``p ← ½(p + T(p))``;
* :func:`sinkhorn_divergence_reference`: (F 16) both ways — from the potentials,
  ``⟨a, f − p⟩ + ⟨b, g − q⟩``, and from the primal plans, ``⟨P, C⟩ + ε KL(P‖a⊗b)``;
* :func:`barycentric_map_reference`: ``T(x) = Σ_j softmax_j(log b_j + (g_j − c(x, y_j))/ε) y_j``
  (F 19), and the extended potential ``f(x)`` (the soft c-transform at any point).
* :func:`sinkhorn_newton_reference`, :func:`sinkhorn_self_newton_reference`,
  :func:`sinkhorn_divergence_newton_reference`: the same problems where plain Sinkhorn stalls
  (plans close to a permutation), polished by Newton on the joint dual to a marginal error of
  1e-13 that they measure on the returned plan and return as a certificate.

Tests and benchmarks only; never imported by the engine.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.special import logsumexp, softmax

from dp_core.types import FloatArray

__all__ = [
    "DivergenceReference",
    "barycentric_map_reference",
    "cost_matrix",
    "sinkhorn_divergence_newton_reference",
    "sinkhorn_divergence_reference",
    "sinkhorn_newton_reference",
    "sinkhorn_reference",
    "sinkhorn_self_newton_reference",
    "sinkhorn_self_reference",
]


def cost_matrix(x: npt.ArrayLike, y: npt.ArrayLike) -> FloatArray:
    """``C_ij = ½|x_i − y_j|²`` from explicit differences, (N, M)."""
    xs, ys = np.atleast_2d(np.asarray(x, float)), np.atleast_2d(np.asarray(y, float))
    diff = xs[:, None, :] - ys[None, :, :]
    return 0.5 * np.einsum("nmk,nmk->nm", diff, diff)


def _transform(C: FloatArray, log_w: FloatArray, pot: FloatArray, eps: float) -> FloatArray:
    """Soft c-transform over the columns of C: ``−ε log Σ_j w_j e^{(pot_j − C_ij)/ε}``."""
    return -eps * logsumexp(log_w[None, :] + (pot[None, :] - C) / eps, axis=1)


def sinkhorn_reference(
    x: npt.ArrayLike,
    a: npt.ArrayLike,
    y: npt.ArrayLike,
    b: npt.ArrayLike,
    eps: float,
    tol: float = 1e-13,
    max_iter: int = 200_000,
) -> tuple[FloatArray, FloatArray, int]:
    """Alternating Sinkhorn until the sup-change of (f, g) is <= tol; returns (f, g, iterations).
    The last half-step is ``f = T_b(g)``."""
    C = cost_matrix(x, y)
    la, lb = np.log(np.asarray(a, float)), np.log(np.asarray(b, float))
    f, g = np.zeros(C.shape[0]), np.zeros(C.shape[1])
    it = 0
    while it < max_iter:
        it += 1
        f_new = _transform(C, lb, g, eps)
        g_new = _transform(C.T, la, f_new, eps)
        change = max(np.abs(f_new - f).max(), np.abs(g_new - g).max())
        f, g = f_new, g_new
        if change <= tol:
            break
    return _transform(C, lb, g, eps), g, it


def sinkhorn_self_reference(
    x: npt.ArrayLike, a: npt.ArrayLike, eps: float, tol: float = 1e-13, max_iter: int = 200_000
) -> tuple[FloatArray, int]:
    """Symmetric potential ``p = T_a(p)`` by the averaged map; returns (p, iterations)."""
    C = cost_matrix(x, x)
    la = np.log(np.asarray(a, float))
    p = np.zeros(C.shape[0])
    it = 0
    while it < max_iter:
        it += 1
        t = _transform(C, la, p, eps)
        change = np.abs(t - p).max()
        p = 0.5 * (p + t)
        if change <= tol:
            break
    return _transform(C, la, p, eps), it


def _primal(C: FloatArray, a: FloatArray, b: FloatArray, f, g, eps: float) -> float:
    """``⟨P, C⟩ + ε KL(P‖a⊗b)`` with ``P_ij = a_i b_j e^{(f_i + g_j − C_ij)/ε}``."""
    log_ratio = (f[:, None] + g[None, :] - C) / eps
    P = a[:, None] * b[None, :] * np.exp(log_ratio)
    return float(np.sum(P * C) + eps * (np.sum(P * log_ratio) - P.sum() + 1.0))


class DivergenceReference(NamedTuple):
    """(F 16) from the potentials and from the primal plans, and the three OT_ε terms."""

    divergence: float
    divergence_primal: float
    ot_xy: float
    ot_xx: float
    ot_yy: float
    f: FloatArray
    g: FloatArray
    p: FloatArray
    q: FloatArray


def sinkhorn_divergence_reference(
    x: npt.ArrayLike,
    a: npt.ArrayLike,
    y: npt.ArrayLike,
    b: npt.ArrayLike,
    eps: float,
    tol: float = 1e-13,
) -> DivergenceReference:
    """Debiased ``S_ε(α, β) = OT_ε(α, β) − ½OT_ε(α, α) − ½OT_ε(β, β)`` (F 16)."""
    aa, bb = np.asarray(a, float), np.asarray(b, float)
    f, g, _ = sinkhorn_reference(x, aa, y, bb, eps, tol)
    p, _ = sinkhorn_self_reference(x, aa, eps, tol)
    q, _ = sinkhorn_self_reference(y, bb, eps, tol)
    ot_xy, ot_xx, ot_yy = aa @ f + bb @ g, 2.0 * aa @ p, 2.0 * bb @ q
    primal = (
        _primal(cost_matrix(x, y), aa, bb, f, g, eps)
        - 0.5 * _primal(cost_matrix(x, x), aa, aa, p, p, eps)
        - 0.5 * _primal(cost_matrix(y, y), bb, bb, q, q, eps)
    )
    value = aa @ (f - p) + bb @ (g - q)
    return DivergenceReference(float(value), primal, ot_xy, ot_xx, ot_yy, f, g, p, q)


def barycentric_map_reference(
    z: npt.ArrayLike, y: npt.ArrayLike, b: npt.ArrayLike, g: npt.ArrayLike, eps: float
) -> tuple[FloatArray, FloatArray]:
    """Extended potential ``f(z)`` and barycentric map ``T(z)`` of (F 19) at any points z."""
    C = cost_matrix(z, y)
    scores = np.log(np.asarray(b, float))[None, :] + (np.asarray(g, float)[None, :] - C) / eps
    f = -eps * logsumexp(scores, axis=1)
    return f, softmax(scores, axis=1) @ np.asarray(y, float)


# --------------------------------------------------------------------------- Newton-polished
def _plan(C: FloatArray, la: FloatArray, lb: FloatArray, f, g, eps: float) -> FloatArray:
    """``P_ij = a_i b_j e^{(f_i + g_j − C_ij)/ε}`` (inf for a trial step too long)."""
    with np.errstate(over="ignore"):
        return np.exp(la[:, None] + lb[None, :] + (f[:, None] + g[None, :] - C) / eps)


def _dual(C, la, lb, f, g, eps) -> float:
    """The concave dual ``⟨a, f⟩ + ⟨b, g⟩ − ε(⟨P, 1⟩ − 1)`` of OT_ε."""
    P = _plan(C, la, lb, f, g, eps)
    with np.errstate(invalid="ignore"):
        return float(np.exp(la) @ f + np.exp(lb) @ g - eps * (P.sum() - 1.0))


def sinkhorn_newton_reference(
    x: npt.ArrayLike,
    a: npt.ArrayLike,
    y: npt.ArrayLike,
    b: npt.ArrayLike,
    eps: float,
    tol: float = 1e-13,
    sinkhorn_iter: int = 300,
    max_newton: int = 60,
) -> tuple[FloatArray, FloatArray, float]:
    """Two-sided potentials to a **marginal error** of ``tol``; returns (f, g, error).

    Plain alternating Sinkhorn (:func:`sinkhorn_reference`) stalls when the plan is close to a
    permutation: blocks of points that barely exchange mass make the second singular value of
    the plan ``1 − O(e^{−gap/ε})``, so the potentials drift for millions of iterations. Here
    ``sinkhorn_iter`` plain iterations are followed by damped Newton steps on the *joint* dual
    in (f, g), Hessian ``−ε⁻¹ [[diag P1, P], [Pᵀ, diag Pᵀ1]]`` (singular along the gauge
    (1, −1), so the step is the least-squares solution), with backtracking on the dual, until
    ``max(‖P1 − a‖_∞, ‖Pᵀ1 − b‖_∞) <= tol``. The returned error is that marginal error,
    measured on the returned plan (rows exact: ``f`` is the last half-step ``T_b(g)``), so a
    test can check the certificate rather than trust the loop. Positive weights only.
    """
    aa, bb = np.asarray(a, float), np.asarray(b, float)
    C = cost_matrix(x, y)
    la, lb = np.log(aa), np.log(bb)
    f, g, _ = sinkhorn_reference(x, aa, y, bb, eps, tol=tol, max_iter=sinkhorn_iter)
    n = f.shape[0]

    def error(f, g) -> float:
        P = _plan(C, la, lb, f, g, eps)
        return float(max(np.abs(P.sum(1) - aa).max(), np.abs(P.sum(0) - bb).max()))

    for _ in range(max_newton):
        if error(f, g) <= tol:
            break
        P = _plan(C, la, lb, f, g, eps)
        r1, r2 = P.sum(1), P.sum(0)
        H = np.block([[np.diag(r1), P], [P.T, np.diag(r2)]]) / eps
        step = np.linalg.lstsq(H, np.concatenate([aa - r1, bb - r2]), rcond=None)[0]
        d0 = _dual(C, la, lb, f, g, eps)
        t = 1.0
        while t > 1e-6:
            f1, g1 = f + t * step[:n], g + t * step[n:]
            if _dual(C, la, lb, f1, g1, eps) >= d0 - 1e-15 * abs(d0):
                break
            t *= 0.5
        f, g = f1, g1
        f = _transform(C, lb, g, eps)
    f = _transform(C, lb, g, eps)
    return f, g, error(f, g)


def sinkhorn_self_newton_reference(
    x: npt.ArrayLike, a: npt.ArrayLike, eps: float, tol: float = 1e-13, max_newton: int = 60
) -> tuple[FloatArray, float]:
    """Symmetric potential to a marginal error of ``tol``; returns (p, error).

    The averaged map (:func:`sinkhorn_self_reference`, 300 iterations), then damped Newton on
    the concave ``2⟨a, p⟩ − ε(⟨P, 1⟩ − 1)``, ``P_il = a_i a_l e^{(p_i + p_l − C_il)/ε}``
    (Hessian ``−2ε⁻¹(diag P1 + P)``), until ``‖P1 − a‖_∞ <= tol`` on the returned ``p``.
    """
    aa = np.asarray(a, float)
    C = cost_matrix(x, x)
    la = np.log(aa)
    p, _ = sinkhorn_self_reference(x, aa, eps, tol=tol, max_iter=300)

    def value(p) -> float:
        return float(2.0 * aa @ p - eps * (_plan(C, la, la, p, p, eps).sum() - 1.0))

    def error(p) -> float:
        return float(np.abs(_plan(C, la, la, p, p, eps).sum(1) - aa).max())

    for _ in range(max_newton):
        if error(p) <= tol:
            break
        P = _plan(C, la, la, p, p, eps)
        r = P.sum(1)
        step = np.linalg.solve(np.diag(r) + P, eps * (aa - r))
        v0 = value(p)
        t = 1.0
        while t > 1e-6 and value(p + t * step) < v0 - 1e-15 * abs(v0):
            t *= 0.5
        p = p + t * step
    return p, error(p)


def sinkhorn_divergence_newton_reference(
    x: npt.ArrayLike,
    a: npt.ArrayLike,
    y: npt.ArrayLike,
    b: npt.ArrayLike,
    eps: float,
    tol: float = 1e-13,
) -> tuple[DivergenceReference, float]:
    """(F 16) from Newton-polished potentials; returns (the divergence, the largest marginal
    error of its three plans)."""
    aa, bb = np.asarray(a, float), np.asarray(b, float)
    f, g, e_xy = sinkhorn_newton_reference(x, aa, y, bb, eps, tol)
    p, e_xx = sinkhorn_self_newton_reference(x, aa, eps, tol)
    q, e_yy = sinkhorn_self_newton_reference(y, bb, eps, tol)
    ot_xy, ot_xx, ot_yy = aa @ f + bb @ g, 2.0 * aa @ p, 2.0 * bb @ q
    primal = (
        _primal(cost_matrix(x, y), aa, bb, f, g, eps)
        - 0.5 * _primal(cost_matrix(x, x), aa, aa, p, p, eps)
        - 0.5 * _primal(cost_matrix(y, y), bb, bb, q, q, eps)
    )
    value = aa @ (f - p) + bb @ (g - q)
    ref = DivergenceReference(float(value), primal, ot_xy, ot_xx, ot_yy, f, g, p, q)
    return ref, max(e_xy, e_xx, e_yy)
