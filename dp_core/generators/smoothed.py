"""The convex smoothed AE-OT model (aeot.md §3, §4): energy, L-BFGS fit, map.

Potential (A 11) ``u_ε(x) = ε log Σ_j exp(a_j(x)/ε)``, ``a_j(x) = ⟨x, y_j⟩ + h_j``, computed in
this affine form by the engine's register-blocked P3
(:func:`dp_core.engine.affine.affine_logsumexp`).
Map (A 12) ``T_ε(x) = Σ_j p_j(x) y_j``: the same pass with the soft-max barycentre fused (P4).

Energy (A 13) on a fixed fit sample x_1..x_B: ``E_ε(h) = B⁻¹ Σ_b u_ε(x_b) − Σ_j ν_j h_j`` with
gradient ``m − ν`` (soft cell masses, :func:`dp_core.engine.semidiscrete.smoothed_energy_terms`:
two register-blocked P3 passes). It is convex, smooth, invariant under ``h + c·1``; minimized by
L-BFGS (SciPy, outside the engine; aeot.md (A 9)) with ε-continuation 0.2 → 0.05 → 0.01 → 0.003
→ 0.001 → ε (aeot.md §5.1), each level warm-started and h centred, stopping when
``max_j |m_j − ν_j|/ν_j ≤ tolerance`` (aeot.md §6). Tolerances below about 1e-7, where the
energy's differences drown in round-off and SciPy's line search stalls, are reached by a
gradient-only L-BFGS polish (:func:`_polish`). Every evaluation is deterministic, so the fit
is bit-identical for the same inputs on one machine (T-OT-8).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dp_core.engine.affine import affine_logsumexp
from dp_core.engine.semidiscrete import smoothed_energy_terms
from dp_core.types import FloatArray

__all__ = [
    "CONTINUATION",
    "EnergyEvaluator",
    "FitResult",
    "fit_smoothed",
    "smoothed_map",
    "smoothed_potential",
]

CONTINUATION = (0.2, 0.05, 0.01, 0.003, 0.001)
"""ε levels (units of s²) run before the target ε, those above it only (aeot.md §5.1)."""

INTERMEDIATE_TOLERANCE = 1e-3
"""Relative mass error at which an intermediate continuation level hands over (warm start)."""

POLISH_MEMORY = 30
"""Curvature pairs kept by :func:`_polish` (as L-BFGS-B's ``maxcor``)."""

POLISH_PATIENCE = 20
"""Evaluations without a better iterate after which :func:`_polish` gives up."""


@dataclass
class FitResult:
    """Heights and the diagnostics of a fit."""

    heights: FloatArray
    steps: int
    converged: bool
    energy: float
    max_rel_mass_error: float
    levels: tuple[tuple[float, int, float], ...] = ()
    """Per continuation level: (ε, evaluations, max rel. mass error reached)."""


class _Stop(Exception):
    """Raised inside the objective to end L-BFGS (tolerance reached or budget spent)."""


class EnergyEvaluator:
    """Evaluations of (A 13) on a fixed sample; counts them and keeps the best iterate per level."""

    def __init__(
        self,
        x: FloatArray,
        y: FloatArray,
        nu: FloatArray,
        max_steps: int,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.x = x
        self.y = y
        self.nu = nu
        self.max_steps = max_steps
        self.steps = 0
        self.progress = progress

    def evaluate(self, h: FloatArray, eps: float) -> tuple[float, FloatArray]:
        """(E_ε(h), m) — one evaluation (counted)."""
        if self.steps >= self.max_steps:
            raise _Stop
        self.steps += 1
        rows, masses = smoothed_energy_terms(self.x, self.y, h, eps)
        energy = eps * float(np.mean(rows)) - float(self.nu @ h)
        if self.progress is not None:
            self.progress(self.steps)
        return energy, masses

    def rel_error(self, masses: FloatArray) -> float:
        return float(np.max(np.abs(masses - self.nu) / self.nu))


def _polish(grad: Callable[[FloatArray], FloatArray], h: FloatArray, scale: FloatArray) -> None:
    """L-BFGS directions with a line search on the directional derivative only; runs until
    ``grad`` raises :class:`_Stop`.

    Near the optimum the energy's differences fall below its round-off (relative mass errors
    near 1e-7 at n = 10^3, d = 8) and L-BFGS-B's line search, which compares energies, stalls. The
    gradient ``m − ν`` is still accurate there, and on a convex function the zero of
    ``φ'(α) = ∇E(h + αp)·p`` along a descent direction is the line minimum: each step tries α = 1
    and, when ``φ'(1) > 0`` (the minimum was passed), takes the secant
    ``α = φ'(0)/(φ'(0) − φ'(1))``. No energies are compared and the error need not fall at every
    step, so the caller keeps the best iterate. Without curvature pairs the direction is
    ``−scale·g`` (``scale = ε/ν``: the Newton step of the diagonal of the Hessian, a Sinkhorn
    step).
    """
    g = grad(h)
    pairs: list[tuple[FloatArray, FloatArray, float]] = []  # (s, y, 1/⟨y, s⟩)
    while True:
        q = g.copy()
        coef = []
        for s_k, y_k, rho in reversed(pairs):
            a = rho * float(s_k @ q)
            coef.append(a)
            q -= a * y_k
        if pairs:
            s_k, y_k, _ = pairs[-1]
            q *= float(s_k @ y_k) / float(y_k @ y_k)
        else:
            q *= scale
        for (s_k, y_k, rho), a in zip(pairs, reversed(coef), strict=True):
            q += (a - rho * float(y_k @ q)) * s_k
        p = -q
        slope0 = float(g @ p)
        if not slope0 < 0.0:  # not a descent direction: forget the curvature pairs
            if not pairs:
                return
            pairs.clear()
            continue
        g_new = grad(h + p)
        slope1 = float(g_new @ p)
        step = p
        if slope1 > 0.0:
            step = p * (slope0 / (slope0 - slope1))
            g_new = grad(h + step)
        y_new = g_new - g
        sy = float(step @ y_new)
        if sy > 0.0:
            pairs.append((step, y_new, 1.0 / sy))
            del pairs[:-POLISH_MEMORY]
        h = h + step
        g = g_new


def _level(
    ev: EnergyEvaluator, h0: FloatArray, eps: float, tolerance: float
) -> tuple[FloatArray, float, float]:
    """Minimize E_ε from h0 until the relative mass error is ≤ tolerance (or budget / stall):
    L-BFGS-B on the energy, then, if that stalls above the tolerance, :func:`_polish` until
    :data:`POLISH_PATIENCE` evaluations pass without a better iterate."""
    from scipy.optimize import minimize  # 1.7 s to import: kept off the service's start-up path

    best: list = [h0, np.inf, np.inf]  # h, error, energy
    stale = [0]  # evaluations since the best iterate last improved

    def fun(h: FloatArray) -> tuple[float, FloatArray]:
        energy, masses = ev.evaluate(h, eps)
        err = ev.rel_error(masses)
        stale[0] += 1
        if err < best[1]:
            best[:] = [h.copy(), err, energy]
            stale[0] = 0
        if err <= tolerance:
            raise _Stop
        return energy, masses - ev.nu

    gtol = tolerance * float(np.min(ev.nu))
    h = h0
    for _ in range(4):  # restarts after an abnormal line-search end, while it still improves
        before = best[1]
        try:
            res = minimize(
                fun,
                h,
                jac=True,
                method="L-BFGS-B",
                options={
                    "maxcor": 30,
                    "gtol": gtol,
                    "ftol": 0.0,
                    "maxiter": 10**6,
                    "maxfun": 10**6,
                    "maxls": 40,
                },
            )
            h = res.x
        except _Stop:
            break
        if not best[1] < before:
            break
        h = best[0]
    if best[1] > tolerance:

        def grad(h: FloatArray) -> FloatArray:
            if stale[0] >= POLISH_PATIENCE:
                raise _Stop
            return fun(h)[1]

        stale[0] = 0
        with contextlib.suppress(_Stop):
            _polish(grad, best[0].copy(), eps / ev.nu)
    return best[0] - np.mean(best[0]), best[1], best[2]


def fit_smoothed(
    x: FloatArray,
    y: FloatArray,
    nu: FloatArray,
    eps: float,
    *,
    max_steps: int,
    tolerance: float,
    h0: FloatArray | None = None,
    progress: Callable[[int], None] | None = None,
) -> FitResult:
    """Fit the heights of (A 11) for target ε on the fixed sample ``x`` (standardized units).

    Continuation over :data:`CONTINUATION` levels above ``eps`` (intermediate levels stop at
    ``max(tolerance, INTERMEDIATE_TOLERANCE)``), then ``eps`` itself to ``tolerance``.
    ``max_steps`` bounds the number of energy evaluations in total.
    """
    ev = EnergyEvaluator(x, y, nu, max_steps, progress)
    levels = [e for e in CONTINUATION if e > eps] + [eps]
    h = np.zeros(y.shape[0]) if h0 is None else h0.copy()
    err, energy = np.inf, np.nan
    done: list[tuple[float, int, float]] = []
    for k, level in enumerate(levels):
        last = k == len(levels) - 1
        tol = tolerance if last else max(tolerance, INTERMEDIATE_TOLERANCE)
        before = ev.steps
        h_new, err_new, energy_new = _level(ev, h, level, tol)
        done.append((float(level), ev.steps - before, float(err_new)))
        if np.isfinite(err_new):
            h = h_new
        if last:
            err, energy = err_new, energy_new
        if ev.steps >= max_steps and not last:
            # budget spent before the target level: one evaluation there is not affordable
            return FitResult(h, ev.steps, False, float("nan"), float("inf"), tuple(done))
    return FitResult(h, ev.steps, bool(err <= tolerance), float(energy), float(err), tuple(done))


def smoothed_map(x: FloatArray, y: FloatArray, h: FloatArray, eps: float) -> FloatArray:
    """``T_ε(x)`` (A 12) for source points x (N, d), standardized units: one fused P4 pass."""
    return affine_logsumexp(x, y, h, eps, barycentre=True)[1]


def smoothed_potential(x: FloatArray, y: FloatArray, h: FloatArray, eps: float) -> FloatArray:
    """``u_ε(x)`` (A 11) = ε·logsumexp_j((h_j + ⟨x, y_j⟩)/ε) (P3)."""
    return eps * affine_logsumexp(x, y, h, eps)[0]
