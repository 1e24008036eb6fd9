"""Privacy accounting: closed forms (15)–(19) against brute force over worst-case laws,
conversions (20)–(21) against opacus and by hand, composition (23)–(25) against exhaustive
randomized response, and the union-of-filters ledger (27)."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from dp_core.errors import InvalidParameter
from dp_core.privacy.accounting import (
    DEFAULT_ORDERS,
    compose_advanced,
    compose_basic,
    compose_optimal_epsilon,
    compose_optimal_homogeneous,
    hockey_stick_from_beta,
    kl_from_beta,
    kl_from_pure,
    rdp_to_approx_dp,
    renyi_from_beta,
    renyi_from_pure,
    zcdp_from_beta,
    zcdp_from_pure,
    zcdp_to_approx_dp,
    zcdp_to_approx_dp_simple,
)
from dp_core.privacy.ledger import (
    ADMISSION_RTOL,
    Budget,
    Charge,
    LedgerState,
    admits,
    apply_charge,
    ledger_epsilon,
)

BETAS = (0.01, 0.1, 0.5, 1.0, 2.0, 5.0)
ALPHAS = (1.1, 1.5, 2.0, 4.0, 10.0, 32.0, 256.0)


# --------------------------------------------------------------------------- divergences of laws
def _divergences(log_p: np.ndarray, log_q: np.ndarray, alpha: float, eps_prime: float):
    """D_α(P‖Q), KL(P‖Q) and δ(ε′) = Σ(P − e^{ε′}Q)₊ of strictly positive laws given by their
    log masses along the last axis (leading axes batch several pairs)."""
    renyi = logsumexp(alpha * log_p + (1.0 - alpha) * log_q, axis=-1) / (alpha - 1.0)
    kl = np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)
    hockey = np.sum(np.maximum(np.exp(log_p) - np.exp(eps_prime + log_q), 0.0), axis=-1)
    return renyi, kl, hockey


def _two_point(p: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """ρ′ = (1−p, p) on {0, 1}; w = log(ρ/ρ′) = (log c, log c + β) with E_ρ′ e^w = 1."""
    p = np.asarray(p, dtype=float)[..., None]
    log_c = -np.log1p(p * math.expm1(beta))
    log_q = np.concatenate([np.log1p(-p), np.log(p)], axis=-1)
    return log_q + np.concatenate([log_c, log_c + beta], axis=-1), log_q


def _brute_max(beta: float, which: int, alpha: float = 2.0, eps_prime: float = 0.0) -> float:
    """max over p of quantity ``which`` (0 Rényi, 1 KL, 2 δ), both pair orders, on two-point
    laws of oscillation β: a log-spaced grid in p and 1−p, then bounded Brent refinement."""

    def values(p):
        log_p, log_q = _two_point(p, beta)
        forward = _divergences(log_p, log_q, alpha, eps_prime)[which]
        return np.maximum(forward, _divergences(log_q, log_p, alpha, eps_prime)[which])

    tail = np.logspace(-14, math.log10(0.5), 1000)
    grid = np.unique(np.concatenate([tail, 1.0 - tail]))
    on_grid = values(grid)
    i = int(np.argmax(on_grid))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    best = minimize_scalar(lambda p: -float(values(p)), bounds=(lo, hi), method="bounded")
    return float(max(on_grid[i], -best.fun))


def _check_tight(closed: float, brute: float) -> None:
    # Brute force is a feasible law, so the closed form must dominate it (up to the float
    # evaluation of the brute force, 1e-9 absolute as in the note); tightness to 1e-6 relative.
    assert closed >= brute - 1e-9
    assert closed <= brute * (1.0 + 1e-6) + 1e-12


@pytest.mark.parametrize("beta", BETAS)
def test_renyi_closed_form_is_the_two_point_maximum(beta: float) -> None:
    for alpha in ALPHAS:
        if alpha * beta <= 700:
            _check_tight(renyi_from_beta(beta, alpha), _brute_max(beta, 0, alpha=alpha))


@pytest.mark.parametrize("beta", BETAS)
def test_kl_and_hockey_stick_closed_forms_are_the_two_point_maximum(beta: float) -> None:
    _check_tight(kl_from_beta(beta), _brute_max(beta, 1))
    for frac in (0.0, 0.1, 0.5, 0.9):
        eps_prime = frac * beta
        closed = hockey_stick_from_beta(beta, eps_prime)
        _check_tight(closed, _brute_max(beta, 2, eps_prime=eps_prime))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(beta=st.floats(0.02, 6.0), alpha=st.sampled_from(ALPHAS[:-1]), frac=st.floats(0, 0.95))
def test_closed_forms_are_tight_at_random_beta(beta: float, alpha: float, frac: float) -> None:
    _check_tight(renyi_from_beta(beta, alpha), _brute_max(beta, 0, alpha=alpha))
    _check_tight(kl_from_beta(beta), _brute_max(beta, 1))
    eps_prime = frac * beta
    _check_tight(hockey_stick_from_beta(beta, eps_prime), _brute_max(beta, 2, eps_prime=eps_prime))


@pytest.mark.parametrize("n_points", [2, 3, 10, 50])
def test_random_laws_with_bounded_oscillation_never_exceed_the_closed_forms(n_points: int) -> None:
    rng = np.random.default_rng(20260523 + n_points)
    for _ in range(300):
        beta = float(rng.uniform(0.01, 6.0))
        osc = beta * float(rng.uniform(0.5, 1.0))
        log_q = np.log(rng.exponential(size=n_points) ** 3)
        log_q -= logsumexp(log_q)
        w = rng.uniform(0.0, osc, size=n_points)
        w[:2] = (0.0, osc)
        w -= logsumexp(log_q + w)  # E_ρ′ e^w = 1: ρ = ρ′e^w is a law, osc w unchanged
        log_p = log_q + w
        alpha = float(rng.choice(ALPHAS[:-1]))
        eps_prime = float(rng.uniform(0.0, beta))
        bounds = (
            renyi_from_beta(beta, alpha),
            kl_from_beta(beta),
            hockey_stick_from_beta(beta, eps_prime),
        )
        for pair in ((log_p, log_q), (log_q, log_p)):
            for got, bound in zip(_divergences(*pair, alpha, eps_prime), bounds, strict=True):
                # 1e-12 relative: float evaluation of the random law's divergence.
                assert got <= bound * (1 + 1e-12) + 1e-15


def test_renyi_from_pure_is_exactly_randomized_response() -> None:
    for eps in (0.01, 0.1, 1.0, 3.0, 10.0):
        log_p = np.array([eps, 0.0]) - math.log1p(math.exp(eps))
        for alpha in ALPHAS:
            rr = float(_divergences(log_p, log_p[::-1], alpha, 0.0)[0])
            # rr is log(1 + O(D(α−1))) in floats: absolute error ≲ 4 ulp/(α−1).
            assert renyi_from_pure(eps, alpha) >= rr - 8 * np.finfo(float).eps / (alpha - 1)
            assert renyi_from_pure(eps, alpha) == pytest.approx(rr, rel=1e-9)
            # An ε-DP mechanism is 2ε-BR, so (15) at β = 2ε is valid but weaker.
            assert renyi_from_pure(eps, alpha) <= renyi_from_beta(2 * eps, alpha) * (1 + 1e-12)
        rr_kl = _divergences(log_p, log_p[::-1], 2.0, 0.0)[1]
        assert kl_from_pure(eps) == pytest.approx(rr_kl, rel=1e-12)
        assert zcdp_from_pure(eps) == eps * eps / 2


# --------------------------------------------------------------------------- consistency
@pytest.mark.parametrize("beta", [1e-6, *BETAS, 50.0, 600.0])
def test_renyi_monotone_and_below_simple_bounds(beta: float) -> None:
    alphas = [a for a in (*DEFAULT_ORDERS, 1e3, 1e4) if a * beta <= 1000]
    values = [renyi_from_beta(beta, a) for a in alphas]
    assert all(b >= a for a, b in itertools.pairwise(values))
    for alpha, value in zip(alphas, values, strict=True):
        assert 0.0 < value <= min(beta, alpha * beta**2 / 8) * (1 + 1e-15)
    assert renyi_from_beta(beta, math.inf) == beta


@pytest.mark.parametrize("alpha", [1.0 + 1e-9, 1.1, 2.0, 64.0])
def test_renyi_increasing_in_beta(alpha: float) -> None:
    values = [renyi_from_beta(b, alpha) for b in np.linspace(0.0, 700 / alpha, 300)]
    assert values[0] == 0.0
    assert all(b >= a for a, b in itertools.pairwise(values))


@pytest.mark.parametrize("beta", [0.01, 0.3, 1.0, 4.0])
def test_renyi_over_alpha_peaks_at_kl_as_alpha_to_one(beta: float) -> None:
    """Note (18): sup_α D_α/α equals the KL value (16), reached as α → 1 (0.1233 at β = 1)."""
    kl = kl_from_beta(beta)
    assert max(renyi_from_beta(beta, a) / a for a in DEFAULT_ORDERS) <= kl * (1 + 1e-9)
    # D_α → KL as α → 1 with slope O(1): 1e-5 relative at α − 1 = 1e-6.
    assert renyi_from_beta(beta, 1 + 1e-6) == pytest.approx(kl, rel=1e-5)
    assert kl <= zcdp_from_beta(beta)
    if beta == 1.0:
        assert round(kl, 4) == 0.1233


@pytest.mark.parametrize("beta", [0.01, 1.0, 5.0, 30.0])
def test_hockey_stick_decreasing_with_endpoints(beta: float) -> None:
    values = [hockey_stick_from_beta(beta, e) for e in np.linspace(0, 1.2 * beta, 200)]
    assert all(b <= a for a, b in itertools.pairwise(values))
    assert values[0] == pytest.approx(math.tanh(beta / 4), rel=1e-13)
    assert hockey_stick_from_beta(beta, beta) == 0.0
    assert hockey_stick_from_beta(beta, 2 * beta) == 0.0


def test_small_beta_limits() -> None:
    for beta in (1e-3, 1e-5, 1e-8):
        for alpha in (1.1, 2.0, 64.0):
            ratio = renyi_from_beta(beta, alpha) / (alpha * beta**2 / 8)
            assert 1 - 1e-4 <= ratio <= 1 + 1e-15
        assert kl_from_beta(beta) / (beta**2 / 8) == pytest.approx(1, rel=1e-5)
        assert hockey_stick_from_beta(beta, 0.0) / (beta / 4) == pytest.approx(1, rel=1e-5)
    assert renyi_from_beta(0.0, 2.0) == kl_from_beta(0.0) == hockey_stick_from_beta(0.0, 0) == 0


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: renyi_from_beta(-1.0, 2.0), "beta"),
        (lambda: renyi_from_beta(1.0, 1.0), "alpha"),
        (lambda: renyi_from_pure(1.0, 0.5), "alpha"),
        (lambda: kl_from_beta(math.nan), "beta"),
        (lambda: hockey_stick_from_beta(1.0, -0.1), "eps_prime"),
        (lambda: zcdp_from_pure(math.inf), "eps"),
        (lambda: rdp_to_approx_dp([1.0], 0.0, [2.0]), "delta"),
        (lambda: rdp_to_approx_dp([1.0, 2.0], 1e-6, [2.0]), "rdp"),
        (lambda: zcdp_to_approx_dp(1.0, 1.0), "delta"),
        (lambda: compose_basic([1.0], [0.1, 0.2]), "deltas"),
        (lambda: compose_advanced(1.0, -1, 1e-6), "k"),
        (lambda: compose_optimal_homogeneous(1.0, 2.5, 0.0), "k"),  # type: ignore[arg-type]
        (lambda: Budget(-1.0, 0.0), "epsilon"),
        (lambda: Budget(1.0, 1e-6, approx_delta=1e-5), "approx_delta"),
        (lambda: Charge(1.0, 0.5, delta=1.0), "delta"),
    ],
)
def test_invalid_parameters_name_their_field(call, field: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        call()
    assert info.value.field == field


# --------------------------------------------------------------------------- (20)–(21)
def _opacus(orders, rdp, delta):
    from opacus.accountants.analysis.rdp import get_privacy_spent

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return get_privacy_spent(orders=list(orders), rdp=list(rdp), delta=delta)


def _by_hand(tau: float, alpha: float, delta: float) -> float:
    return tau + math.log((alpha - 1) / alpha) - (math.log(delta) + math.log(alpha)) / (alpha - 1)


@pytest.mark.parametrize("delta", [1e-9, 1e-6, 1e-3])
@pytest.mark.parametrize(
    "curve",
    ["zcdp_small", "zcdp_big", "beta_1", "beta_3", "pure_2", "grid_end_large"],
)
def test_rdp_conversion_equals_opacus_and_formula_20(curve: str, delta: float) -> None:
    tau_of = {
        "zcdp_small": lambda a: 0.01 * a,
        "zcdp_big": lambda a: 20.0 * a,
        "beta_1": lambda a: renyi_from_beta(1.0, a),
        "beta_3": lambda a: renyi_from_beta(3.0, a),
        "pure_2": lambda a: renyi_from_pure(2.0, a),
        "grid_end_large": lambda a: 1e-7 * a,
    }[curve]
    rdp = [tau_of(a) for a in DEFAULT_ORDERS]
    eps, order = rdp_to_approx_dp(rdp, delta)  # warnings are errors: grid-end warning is caught
    ref_eps, ref_order = _opacus(DEFAULT_ORDERS, rdp, delta)
    assert order == ref_order
    assert eps == max(float(ref_eps), 0.0)
    i = DEFAULT_ORDERS.index(order)
    assert eps == pytest.approx(max(_by_hand(rdp[i], order, delta), 0.0), rel=1e-12, abs=1e-15)
    if curve == "grid_end_large":
        assert order == DEFAULT_ORDERS[-1]  # optimum at the grid end: valid, possibly loose


def test_rdp_conversion_clamps_at_zero() -> None:
    rdp = [0.0] * len(DEFAULT_ORDERS)
    assert float(_opacus(DEFAULT_ORDERS, rdp, 0.5)[0]) < 0.0
    assert rdp_to_approx_dp(rdp, 0.5)[0] == 0.0


def test_default_orders() -> None:
    assert DEFAULT_ORDERS[:2] == (1.1, 1.2) and DEFAULT_ORDERS[98] == pytest.approx(10.9)
    assert DEFAULT_ORDERS[99:] == (*map(float, range(12, 64)), 128.0, 256.0)
    assert all(isinstance(a, float) for a in DEFAULT_ORDERS)


def test_zcdp_conversion_numbers_of_the_note() -> None:
    """Note §5: 'one ε = 1 release: ε ≈ 2.4 at δ = 1e-6 via (21), or 2.75 with the simple form'.

    Those are the numbers for a β = 1 bounded-range release (ρ = β²/8 = 0.125). A pure ε = 1
    release that is not known BR has ρ = ε²/2 = 0.5 and gets 5.22 / 5.76.
    """
    assert zcdp_to_approx_dp(0.125, 1e-6) == pytest.approx(2.42, abs=5e-3)
    assert zcdp_to_approx_dp_simple(0.125, 1e-6) == pytest.approx(2.75, abs=5e-3)
    assert zcdp_to_approx_dp(zcdp_from_pure(1.0), 1e-6) == pytest.approx(5.22, abs=5e-3)
    assert zcdp_to_approx_dp_simple(zcdp_from_pure(1.0), 1e-6) == pytest.approx(5.76, abs=5e-3)
    rdp = [a * 0.125 for a in DEFAULT_ORDERS]
    assert zcdp_to_approx_dp(0.125, 1e-6) == max(float(_opacus(DEFAULT_ORDERS, rdp, 1e-6)[0]), 0)


def test_zcdp_conversion_edges_and_ordering() -> None:
    assert zcdp_to_approx_dp(0.0, 1e-6) == 0.0 == zcdp_to_approx_dp(0.0, 0.0)
    assert zcdp_to_approx_dp(0.1, 0.0) == math.inf == zcdp_to_approx_dp(math.inf, 1e-6)
    for rho in (1e-3, 0.01, 0.1, 1.0, 5.0):
        for delta in (1e-9, 1e-6, 1e-3):
            assert zcdp_to_approx_dp(rho, delta) <= zcdp_to_approx_dp_simple(rho, delta)


# --------------------------------------------------------------------------- composition
def _rr_brute(eps: float, k: int, eps_prime: float) -> float:
    """Σ over all 2^k outcomes of k-fold randomized response of (P(o) − e^{ε′}Q(o))₊."""
    p1 = math.exp(eps) / (1 + math.exp(eps))
    total = []
    for o in itertools.product((0, 1), repeat=k):
        ones = sum(o)
        p = p1**ones * (1 - p1) ** (k - ones)
        q = (1 - p1) ** ones * p1 ** (k - ones)
        total.append(max(p - math.exp(eps_prime) * q, 0.0))
    return math.fsum(total)


@pytest.mark.parametrize("k", [1, 2, 3, 6, 10])
@pytest.mark.parametrize("eps", [0.1, 0.5, 1.0, 2.0])
def test_optimal_composition_equals_exhaustive_randomized_response(k: int, eps: float) -> None:
    for eps_prime in np.linspace(0.0, k * eps + 0.5, 23):
        got = compose_optimal_homogeneous(eps, k, float(eps_prime))
        # Both are sums of ≤ 2^10 positive terms: 1e-12 relative covers their rounding.
        # abs 1e-15: P − e^{ε′}Q rounds to ±1 ulp of 1 where the two cancel.
        assert got == pytest.approx(_rr_brute(eps, k, float(eps_prime)), rel=1e-12, abs=1e-15)
        if k == 1:
            expected = max(math.exp(eps) - math.exp(eps_prime), 0.0) / (1 + math.exp(eps))
            assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("k", [20, 100, 300, 600])
def test_optimal_epsilon_is_minimal_and_beats_basic_and_advanced(k: int) -> None:
    eps, delta = 0.1, 1e-6
    best = compose_optimal_epsilon(eps, k, delta)
    assert best <= k * eps
    assert compose_optimal_homogeneous(eps, k, best) <= delta
    assert compose_optimal_homogeneous(eps, k, best * (1 - 1e-9)) > delta
    if k >= 100:
        assert best <= compose_advanced(eps, k, delta)
    deltas = [compose_optimal_homogeneous(eps, k, e) for e in np.linspace(0, k * eps, 50)]
    assert all(0 <= b <= a <= 1 for a, b in itertools.pairwise(deltas))


def test_basic_and_advanced_composition() -> None:
    assert compose_basic([0.1] * 10) == (pytest.approx(1.0, rel=1e-15), 0.0)
    assert compose_basic([0.5, 1.0], [1e-6, 2e-6]) == (1.5, pytest.approx(3e-6))
    assert compose_basic([], []) == (0.0, 0.0)
    k, eps, dp = 50, 0.2, 1e-5
    expected = eps * math.sqrt(2 * k * math.log(1 / dp)) + k * eps * (math.exp(eps) - 1)
    assert compose_advanced(eps, k, dp) == pytest.approx(expected, rel=1e-14)
    assert compose_optimal_epsilon(eps, 0, dp) == 0.0 == compose_optimal_homogeneous(0.0, 5, 0)
    assert compose_optimal_epsilon(eps, 7, 0.0) == pytest.approx(7 * eps)


# --------------------------------------------------------------------------- ledger (27)
def _run(charges, budget: Budget) -> tuple[LedgerState, list[bool]]:
    state, decisions = LedgerState(), []
    for charge in charges:
        ok = admits(state, charge, budget)
        decisions.append(ok)
        if ok:
            state = apply_charge(state, charge)
    return state, decisions


def test_pure_filter_fills_exactly_then_refuses() -> None:
    state, decisions = _run([Charge.bounded_range(0.5)] * 21, Budget(10.0, 0.0))
    assert decisions == [True] * 20 + [False]
    assert state == LedgerState(10.0, 20 * 0.5**2 / 8, 0.0, 20)
    # Decimal budgets fill exactly too: the 1e-12 slack absorbs 0.1 + 0.1 + 0.1 > 0.3 in floats.
    assert 0.1 + 0.1 + 0.1 > 0.3
    state, decisions = _run([Charge.pure(0.1)] * 3 + [Charge.pure(1e-9)], Budget(0.3, 0.0))
    assert decisions == [True] * 3 + [False]
    state, decisions = _run([Charge.pure(0.1)] * 10 + [Charge.pure(1e-9)], Budget(1.0, 0.0))
    assert decisions == [True] * 10 + [False]


def test_union_rule_admits_beyond_the_pure_total_when_zcdp_is_cheaper() -> None:
    budget = Budget(1.0, 1e-6)
    state, decisions = _run([Charge.bounded_range(0.01)] * 1000, budget)
    assert all(decisions) and state.releases == 1000
    assert state.pure_epsilon == pytest.approx(10.0)
    assert ledger_epsilon(state, 1e-6) == pytest.approx(zcdp_to_approx_dp(0.0125, 1e-6))
    assert ledger_epsilon(state, 1e-6) < 0.71
    # With δ_B > 0 the 21st β = 0.5 charge of the previous test fits the zCDP filter.
    state, decisions = _run([Charge.bounded_range(0.5)] * 21, Budget(10.0, 1e-6))
    assert all(decisions) and state.pure_epsilon > 10.0


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    e=st.floats(0, 5),
    r=st.floats(0, 2),
    beta=st.floats(0, 3),
    pure=st.booleans(),
    eps_b=st.floats(0.05, 5),
    delta_b=st.sampled_from([0.0, 1e-9, 1e-6, 1e-3]),
)
def test_admits_iff_one_filter_passes(e, r, beta, pure, eps_b, delta_b) -> None:
    state, budget = LedgerState(e, r, 0.0, 3), Budget(eps_b, delta_b)
    charge = Charge.pure(beta) if pure else Charge.bounded_range(beta)
    pure_ok = e + charge.pure_epsilon <= eps_b * (1 + ADMISSION_RTOL)
    zcdp_ok = delta_b > 0 and zcdp_to_approx_dp(r + charge.zcdp_rho, delta_b) <= eps_b * (
        1 + ADMISSION_RTOL
    )
    assert admits(state, charge, budget) == (pure_ok or zcdp_ok)


_charges = st.one_of(
    st.floats(0, 1.5).map(Charge.bounded_range),
    st.floats(0, 1.0).map(Charge.pure),
    st.floats(0, 0.05).map(lambda rho: Charge(math.inf, rho)),  # zCDP only (e.g. Gaussian)
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    charges=st.lists(_charges, max_size=40),
    eps_b=st.floats(0.1, 5),
    delta_b=st.sampled_from([0.0, 1e-9, 1e-6, 1e-3]),
)
def test_ledger_never_spends_more_than_the_budget(charges, eps_b, delta_b) -> None:
    state, decisions = _run(charges, Budget(eps_b, delta_b))
    assert state.releases == sum(decisions)
    assert ledger_epsilon(state, delta_b) <= eps_b * (1 + ADMISSION_RTOL)
    admitted = [c for c, ok in zip(charges, decisions, strict=True) if ok]
    assert state.pure_epsilon == pytest.approx(math.fsum(c.pure_epsilon for c in admitted))
    assert state.zcdp_rho == pytest.approx(math.fsum(c.zcdp_rho for c in admitted))


def test_approximate_charges_use_a_reserved_delta_and_close_the_zcdp_filter() -> None:
    approx = Charge(0.1, math.inf, delta=1e-7)
    assert not admits(LedgerState(), approx, Budget(1.0, 1e-6))  # nothing reserved
    budget = Budget(1.0, 1e-6, approx_delta=5e-7)
    state, decisions = _run([approx] * 6, budget)
    assert decisions == [True] * 5 + [False]
    assert ledger_epsilon(state, 5e-7) == pytest.approx(0.5)
    assert ledger_epsilon(state, 1e-7) == math.inf
    # The pure filter is full; the zCDP filter admits, unless Σδ > 0 has closed it.
    small = Charge.bounded_range(0.01)
    assert admits(LedgerState(1.0, 0.0125, 0.0, 1000), small, budget)
    assert not admits(LedgerState(1.0, 0.0125, 1e-7, 1001), small, budget)
    # The zCDP filter converts at δ_B − approx_delta.
    rho = 0.05
    ok = zcdp_to_approx_dp(rho, 5e-7) <= 1.0
    assert admits(LedgerState(1.0, 0.0), Charge(math.inf, rho), budget) == ok


def test_ledger_epsilon_and_state_records() -> None:
    state = apply_charge(LedgerState(), Charge.bounded_range(1.0))
    assert state == LedgerState(1.0, 0.125, 0.0, 1)
    assert ledger_epsilon(state, 0.0) == 1.0
    assert ledger_epsilon(state, 1e-6) == 1.0  # pure beats (21) for one release
    many = LedgerState(30.0, 30 * 0.125, 0.0, 30)
    assert ledger_epsilon(many, 1e-6) == zcdp_to_approx_dp(3.75, 1e-6) < 30.0
    with pytest.raises(AttributeError):
        state.releases = 2  # type: ignore[misc]
