"""The budget ledger's admission rule (certificates note (27)): union of a pure and a zCDP filter.

:class:`Budget` is the owner's (ε_B, δ_B); :class:`Charge` is one release's cost; a
:class:`LedgerState` holds the running sums; :func:`admits`, :func:`apply_charge` and
:func:`ledger_epsilon` are the pure functions a store calls inside its atomic reservation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from dp_core.errors import InvalidParameter
from dp_core.privacy._checks import count, delta_value, nonneg
from dp_core.privacy.accounting import zcdp_from_beta, zcdp_from_pure, zcdp_to_approx_dp

__all__ = [
    "ADMISSION_RTOL",
    "Budget",
    "Charge",
    "LedgerState",
    "admits",
    "apply_charge",
    "ledger_epsilon",
]

ADMISSION_RTOL = 1e-12
"""Relative slack of the ledger's admission comparisons (see :func:`admits`)."""


@dataclass(frozen=True)
class Budget:
    """A dataset owner's budget (ε_B, δ_B), formula (27).

    ``approx_delta`` (default 0) is the part of δ_B reserved at registration for
    approximate-DP charges (δ > 0); the zCDP filter converts at ``δ_B − approx_delta``. With the
    default, approximate-DP charges are refused and the rule is exactly (27). See :func:`admits`.
    """

    epsilon: float
    delta: float
    approx_delta: float = 0.0

    def __post_init__(self) -> None:
        nonneg("epsilon", self.epsilon)
        delta_value("delta", self.delta, allow_zero=True)
        if not 0.0 <= delta_value("approx_delta", self.approx_delta, allow_zero=True) <= self.delta:
            raise InvalidParameter("approx_delta", "must lie in [0, delta]")


@dataclass(frozen=True)
class Charge:
    """The cost of one release: pure ε, zCDP ρ and δ (0 for pure and zCDP mechanisms).

    ``pure_epsilon = inf`` marks a release with no pure guarantee (zCDP filter only);
    ``zcdp_rho = inf`` one with no zCDP guarantee (pure filter only).
    """

    pure_epsilon: float
    zcdp_rho: float
    delta: float = 0.0

    def __post_init__(self) -> None:
        nonneg("pure_epsilon", self.pure_epsilon, allow_inf=True)
        nonneg("zcdp_rho", self.zcdp_rho, allow_inf=True)
        delta_value("delta", self.delta, allow_zero=True)

    @classmethod
    def bounded_range(cls, beta: float) -> Charge:
        """A β-bounded-range release: pure ε = β, ρ = β²/8 (18)."""
        return cls(nonneg("beta", beta), zcdp_from_beta(beta))

    @classmethod
    def pure(cls, eps: float) -> Charge:
        """A pure ε-DP release not known to be bounded range (e.g. permute-and-flip): ρ = ε²/2."""
        return cls(nonneg("eps", eps), zcdp_from_pure(eps))


@dataclass(frozen=True)
class LedgerState:
    """Running sums of one dataset's ledger: E = Σεᵢ, R = Σρᵢ, Σδᵢ and the release count."""

    pure_epsilon: float = 0.0
    zcdp_rho: float = 0.0
    delta: float = 0.0
    releases: int = 0

    def __post_init__(self) -> None:
        nonneg("pure_epsilon", self.pure_epsilon, allow_inf=True)
        nonneg("zcdp_rho", self.zcdp_rho, allow_inf=True)
        nonneg("delta", self.delta)
        count("releases", self.releases)


def admits(state: LedgerState, charge: Charge, budget: Budget) -> bool:
    """Whether the union-of-filters ledger admits ``charge``, formula (27).

    Admit iff ``E + ε_new ≤ ε_B`` (pure filter) **or** ``ε_(21)(R + ρ_new, δ_B) ≤ ε_B`` (zCDP
    filter). Guarantee (ε_B, δ_B)-DP by the note's argument: each sum only grows, so on every
    path either the pure filter never failed (the process is the pure filter, δ = 0) or the
    zCDP filter passed on every admitted release (the process is the zCDP filter). With
    δ_B = 0 only the pure filter can admit.

    Approximate-DP charges (δ > 0), a conservative extension: the union argument adds the δ of
    both filters, so requiring only Σδ ≤ δ_B next to a zCDP conversion at δ_B could spend up to
    2δ_B. Instead such charges pass only the pure filter, with ``Σδ ≤ budget.approx_delta``
    (a part of δ_B fixed at registration), and the zCDP filter admits only while Σδ stays 0 and
    converts at ``δ_B − approx_delta``. Total: approx_delta + (δ_B − approx_delta) = δ_B.

    Comparisons use a relative slack :data:`ADMISSION_RTOL` (1e-12), e.g. ``E + ε_new ≤
    ε_B·(1 + 1e-12)``, so that budgets that fill exactly in decimal (three charges of 0.1
    against 0.3, whose float sum is 0.30000000000000004) are not refused by rounding. The
    guarantee is then (ε_B(1 + 1e-12), δ_B) for the stored floats: a likelihood-ratio factor
    e^{1e-12·ε_B} − 1 ≈ 1e-11 (ε_B ≤ 10), below the rounding of the certificates that produce
    the charges and below any audit's resolution. The slack also absorbs the rounding of the
    running sums (≤ n·2^-52 relative after n charges, i.e. up to ~4500 charges).
    """
    tol = 1.0 + ADMISSION_RTOL
    delta_sum = state.delta + charge.delta
    if (
        state.pure_epsilon + charge.pure_epsilon <= budget.epsilon * tol
        and delta_sum <= budget.approx_delta * tol
    ):
        return True
    if delta_sum > 0.0:
        return False
    conversion_delta = budget.delta - budget.approx_delta
    if budget.approx_delta > 0.0:
        conversion_delta = math.nextafter(conversion_delta, 0.0)  # round the difference down
    if conversion_delta <= 0.0:
        return False
    rho = state.zcdp_rho + charge.zcdp_rho
    return zcdp_to_approx_dp(rho, conversion_delta) <= budget.epsilon * tol


def apply_charge(state: LedgerState, charge: Charge) -> LedgerState:
    """The ledger state after an admitted release: both sums and Σδ updated, releases + 1 (27)."""
    return replace(
        state,
        pure_epsilon=state.pure_epsilon + charge.pure_epsilon,
        zcdp_rho=state.zcdp_rho + charge.zcdp_rho,
        delta=state.delta + charge.delta,
        releases=state.releases + 1,
    )


def ledger_epsilon(state: LedgerState, delta: float) -> float:
    """ε spent by the recorded releases at δ: ``min(E, ε_(21)(R, δ))``, formula (27).

    If the state holds approximate-DP charges (Σδ > 0) only basic composition applies: E when
    ``delta ≥ Σδ``, otherwise ``inf``. With δ = 0 the result is E.
    """
    delta = delta_value("delta", delta, allow_zero=True)
    if state.delta > 0.0:
        return state.pure_epsilon if delta >= state.delta else math.inf
    return min(state.pure_epsilon, zcdp_to_approx_dp(state.zcdp_rho, delta))
