"""When a custom loss's record pass reduces to a summary: quadratic in θ, clip provably idle.

A loss ℓ(θ, x) of degree <= 2 in θ (coefficients any functions of the record) has the gradient
g(θ, x) = H(x)θ + b(x), affine in θ. If the clip can never bind — |g| <= G (gradient form) or
0 <= ℓ <= c (loss form) at every θ in Θ and every record in the columns' box — then u needs no
record pass per step:

* gradient form: Σ_x g(θ, x) = (Σ H)θ + Σ b, so u = -|A₀ + J₀(θ - θ₀)| from A₀ = Σ g(θ₀, x)
  and J₀ = Σ H at one anchor θ₀;
* loss form: Σ_x ℓ(θ, x) = L₀ + ∇L₀·δ + ½ δᵀQδ (δ = θ - θ₀), Q = Σ ∇²ℓ.

:func:`prove` decides it from public things only (the expression, the columns' bounds, Θ and
the clip), by rigorous interval enclosures (:mod:`intervals`) over Θ's bounding box and the
columns' box; it answers ``None`` whenever it cannot prove it (a non-polynomial θ-dependence, a
singularity, an enclosure wider than the clip), and the loss keeps its record pass. The path a
release takes therefore depends on no record, and where it is taken u equals the clipped u the
record pass computes (the clip is the identity there), so the sensitivities by construction
hold verbatim. The proof also yields the slope bound of :class:`~base.Sensitivity`:
sup ‖∇²ℓ‖_F per record in the gradient form, sup |∇ℓ| in the loss form (both enter no
certificate). Runs in the SymPy child (:mod:`symbolic`).
"""

from __future__ import annotations

from fractions import Fraction

import sympy as sp

from dp_core.privacy.utilities.codegen import LossExpression, derivatives
from dp_core.privacy.utilities.intervals import Interval, Unbounded, enclose, float_up, sqrt_up
from dp_core.privacy.utilities.symbolic import SummaryProof, SummarySetting

__all__ = ["prove"]


def _square_magnitude(interval: Interval) -> Fraction:
    return max(interval[0] ** 2, interval[1] ** 2)


def _degree_at_most(expr: sp.Expr, theta: tuple[sp.Symbol, ...], degree: int) -> bool:
    if not expr.has(*theta):
        return True
    if not expr.is_polynomial(*theta):
        return False
    return sp.Poly(expr, *theta).total_degree() <= degree


def _theta(setting: SummarySetting) -> tuple[list[Interval], list[Fraction], Fraction]:
    """Θ's bounding box, its centre and the squared radius of a ball about that centre holding
    Θ, all exact."""
    if setting.box is not None:
        box = [(Fraction(lo), Fraction(hi)) for lo, hi in setting.box]
        return (
            box,
            [(lo + hi) / 2 for lo, hi in box],
            sum((((hi - lo) / 2) ** 2 for lo, hi in box), Fraction(0)),
        )
    assert setting.ball_center is not None and setting.ball_radius is not None
    centre = [Fraction(c) for c in setting.ball_center]
    radius = Fraction(setting.ball_radius)
    return [(c - radius, c + radius) for c in centre], centre, radius**2


def prove(loss: LossExpression, setting: SummarySetting) -> SummaryProof | None:
    """A :class:`SummaryProof` for ``loss`` under the public ``setting``; ``None`` when the
    summary cannot be proved sound. Comparisons are exact: a clip equal to the true bound is
    proved."""
    outputs = derivatives(loss, 2)
    d = loss.dim
    value, grads, hessian = outputs[0], outputs[1 : 1 + d], outputs[1 + d :]
    if not (
        _degree_at_most(value, loss.theta, 2)
        and all(_degree_at_most(g, loss.theta, 1) for g in grads)
    ):  # the gradient as the kernel computes it (a.e.) must be affine, and ℓ its integral
        return None
    box, centre, radius_sq = _theta(setting)
    ranges = {
        c: (Fraction(lo), Fraction(hi))
        for c, (lo, hi) in zip(loss.columns, setting.column_box, strict=True)
    }
    over_theta = ranges | dict(zip(loss.theta, box, strict=True))
    at_centre = ranges | {t: (c, c) for t, c in zip(loss.theta, centre, strict=True)}
    try:
        whole_sq = sum(_square_magnitude(enclose(g, over_theta)) for g in grads)
        anchored_sq = sum(_square_magnitude(enclose(g, at_centre)) for g in grads)
        # the Hessian's upper triangle (a <= b): an off-diagonal entry counts twice in ‖·‖_F²
        pairs = [(a, b) for a in range(d) for b in range(a, d)]
        frobenius_sq = sum(
            _square_magnitude(enclose(h, over_theta)) * (2 if a != b else 1)
            for h, (a, b) in zip(hessian, pairs, strict=True)
        )
        value_range = enclose(value, over_theta) if setting.form == "loss" else None
    except Unbounded:
        return None
    # |g(θ)| <= sup over the box, and <= |g(θ₀)| + ‖H‖_F·|θ - θ₀| (tight on a ball)
    reach = sqrt_up(radius_sq * frobenius_sq)
    gradient_bound = min(sqrt_up(whole_sq), sqrt_up(anchored_sq) + reach)
    if setting.form == "gradient_norm":
        g_max = Fraction(setting.clip)
        by_box = whole_sq <= g_max**2
        by_reach = reach <= g_max and anchored_sq <= (g_max - reach) ** 2
        if not (by_box or by_reach):
            return None
        gradient_bound = min(gradient_bound, g_max)
    else:
        assert value_range is not None
        if value_range[0] < 0 or value_range[1] > Fraction(setting.clip):
            return None
    return SummaryProof(float_up(gradient_bound), float_up(sqrt_up(frobenius_sq)))
