"""Newton polishing of one entropic OT problem whose Sinkhorn iterations stall (flows note §4.1).

Why: alternating Sinkhorn is a fixed-point iteration whose local rate is the squared second
singular value of the normalised plan ``diag(a)^{-½} P diag(b)^{-½}``. When the plan is close
to a permutation — a query that has nearly reached its pattern, with ε small against the
spacing of the points — groups of points barely exchange mass, that singular value is
``1 − O(e^{−gap/ε})``, and the sup-change of the potentials falls like 1/k or slower: on
10 patterns of 40 points of N(0, 4 I₃) at ε = 1 the rate was 1 − 6·10⁻⁷, a million iterations
per decade. ε-scaling does not help (it fixes the start, not the rate). Newton's method on the
concave dual resolves those nearly neutral directions in a few steps, because its linear solve
sees them exactly.

* Two-sided (:func:`newton_pair`): the semi-dual in the column potential g, with the row side
  eliminated by the exact half-step ``f = T_b(g)``, so the rows of
  ``P_ij = a_i b_j e^{(f_i + g_j − C_ij)/ε}`` sum to ``a``:
  ``F(g) = ⟨a, T_b(g)⟩ + ⟨b, g⟩``, ``∇F = b − Pᵀ1``,
  ``∇²F = −ε⁻¹(diag(Pᵀ1) − Pᵀ diag(P1)⁻¹ P)``, singular along the gauge 1 (fixed by adding a
  rank-one term; the right-hand side sums to 0, so the step is the gauge-free Newton step).
* Symmetric (:func:`newton_self`): ``F(p) = 2⟨a, p⟩ − ε(⟨P, 1⟩ − 1)``,
  ``P_il = a_i a_l e^{(p_i + p_l − C_il)/ε}``, ``∇F = 2(a − P1)``,
  ``∇²F = −2ε⁻¹(diag(P1) + P)`` (positive definite up to sign).

Both damp the step by halving until F does not decrease, stop at rounding level (a full step
that no longer raises F), and stop when the Sinkhorn residual that the driver's next
pass will measure — ``ε max_j |log((Pᵀ1)_j / b_j)|``, exactly the change
of g over one half-step ``g ← T_a(f)`` (``ε max_i |log((P1)_i / a_i)| = |T(p) − p|`` for the
symmetric map) — is at most ``tol``. Dense NumPy on the support of the weights, O(n m²) per
step for the Hessian and O(m³) for the solve (m the smaller side): the driver calls it only for
problems that reached their Sinkhorn cap and are small enough
(:data:`dp_core.engine.sinkhorn_solve.NEWTON_MAX_POINTS`). No Numba here.
"""

from __future__ import annotations

import numpy as np

__all__ = ["c_transform", "cost_matrix", "newton_pair", "newton_self"]

_HALVINGS = 30
_ULPS = 1e-15
"""Relative change of the dual below which a full step is rounding noise (then stop)."""
_QUIET = np.errstate(divide="ignore", over="ignore", invalid="ignore")
"""A trial step too long overflows to F = ±inf or NaN and is rejected by the line search
(only finite F is accepted); an underflowed marginal gives an infinite residual. Neither is
an error here: the driver's Sinkhorn passes measure the result."""


def cost_matrix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``C_ij = ½|x_i − y_j|²`` (n, m) from exact differences, one coordinate at a time."""
    C = np.zeros((x.shape[0], y.shape[0]))
    for q in range(x.shape[1]):
        diff = x[:, q, None] - y[None, :, q]
        C += diff * diff
    return 0.5 * C


def c_transform(C: np.ndarray, lw: np.ndarray, pot: np.ndarray, eps: float) -> np.ndarray:
    """Soft c-transform over the columns of C: ``−ε log Σ_j w_j e^{(pot_j − C_ij)/ε}``."""
    s = lw[None, :] + (pot[None, :] - C) / eps
    mx = s.max(axis=1)
    return -eps * (mx + np.log(np.exp(s - mx[:, None]).sum(axis=1)))


@_QUIET
def newton_pair(
    C: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    g: np.ndarray,
    eps: float,
    tol: float,
    max_steps: int,
) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Polish the column potential g of ``OT_ε(a, b)`` with cost C (n, m); a, b > 0.

    Returns ``(f, g, steps, residual)`` with ``f = T_b(g)`` and the residual
    ``ε max_j |log((Pᵀ1)_j / b_j)|`` at the returned g.
    """
    la, lb = np.log(a), np.log(b)

    def state(g: np.ndarray):
        f = c_transform(C, lb, g, eps)
        P = np.exp(la[:, None] + lb[None, :] + (f[:, None] + g[None, :] - C) / eps)
        return f, P, float(a @ f + b @ g)

    f, P, value = state(g)
    steps = 0
    stalled = False
    while True:
        cols = P.sum(axis=0)
        residual = float(eps * np.abs(np.log(cols / b)).max())
        if residual <= tol or steps >= max_steps or stalled:
            return f, g, steps, residual
        rows = P.sum(axis=1)
        H = np.diag(cols) - (P.T / rows[None, :]) @ P
        H += np.outer(cols, cols) * (np.trace(H) / max(float(cols @ cols), 1e-300) / C.shape[1])
        try:
            step = eps * np.linalg.solve(H, b - cols)
        except np.linalg.LinAlgError:
            return f, g, steps, residual
        steps += 1
        accepted = False
        t = 1.0
        for _ in range(_HALVINGS):
            f1, P1, v1 = state(g + t * step)
            if np.isfinite(v1) and v1 >= value - _ULPS * (abs(value) + 1.0):
                stalled = t == 1.0 and v1 - value <= _ULPS * (abs(value) + 1.0)
                g, f, P, value = g + t * step, f1, P1, v1
                accepted = True
                break
            t *= 0.5
        if not accepted:
            return f, g, steps, residual


@_QUIET
def newton_self(
    C: np.ndarray, a: np.ndarray, p: np.ndarray, eps: float, tol: float, max_steps: int
) -> tuple[np.ndarray, int, float]:
    """Polish the symmetric potential p of ``OT_ε(a, a)`` with cost C (n, n); a > 0.

    Returns ``(p, steps, residual)`` with the residual ``max_i |T(p)_i − p_i|``.
    """
    la = np.log(a)

    def plan(p: np.ndarray) -> np.ndarray:
        return np.exp(la[:, None] + la[None, :] + (p[:, None] + p[None, :] - C) / eps)

    def value(P: np.ndarray, p: np.ndarray) -> float:
        return float(2.0 * (a @ p) - eps * (P.sum() - 1.0))

    P = plan(p)
    v = value(P, p)
    steps = 0
    stalled = False
    while True:
        rows = P.sum(axis=1)
        residual = float(eps * np.abs(np.log(rows / a)).max())
        if residual <= tol or steps >= max_steps or stalled:
            return p, steps, residual
        H = P + np.diag(rows)
        try:
            step = eps * np.linalg.solve(H, a - rows)
        except np.linalg.LinAlgError:
            return p, steps, residual
        steps += 1
        accepted = False
        t = 1.0
        for _ in range(_HALVINGS):
            P1 = plan(p + t * step)
            v1 = value(P1, p + t * step)
            if np.isfinite(v1) and v1 >= v - _ULPS * (abs(v) + 1.0):
                stalled = t == 1.0 and v1 - v <= _ULPS * (abs(v) + 1.0)
                p, P, v = p + t * step, P1, v1
                accepted = True
                break
            t *= 0.5
        if not accepted:
            return p, steps, residual
