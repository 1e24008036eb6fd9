"""When a custom loss's record pass reduces to a summary: quadratic in θ, clip provably idle.

A loss ℓ(θ, x) whose gradient (as the kernel computes it) is affine in θ — ℓ of degree <= 2 in
θ, its coefficients any functions of the record — has g(θ, x) = H(x)θ + b(x). If the gradient
clip can never bind — |g| <= G at every θ in Θ and every record in the columns' box — then
Σ_x clip_G(g(θ, x)) = (Σ H)θ + Σ b, and u = -|A₀ + J(θ - θ₀)| needs the records once, at an
anchor θ₀ (A₀ = Σ g(θ₀, x), J = Σ H), not at every particle and step.

:func:`prove` decides it from public things only (the expression, the columns' bounds, Θ and
G), by exact interval enclosures (:mod:`intervals`) over Θ's bounding box and the columns' box;
it answers ``None`` whenever it cannot prove it (θ-dependence beyond degree 2, a singularity,
an enclosure wider than G, intermediates so large that float rounding could matter), and the
loss keeps its record pass. The path a release takes therefore depends on no record, and where
it is taken u equals the clipped u of the record pass (the clip is the identity there), so the
sensitivities by construction hold verbatim. The proof also yields the slope bound of
:class:`~base.Sensitivity` (sup ‖∇²ℓ‖_F per record; it enters no certificate). The loss form is
not summarised (its record pass maps non-finite losses to c point by point, which a summary
could not reproduce). Runs in the SymPy child (:mod:`symbolic`).
"""

from __future__ import annotations

from fractions import Fraction

import sympy as sp

from dp_core.privacy.bounds import float_up, sqrt_up
from dp_core.privacy.utilities.codegen import LossExpression, derivatives
from dp_core.privacy.utilities.intervals import Interval, Unbounded, enclose
from dp_core.privacy.utilities.symbolic import SummaryProof, SummarySetting

__all__ = ["PEAK", "prove"]

PEAK = 2**20
"""How far (relative to G) any node of the gradient may reach: bounds the float rounding of the
summary's one evaluation (cancellation of larger intermediates is refused, not trusted)."""


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
    if setting.form != "gradient_norm":
        return None
    d = loss.dim
    outputs = derivatives(loss, 2)
    grads, hessian = outputs[1 : 1 + d], outputs[1 + d :]
    if not all(_degree_at_most(g, loss.theta, 1) for g in grads):
        return None  # the gradient as the kernel computes it (a.e.) must be affine in θ
    box, centre, radius_sq = _theta(setting)
    ranges = {
        c: (Fraction(lo), Fraction(hi))
        for c, (lo, hi) in zip(loss.columns, setting.column_box, strict=True)
    }
    over_theta = ranges | dict(zip(loss.theta, box, strict=True))
    at_centre = ranges | {t: (c, c) for t, c in zip(loss.theta, centre, strict=True)}
    g_max = Fraction(setting.clip)
    try:
        whole = [enclose(g, over_theta) for g in grads]
        anchored = [enclose(g, at_centre)[0] for g in grads]
        entries = [enclose(h, over_theta) for h in hessian]
    except Unbounded:
        return None
    # the kernel evaluates g and H in floats at the anchor and the summary extrapolates; with
    # every node of g within PEAK·G (and of H within PEAK·G/radius) that rounding stays near
    # 2^-52·512·PEAK = 1.2e-7 of G, as a record pass's would before it clips
    radius = sqrt_up(radius_sq)
    if any(peak > PEAK * g_max for _, peak in whole) or any(
        peak * radius > PEAK * g_max for _, peak in entries
    ):
        return None
    whole_sq = sum((_square_magnitude(i) for i, _ in whole), Fraction(0))
    anchored_sq = sum((_square_magnitude(i) for i in anchored), Fraction(0))
    # the Hessian's upper triangle (a <= b): an off-diagonal entry counts twice in ‖·‖_F²
    pairs = [(a, b) for a in range(d) for b in range(a, d)]
    frobenius_sq = sum(
        (
            _square_magnitude(i) * (2 if a != b else 1)
            for (i, _), (a, b) in zip(entries, pairs, strict=True)
        ),
        Fraction(0),
    )
    # |g(θ)| <= G on the whole box, or |g(θ₀)| + ‖H‖_F·|θ - θ₀| <= G (tight on a ball)
    reach = sqrt_up(radius_sq * frobenius_sq)
    by_box = whole_sq <= g_max**2
    by_reach = reach <= g_max and anchored_sq <= (g_max - reach) ** 2
    if not (by_box or by_reach):
        return None
    gradient_bound = min(sqrt_up(whole_sq), sqrt_up(anchored_sq) + reach, g_max)
    return SummaryProof(float_up(gradient_bound), float_up(sqrt_up(frobenius_sq)))
