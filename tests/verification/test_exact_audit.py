"""Sampling audits of the exact mechanisms (certificates note §8.3, cases A1 and A2, bound (33)).

Releases are drawn on neighbours (D, D′) through the mechanisms' own samplers with a seeded
``random.Random`` (public audit runs only); hit counts of pre-registered sets give a
Clopper–Pearson lower bound ε_lb that, with probability ≥ 1 − a, does not exceed the true loss.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest

from dp_core.errors import InvalidParameter
from dp_core.privacy.audit import clopper_pearson, epsilon_lower_bound
from dp_core.privacy.exact import (
    em_probabilities,
    exact_exponential_mechanism,
    exact_quantile_samples,
    exponential_base,
    quantile_gap_probabilities,
)

_A = 0.05  # audit level of §8.3

# --------------------------------------------------------------------------- A1: 2-candidate EM
# Counts (c, c) on D and (c+1, c) on D′ (add/remove), λ = ε/2 with ε = 1: the mechanism is
# called with osc_sensitivity = 2, so λ = ε/2 and b = e^{-1/2} rounded up to a multiple of
# 2^-64. Candidate 0 has probability 1/2 on D and e^λ/(1+e^λ) on D′, so the exact loss is
# max(λ - log((1+e^λ)/2), log((1+e^λ)/2)) = 0.2809 at λ = 1/2, attained on candidate 1. Both
# sets {0} and {1} are registered (Bonferroni over 2 sets × 2 orders): the set {0} alone can
# only reveal λ - log((1+e^λ)/2) = 0.219.
_EPS, _OSC, _C = 1.0, 2, 10
_D, _D_PRIME = [_C, _C], [_C + 1, _C]


def _a1_loss(lam: float) -> float:
    half_log = math.log((1 + math.exp(lam)) / 2)
    return max(lam - half_log, half_log)


_LAMBDA_IMPL = -math.log(float(exponential_base(_EPS, _OSC)))  # ≤ 1/2, within 1e-16
A1_LOSS = _a1_loss(_LAMBDA_IMPL)


def _a1_hits(scores: list[int], osc: int, releases: int, rng: random.Random) -> list[int]:
    """Hits of the sets {0} and {1} among releases drawn by the mechanism itself."""
    zeros = sum(
        exact_exponential_mechanism(scores, _EPS, osc, rng).index == 0 for _ in range(releases)
    )
    return [zeros, releases - zeros]


def test_a1_exact_loss_is_0_281():
    assert _a1_loss(0.5) == pytest.approx(0.2809, abs=1e-4)
    assert _a1_loss(0.5) >= A1_LOSS
    assert abs(_a1_loss(0.5) - A1_LOSS) <= 1e-15


def test_a1_audit_lower_bound_does_not_exceed_the_exact_loss():
    """T = 2·10^5 releases per dataset through the mechanism's own exact sampler (≈ 10 s).

    Expected ε_lb ≈ 0.281 - 2.50·(0.0022 + 0.0029) ≈ 0.268 (one-sided z at a/8 = 0.00625;
    log-scale standard errors sqrt((1-p)/(pT)) at p = 1/2 and p′ = 0.378), with standard
    deviation ≈ 0.004; so the bound also shows the audit is not vacuous.
    """
    releases = 200_000
    k = _a1_hits(_D, _OSC, releases, random.Random(20240601))
    k_prime = _a1_hits(_D_PRIME, _OSC, releases, random.Random(20240602))
    eps_lb = epsilon_lower_bound(k, releases, k_prime, releases, _A)
    assert eps_lb <= A1_LOSS
    assert eps_lb >= A1_LOSS - 0.03


def test_a1_audit_has_power_against_a_factor_two_sensitivity_bug():
    """The same audit on the EM called with Δ̃_osc = 1 instead of 2 (λ doubled) exceeds 0.281.

    Vectorised: a 2-candidate release is Bernoulli(p) with p the exact rational probability of
    candidate 0 given by the mechanism's own base and weights (em_probabilities, which the
    sampler matches exactly: see the unit tests), so T = 2·10^5 releases are one numpy
    binomial draw per dataset. Power: with λ = 1 the loss on {1} is log(1/2 · (1+e)) = 0.620.
    At T = 2·10^5 and one-sided z = 2.50 (a/8), the Clopper–Pearson bounds cost about
    z·sqrt((1-p)/(pT)) in log scale: 0.0056 at p = 1/2 and 0.0092 at p′ = 1/(1+e) = 0.269,
    so ε_lb ≈ 0.620 - 0.015 = 0.605 with standard deviation ≈ 0.004; 0.281 lies more than 70
    standard deviations below. The audit separates the bug from the true loss with certainty
    for practical purposes (and T = 2·10^4 would still suffice).
    """
    releases = 200_000
    gen = np.random.default_rng(20240603)
    base_bug = exponential_base(_EPS, 1)
    hits = []
    for scores in (_D, _D_PRIME):
        p0 = em_probabilities(scores, base_bug)[0]
        zeros = int(gen.binomial(releases, float(p0)))
        hits.append([zeros, releases - zeros])
    eps_lb = epsilon_lower_bound(hits[0], releases, hits[1], releases, _A)
    assert eps_lb > A1_LOSS
    assert eps_lb > 0.58


def test_a1_power_check_samples_the_bug_through_the_mechanism_too():
    """A smaller sampler-driven run of the buggy mechanism (T = 2·10^4) also exceeds 0.281."""
    releases = 20_000
    k = _a1_hits(_D, 1, releases, random.Random(7))
    k_prime = _a1_hits(_D_PRIME, 1, releases, random.Random(8))
    assert epsilon_lower_bound(k, releases, k_prime, releases, _A) > A1_LOSS


@pytest.mark.full
def test_a1_audit_is_tight_at_one_million_releases():
    """T = 10^6 releases per dataset through the sampler (≈ 90 s): within 0.02."""
    releases = 1_000_000
    k = _a1_hits(_D, _OSC, releases, random.Random(1))
    k_prime = _a1_hits(_D_PRIME, _OSC, releases, random.Random(2))
    eps_lb = epsilon_lower_bound(k, releases, k_prime, releases, _A)
    assert A1_LOSS - 0.02 <= eps_lb <= A1_LOSS


# --------------------------------------------------------------------------- A2: exact quantile
# Median, add/remove, ε = 1, the continuous law on [0, 1]; D′ removes the largest point (§8.3).
# Threshold sets pre-registered from the exact law of these public test data (the "pilot"):
# {θ ≤ 0.44}, {θ ≤ 0.5}, {θ > 0.5}, {θ > 0.58}.
_Q_DATA = [0.12, 0.25, 0.31, 0.44, 0.5, 0.58, 0.69, 0.77, 0.93]
_SETS = [("le", 0.44), ("le", 0.5), ("gt", 0.5), ("gt", 0.58)]


def _in_set(value: float, kind: str, threshold: float) -> bool:
    return value <= threshold if kind == "le" else value > threshold


def _set_mass(data: list[float], kind: str, threshold: float) -> Fraction:
    """P(θ ∈ S) under the exact law: whole gaps plus the uniform share of the one cut by S."""
    t, below = Fraction(threshold), Fraction(0)
    for a, c, p in quantile_gap_probabilities(data, 0.5, 0.0, 1.0, _EPS, "add_remove"):
        a_, c_ = Fraction(a), Fraction(c)
        if c_ <= t:
            below += p
        elif a_ < t:
            below += p * (t - a_) / (c_ - a_)
    return below if kind == "le" else 1 - below


def _registered_sets_loss() -> float:
    """max over the registered sets and both orders of |log P_D(S) - log P_D′(S)| (exact law)."""
    return max(
        abs(math.log(_set_mass(_Q_DATA, kind, t) / _set_mass(_Q_DATA[:-1], kind, t)))
        for kind, t in _SETS
    )


def _quantile_hits(data: list[float], releases: int, rng: random.Random) -> list[int]:
    """Hits among independent releases drawn by the sampler the mechanism calls."""
    draws = exact_quantile_samples(data, 0.5, 0.0, 1.0, _EPS, "add_remove", releases, rng)
    values = [draw.value for draw in draws]
    return [sum(_in_set(v, kind, t) for v in values if v is not None) for kind, t in _SETS]


def test_a2_exact_quantile_audit_stays_below_epsilon():
    """T = 3·10^4 releases per dataset through exact_quantile_samples (about a second).

    The registered sets carry a true loss of 0.581 (on {θ > 0.5}: P = 0.530 on D, 0.296 on
    D′), below ε_impl ≤ ε = 1. With one-sided z = 2.73 (a/16) the bounds cost ≈ 0.015 + 0.024
    in log scale, so ε_lb ≈ 0.54 is expected.
    """
    releases = 30_000
    k = _quantile_hits(_Q_DATA, releases, random.Random(31))
    k_prime = _quantile_hits(_Q_DATA[:-1], releases, random.Random(32))
    eps_lb = epsilon_lower_bound(k, releases, k_prime, releases, _A)
    true_loss = _registered_sets_loss()
    assert true_loss == pytest.approx(0.581, abs=1e-3)
    assert eps_lb <= true_loss <= _EPS
    assert eps_lb > 0.45  # the audit sees most of the loss


# --------------------------------------------------------------------------- the audit itself
def test_clopper_pearson_matches_known_values():
    lo, hi = clopper_pearson(5, 10, 0.05)
    assert lo == pytest.approx(0.187086, abs=1e-6)
    assert hi == pytest.approx(0.812914, abs=1e-6)
    assert clopper_pearson(0, 10, 0.05)[0] == 0.0
    assert clopper_pearson(10, 10, 0.05)[1] == 1.0


def test_epsilon_lower_bound_uses_both_orders_bonferroni_and_delta():
    one = epsilon_lower_bound(3000, 10_000, 2000, 10_000, 0.05)
    swapped = epsilon_lower_bound(2000, 10_000, 3000, 10_000, 0.05)
    assert one == pytest.approx(swapped)
    assert 0 < one < math.log(3 / 2)
    # more sets at the same level cost a wider interval per set
    assert epsilon_lower_bound([3000, 5000], 10_000, [2000, 5000], 10_000, 0.05) < one
    assert epsilon_lower_bound(3000, 10_000, 2000, 10_000, 0.05, delta=0.01) < one
    assert epsilon_lower_bound(5000, 10_000, 5000, 10_000, 0.05) == 0.0


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((11, 10, 1, 10, 0.05), "k"),
        ((1, 10, -1, 10, 0.05), "k_prime"),
        ((1, 10, 1, 10, 1.5), "a"),
        (([1, 2], 10, [1], 10, 0.05), "k_prime"),
        ((1, 0, 1, 10, 0.05), "k"),
    ],
)
def test_epsilon_lower_bound_rejects_invalid_input(args, field):
    with pytest.raises(InvalidParameter) as err:
        epsilon_lower_bound(*args)
    assert err.value.field == field


def test_epsilon_lower_bound_covers_the_true_loss():
    """Coverage sanity: across 200 simulated audits of a known pair, ε_lb > truth is rare."""
    gen = np.random.default_rng(5)
    p, p_prime, releases = 0.3, 0.2, 5_000
    truth = math.log(p / p_prime)
    bounds = [
        epsilon_lower_bound(
            int(gen.binomial(releases, p)),
            releases,
            int(gen.binomial(releases, p_prime)),
            releases,
            0.05,
        )
        for _ in range(200)
    ]
    assert sum(b > truth for b in bounds) <= 5  # expected ≤ 0.05·200/2 = 5 failures at most
