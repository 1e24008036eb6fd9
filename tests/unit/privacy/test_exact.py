"""Exact mechanisms (certificates note §7.3, (31)–(32)): the exact primitives, the base-2 EM,
the exact continuous quantile and permute-and-flip, each against an exact or closed-form law."""

from __future__ import annotations

import dataclasses
import decimal
import itertools
import math
import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from dp_core.errors import InvalidParameter
from dp_core.privacy import ExponentialMechanism, Quantile, exact
from dp_core.privacy.exact import (
    ExactDraw,
    bernoulli_exp_neg,
    bernoulli_rational,
    em_probabilities,
    exact_exponential_mechanism,
    exact_grid_mechanism,
    exact_quantile,
    exact_quantile_samples,
    exponential_base,
    exponential_base_loss,
    grid_sensitivity,
    integerize,
    permute_and_flip,
    quantile_gap_probabilities,
    quantile_inverse_temperature,
    quantile_osc_sensitivity,
    uniform_below,
)

_ALPHA = 1e-4  # χ² level: a correct sampler fails a given test with probability 1e-4
_SIGMAS = 4.5  # binomial band for means
_HIGH = decimal.Context(prec=200)


def _chi2_pvalue(observed, probs) -> float:
    """χ² goodness of fit; cells expected below 5 are pooled into one."""
    observed = np.asarray(observed, dtype=np.float64)
    expected = observed.sum() * np.asarray([float(p) for p in probs])
    small = expected < 5
    if small.any():
        observed = np.append(observed[~small], observed[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    expected *= observed.sum() / expected.sum()
    return float(stats.chisquare(observed, expected).pvalue)


def _tally(draws, m: int) -> np.ndarray:
    return np.bincount(np.asarray(draws), minlength=m)


def _exp_neg(lam: Fraction) -> decimal.Decimal:
    return _HIGH.exp(-_HIGH.divide(decimal.Decimal(lam.numerator), lam.denominator))


class _NoBits:
    def getrandbits(self, k: int) -> int:
        raise AssertionError("no random bits should be drawn")


# --------------------------------------------------------------------------- primitives
@pytest.mark.parametrize("n", [2, 3, 7, 8, 33])
def test_uniform_below_is_uniform(n):
    rng = random.Random(1000 + n)
    draws = [uniform_below(n, rng) for _ in range(3000 * n)]
    assert min(draws) == 0
    assert max(draws) == n - 1
    assert _chi2_pvalue(_tally(draws, n), [Fraction(1, n)] * n) > _ALPHA


def test_uniform_below_one_draws_no_bits():
    assert uniform_below(1, _NoBits()) == 0


@pytest.mark.parametrize("n", [0, -3, 2.0, False])
def test_uniform_below_rejects_invalid_n(n):
    with pytest.raises(InvalidParameter) as err:
        uniform_below(n, random.Random(0))
    assert err.value.field == "n"


def test_bernoulli_rational_mean_and_edges():
    rng = random.Random(11)
    p, n = Fraction(3, 7), 100_000
    mean = sum(bernoulli_rational(p, rng) for _ in range(n)) / n
    assert abs(mean - 3 / 7) <= _SIGMAS * math.sqrt((3 / 7) * (4 / 7) / n)
    assert not any(bernoulli_rational(Fraction(0), rng) for _ in range(1000))
    assert all(bernoulli_rational(Fraction(1), rng) for _ in range(1000))


@pytest.mark.parametrize("gamma", [Fraction(1, 3), Fraction(1), Fraction(3, 2), Fraction(17, 5)])
def test_bernoulli_exp_neg_mean(gamma):
    """Mean of 2·10^5 draws within 4.5σ of e^{-γ}, including γ > 1 (second case of (32))."""
    rng = random.Random(int(gamma * 1000))
    n = 200_000
    p = math.exp(-gamma)
    mean = sum(bernoulli_exp_neg(gamma, rng) for _ in range(n)) / n
    assert abs(mean - p) <= _SIGMAS * math.sqrt(p * (1 - p) / n)


def test_bernoulli_exp_neg_edges():
    rng = random.Random(5)
    assert all(bernoulli_exp_neg(Fraction(0), rng) for _ in range(1000))
    assert all(bernoulli_exp_neg(0, rng) for _ in range(1000))
    assert not any(bernoulli_exp_neg(Fraction(10**9, 7), rng) for _ in range(1000))


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda r: bernoulli_rational(Fraction(3, 2), r), "p"),
        (lambda r: bernoulli_rational(0.5, r), "p"),
        (lambda r: bernoulli_exp_neg(Fraction(-1, 2), r), "gamma"),
        (lambda r: bernoulli_exp_neg(0.5, r), "gamma"),
    ],
)
def test_primitives_reject_invalid(call, field):
    with pytest.raises(InvalidParameter) as err:
        call(random.Random(0))
    assert err.value.field == field


# --------------------------------------------------------------------------- the base b (31)
_BASE_CASES = [(1.0, 1), (1.0, 2), (0.1, 3), (1e-3, 7), (2.5, 1), (10.0, 1), (0.7, 10**6)]


@pytest.mark.parametrize(("epsilon", "osc"), _BASE_CASES)
def test_base_satisfies_minus_log_b_at_most_lambda_and_is_smallest(epsilon, osc):
    base = exponential_base(epsilon, osc)
    assert base.denominator <= 2**64
    assert base.denominator & (base.denominator - 1) == 0  # a power of two
    assert 0 < base < 1
    x = base * 2**64
    assert x.denominator == 1
    lam = Fraction(epsilon) / osc
    target = _exp_neg(lam)
    # -log b ≤ λ  ⟺  b ≥ e^{-λ}, decided at 200 digits
    assert _HIGH.divide(decimal.Decimal(int(x)), 2**64) >= target
    # the next smaller base x - 1 would violate it: x is minimal
    assert _HIGH.divide(decimal.Decimal(int(x) - 1), 2**64) < target


def test_base_extremes():
    assert exponential_base(60.0, 1) == Fraction(1, 2**64)  # e^{-60} < 2^-64: the smallest b
    assert exponential_base(1e-25, 1) == 1  # λ < 2^-64: b rounds up to 1 (uniform, 0-DP)
    assert exponential_base_loss(1e-25, 1) == 0.0
    assert exponential_base_loss(60.0, 1) == pytest.approx(64 * math.log(2))


@pytest.mark.parametrize(("epsilon", "osc"), _BASE_CASES)
def test_epsilon_implemented_is_an_upper_bound_and_at_most_epsilon(epsilon, osc):
    eps_impl = exponential_base_loss(epsilon, osc)
    base = exponential_base(epsilon, osc)
    true_loss = -_HIGH.ln(_HIGH.divide(base.numerator, base.denominator)) * osc
    assert decimal.Decimal(eps_impl) >= true_loss
    assert eps_impl <= epsilon
    assert eps_impl >= epsilon * (1 - 1e-12)


def test_em_draw_reports_public_loss_and_zcdp():
    draw = exact_exponential_mechanism([3, 1, 2], 1.3, 2, random.Random(1))
    assert isinstance(draw, ExactDraw)
    assert draw.base == exponential_base(1.3, 2)
    assert draw.epsilon_implemented == exponential_base_loss(1.3, 2)
    assert draw.zcdp_rho >= draw.epsilon_implemented**2 / 8
    assert draw.zcdp_rho == pytest.approx(draw.epsilon_implemented**2 / 8, rel=1e-15)
    assert draw.value is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        draw.index = 0  # type: ignore[misc]


# --------------------------------------------------------------------------- exact EM (31)
_SCORES = [4, 1, 0, 4, 2]


def _em_law(scores, base):
    top = max(scores)
    weights = [base ** (top - s) for s in scores]
    return [w / sum(weights) for w in weights]


def test_em_probabilities_is_the_exact_law():
    base = exponential_base(1.3, 1)
    assert em_probabilities(_SCORES, base) == _em_law(_SCORES, base)
    assert sum(em_probabilities(_SCORES, base, counts=[1, 2, 3, 4, 5])) == 1


def test_em_frequencies_match_exact_probabilities_and_detect_factor_two():
    rng = random.Random(2024)
    n = 100_000
    draws = [exact_exponential_mechanism(_SCORES, 1.3, 1, rng).index for _ in range(n)]
    counts = _tally(draws, len(_SCORES))
    assert _chi2_pvalue(counts, _em_law(_SCORES, exponential_base(1.3, 1))) > _ALPHA
    # power: the same test rejects the law of a factor-2 error in λ (both directions)
    assert _chi2_pvalue(counts, _em_law(_SCORES, exponential_base(2.6, 1))) < _ALPHA
    assert _chi2_pvalue(counts, _em_law(_SCORES, exponential_base(1.3, 2))) < _ALPHA


@pytest.mark.parametrize("prec", [1, 3, 8])
def test_lazy_sampler_is_exact_under_forced_refinement(prec):
    """A tiny starting precision forces the refine-and-redraw branch of _sample_index."""
    rng = random.Random(prec)
    counts, gaps = [1, 2, 1, 3], [0, 1, 3, 2]
    x = int(exponential_base(0.8, 1) * 2**64)
    draws = [exact._sample_index(counts, gaps, x, rng, prec) for _ in range(40_000)]
    law = em_probabilities([-g for g in gaps], exponential_base(0.8, 1), counts)
    assert _chi2_pvalue(_tally(draws, 4), law) > _ALPHA


def test_em_with_astronomical_gaps_stays_exact_and_fast():
    """Gaps of 10^15 units: b^gap is never expanded; the law is (0, 1/(1+b), b/(1+b))."""
    rng = random.Random(3)
    scores = [0, 10**15, 10**15 - 1]
    n = 20_000
    draws = [exact_exponential_mechanism(scores, 1.0, 1, rng).index for _ in range(n)]
    assert 0 not in draws
    b = float(exponential_base(1.0, 1))
    p = b / (1 + b)
    assert abs(draws.count(2) / n - p) <= _SIGMAS * math.sqrt(p * (1 - p) / n)


def test_grid_mechanism_is_the_finite_em():
    a = [exact_grid_mechanism(_SCORES, 1.0, 1, random.Random(9)).index for _ in range(1)]
    b = [exact_exponential_mechanism(_SCORES, 1.0, 1, random.Random(9)).index for _ in range(1)]
    assert a == b


# --------------------------------------------------------------------------- grid units
def test_integerize_rounds_half_to_even_in_grid_units():
    assert integerize([0.0, 0.24, 0.25, 0.26, 0.75, 1.0], 0.5) == [0, 0, 0, 1, 2, 2]


def test_integerize_clips_to_the_public_bound():
    assert integerize([-1.0, math.nan, math.inf, 0.3], 0.25, bound=1.0) == [0, 4, 4, 1]
    with pytest.raises(InvalidParameter) as err:
        integerize([math.nan], 0.25)
    assert err.value.field == "values"


def test_grid_sensitivity_values():
    assert grid_sensitivity(1.0, 0.3) == 4
    assert grid_sensitivity(1.0, 0.25) == 4
    assert grid_sensitivity(0.1, 1.0) == 1


@given(
    bound=st.floats(1e-3, 1e3),
    quantum=st.floats(1e-3, 10.0),
    frac=st.floats(0.0, 1.0),
)
def test_integerized_contribution_lies_in_zero_to_grid_sensitivity(bound, quantum, frac):
    value = min(bound * frac, bound)
    (k,) = integerize([value], quantum, bound=bound)
    assert 0 <= k <= grid_sensitivity(bound, quantum)


# --------------------------------------------------------------------------- exact quantile
@pytest.mark.parametrize(
    ("q", "neighbouring", "expected"),
    [
        (0.5, "add_remove", 2),
        (0.5, "replace_one", 4),
        (0.3, "add_remove", 14),
        (0.3, "replace_one", 20),
        (0.9, "add_remove", 18),
        (0.0, "add_remove", 2),
        (1 / 3, "add_remove", 4),
    ],
)
def test_quantile_osc_sensitivity(q, neighbouring, expected):
    assert quantile_osc_sensitivity(q, neighbouring) == expected


_TIES = [0.0, 0.1, 0.25, 0.25, 0.4, 0.55, 0.7, 0.7, 0.9, 1.0]
"""Ties, both bounds, and non-dyadic decimals (0.1, 0.4, ... are exact binary fractions)."""
_QUANTILE_CASES = [
    (0.5, "add_remove", 2.0),
    (0.5, "replace_one", 3.0),
    (0.3, "add_remove", 6.0),
    (0.9, "replace_one", 0.5),
]


def _closed_form(data, q, lower, upper, epsilon, neighbouring):
    """(x_(i), x_(i+1), P(i)), i = 0..n, from the definition in Fractions; shares only the public
    base b with the code under test."""
    q_t = Fraction(q).limit_denominator(10**6)
    num, den = q_t.numerator, q_t.denominator
    osc = {"add_remove": 2 * max(num, den - num), "replace_one": 2 * den}[neighbouring]
    base = exponential_base(epsilon, osc)
    xs = sorted(lower if math.isnan(v) else min(max(v, lower), upper) for v in data)
    ends = [lower, *xs, upper]
    utils = [-abs(den * i - num * len(xs)) for i in range(len(xs) + 1)]
    weights = [
        (Fraction(ends[i + 1]) - Fraction(ends[i])) * base ** (max(utils) - u)
        for i, u in enumerate(utils)
    ]
    return [(ends[i], ends[i + 1], w / sum(weights)) for i, w in enumerate(weights)]


def _cdf(law, thetas: np.ndarray) -> np.ndarray:
    """P(θ ≤ t) under a gap law at each t: the gaps below, the uniform share of the one cut."""
    a, c, p = (np.array([float(g[k]) for g in law]) for k in range(3))
    share = np.clip((thetas[:, None] - a) / np.where(c > a, c - a, 1.0), 0.0, 1.0)
    return share @ p


def _gap_pvalue(draws, law) -> float:
    """χ² of the drawn gaps against the law's probabilities; gaps of probability 0 (ties) must
    never be drawn and are left out of the test."""
    counts = _tally([d.index for d in draws], len(law))
    positive = [i for i, (_, _, p) in enumerate(law) if p > 0]
    assert counts.sum() == counts[positive].sum()
    return _chi2_pvalue(counts[positive], [law[i][2] for i in positive])


def _dkw(samples: int) -> float:
    """Dvoretzky–Kiefer–Wolfowitz: sup|F_T - F| exceeds this with probability ≤ _ALPHA."""
    return math.sqrt(math.log(2 / _ALPHA) / (2 * samples))


def test_quantile_two_points_by_hand():
    """Median of {1/4, 3/4} on [0, 1], add/remove: weights b²/4, 1/2, b²/4 (Δ̃_osc = 2)."""
    b = exponential_base(1.0, 2)
    law = quantile_gap_probabilities([0.25, 0.75], 0.5, 0.0, 1.0, 1.0, "add_remove")
    assert law == [
        (0.0, 0.25, b**2 / 2 / (1 + b**2)),
        (0.25, 0.75, 1 / (1 + b**2)),
        (0.75, 1.0, b**2 / 2 / (1 + b**2)),
    ]


@pytest.mark.parametrize(("q", "neighbouring", "epsilon"), _QUANTILE_CASES)
def test_quantile_gap_probabilities_equal_the_closed_form(q, neighbouring, epsilon):
    data = [*_TIES, math.nan, -3.0, 2.5, 0.33]  # NaN counts as lower; -3 and 2.5 are clipped
    law = quantile_gap_probabilities(data, q, 0.0, 1.0, epsilon, neighbouring)
    assert law == _closed_form(data, q, 0.0, 1.0, epsilon, neighbouring)
    assert sum(p for _, _, p in law) == 1
    assert [p == 0 for a, c, p in law] == [a == c for a, c, _ in law]  # ties: weight 0
    # zero-length gaps: 3 at 0 (bound, 0.0, NaN, -3.0), 0.25, 0.7, 2 at 1 (1.0, 2.5, bound)
    assert sum(a == c for a, c, _ in law) == 7


@pytest.mark.parametrize(("q", "neighbouring", "epsilon"), _QUANTILE_CASES[:2])
def test_quantile_draws_follow_the_exact_continuous_law(q, neighbouring, epsilon):
    """2·10^4 seeded draws: the gaps pass χ² against the exact gap law, every value lies in its
    gap, and the values' empirical CDF is within the DKW band of the exact continuous CDF (and
    outside it for the law at twice the ε: the test has power)."""
    data, releases = [*_TIES, 0.33], 20_000
    law = quantile_gap_probabilities(data, q, 0.0, 1.0, epsilon, neighbouring)
    draws = exact_quantile_samples(data, q, 0.0, 1.0, epsilon, neighbouring, releases, _rng(q))
    assert all(law[d.index][0] <= d.value <= law[d.index][1] for d in draws)
    assert _gap_pvalue(draws, law) > _ALPHA
    values = np.sort([d.value for d in draws])
    ranks = np.arange(1, releases + 1) / releases

    def distance(reference) -> float:
        cdf = _cdf(reference, values)
        return float(max(np.max(np.abs(ranks - cdf)), np.max(np.abs(ranks - 1 / releases - cdf))))

    assert distance(law) <= _dkw(releases)
    sharper = quantile_gap_probabilities(data, q, 0.0, 1.0, 2 * epsilon, neighbouring)
    assert distance(sharper) > 3 * _dkw(releases)


def _rng(q: float) -> random.Random:
    return random.Random(int(q * 1000) + 17)


def test_quantile_window_refinement_stays_exact(monkeypatch):
    """A one-gap starting window with no tail margin forces the widen-and-refine passes of the
    gap sampler (n = 200, the mode's neighbours weigh e^{-1/2} per gap): still the exact law."""
    monkeypatch.setattr(exact, "_WINDOW", 1)
    monkeypatch.setattr(exact, "_TAIL_BITS", 0)
    data = np.random.default_rng(3).uniform(0.0, 1.0, 200).tolist()
    law = quantile_gap_probabilities(data, 0.5, 0.0, 1.0, 1.0, "add_remove")
    draws = exact_quantile_samples(data, 0.5, 0.0, 1.0, 1.0, "add_remove", 20_000, random.Random(9))
    assert _gap_pvalue(draws, law) > _ALPHA


def _neighbours(data, neighbouring):
    values = [0.0, 0.25, 0.33, 0.62, 1.0]
    if neighbouring == "add_remove":
        yield from ([*data, z] for z in values)
        yield from (data[:k] + data[k + 1 :] for k in range(len(data)))
    else:
        yield from ([*data[:k], z, *data[k + 1 :]] for k in range(len(data)) for z in values)


def _density(law, theta: Fraction) -> Fraction:
    (p, length) = next(
        (p, Fraction(c) - Fraction(a)) for a, c, p in law if Fraction(a) < theta < Fraction(c)
    )
    return p / length


@pytest.mark.parametrize(("q", "neighbouring", "epsilon"), _QUANTILE_CASES)
def test_quantile_density_ratio_never_exceeds_e_epsilon(q, neighbouring, epsilon):
    """For every neighbour D′ of D (add/remove: each insertion of 5 values and each removal;
    replace-one: each record by 5 values) the densities are constant on the cells of the common
    refinement of both gap partitions, so one θ per cell checks every θ (up to the finitely many
    endpoints): p_D(θ)/p_D′(θ) ≤ b^{-Δ̃_osc} = e^{ε_impl} ≤ e^ε, exactly in Fractions, both
    ways. The worst ratio is also above e^{ε/2}: the check is not vacuous."""
    osc = quantile_osc_sensitivity(q, neighbouring)
    bound = exponential_base(epsilon, osc) ** -osc
    law = quantile_gap_probabilities(_TIES, q, 0.0, 1.0, epsilon, neighbouring)
    worst = Fraction(1)
    for other in _neighbours(_TIES, neighbouring):
        law_prime = quantile_gap_probabilities(other, q, 0.0, 1.0, epsilon, neighbouring)
        cuts = sorted({Fraction(v) for v in [0.0, 1.0, *_TIES, *other]})
        for theta in ((lo + hi) / 2 for lo, hi in itertools.pairwise(cuts)):
            ratio = _density(law, theta) / _density(law_prime, theta)
            worst = max(worst, ratio, 1 / ratio)
    assert worst <= bound
    assert math.log(worst) <= exponential_base_loss(epsilon, osc) <= epsilon
    assert math.log(worst) > epsilon / 2


def _expected_abs_error(data, epsilon, lower, upper):
    """E|θ - median| and its sd under the exact law (evaluated in floats: λ = -log b per unit)."""
    x = np.sort(np.clip(data, lower, upper))
    ends = np.concatenate(([lower], x, [upper]))
    a, c, n = ends[:-1], ends[1:], len(x)
    scores = np.abs(2 * np.arange(n + 1) - n)
    lam = -math.log(float(exponential_base(epsilon, quantile_osc_sensitivity(0.5, "add_remove"))))
    p = (c - a) * np.exp(-lam * (scores - scores.min()))
    p /= p.sum()
    m = float(np.median(x))
    inside = ((m - a) ** 2 + (c - m) ** 2) / (2 * np.maximum(c - a, 1e-300))
    first = np.where(m <= a, (a + c) / 2 - m, np.where(m >= c, m - (a + c) / 2, inside))
    second = ((a - m) ** 2 + (a - m) * (c - m) + (c - m) ** 2) / 3
    mean = float(p @ first)
    return mean, math.sqrt(float(p @ second) - mean**2), m


def test_quantile_has_no_grid_floor():
    """n = 10^4 records N(40, 12) clipped to [0, 100], median, ε = 4, add/remove: 200 draws.

    Derivation: the mode gap [x_(5000), x_(5001)] has weight 1, its neighbours e^{-4} = 0.018
    each (λ = ε per rank), so θ is nearly uniform on the mode gap around the empirical median:
    E|θ - m| ≈ L/4, with L ≈ 1/(n·f(40)) = 1/(10^4 · 0.0332) = 0.0030 on average, i.e. about
    7.5·10^-4 plus O(e^{-ε}) from the neighbours, far below the 4096-cell grid's floor (0.0099
    quoted in the accuracy note, spacing 0.024). The exact expectation for this dataset is
    computed from the law; the empirical mean absolute error must lie within 4.5 standard
    errors of it, and both must lie below a quarter of the floor.
    """
    data = np.random.default_rng(2024).normal(40.0, 12.0, 10_000)
    expected, sd, median = _expected_abs_error(data, 4.0, 0.0, 100.0)
    draws = exact_quantile_samples(data, 0.5, 0.0, 100.0, 4.0, "add_remove", 200, random.Random(6))
    mae = float(np.mean([abs(d.value - median) for d in draws]))
    assert abs(mae - expected) <= _SIGMAS * sd / math.sqrt(200)
    assert expected < 0.0099 / 4
    assert mae < 0.0099 / 4


@pytest.mark.parametrize(
    ("data", "lower", "upper"),
    [
        ([], 0.0, 1.0),
        ([0.0, 0.0, 0.0], 0.0, 1.0),
        ([1.0, 1.0, 7.0], 0.0, 1.0),
        ([-2.5, -1.0, -1.0, -3.0], -3.0, -1.0),
        ([1e-320, 2e-320, 5e-324], 0.0, 3e-320),  # subnormals
        ([-1e300, 0.0, 1e300, 5.0], -1.5e300, 1.5e300),
        ([math.nan, math.inf, -math.inf, 0.5], 0.0, 1.0),
    ],
)
def test_quantile_values_lie_in_the_bounds_and_in_their_gap(data, lower, upper):
    law = quantile_gap_probabilities(data, 0.5, lower, upper, 1.0, "add_remove")
    draws = exact_quantile_samples(data, 0.5, lower, upper, 1.0, "add_remove", 300, _rng(0.1))
    for draw in draws:
        a, c, p = law[draw.index]
        assert lower <= a <= draw.value <= c <= upper
        assert p > 0
        assert draw.base == exponential_base(1.0, 2)


def test_quantile_on_empty_data_is_uniform():
    values = [
        d.value
        for d in exact_quantile_samples([], 0.5, -1.0, 3.0, 1.0, "add_remove", 5000, _rng(0.2))
    ]
    assert stats.kstest(values, stats.uniform(-1.0, 4.0).cdf).statistic <= _dkw(5000)


def test_uniform_point_is_the_exact_rounding_of_a_uniform():
    """θ ~ U[a, c] across the binade at 1 (float spacing 2^-53 below 1, 2^-52 above), rounded
    to nearest: the 5 floats in [a, c] have rounding cells of widths 1, 2, 3, 4, 2 (units of
    2^-54) out of 12."""
    u = 2.0**-53
    a, c = 1.0 - 2 * u, 1.0 + 4 * u
    floats = [a, 1.0 - u, 1.0, 1.0 + 2 * u, c]
    rng = random.Random(12)
    draws = [exact._uniform_rounded(a, c, rng) for _ in range(24_000)]
    assert set(draws) <= set(floats)
    counts = [draws.count(f) for f in floats]
    assert _chi2_pvalue(counts, [Fraction(w, 12) for w in (1, 2, 3, 4, 2)]) > _ALPHA


def test_uniform_point_has_full_float_resolution():
    """On [0, 1] values below 1/4 are floats of spacing ≤ 2^-55: about 3/4 of them are not
    multiples of 2^-53, which a 53-bit uniform scaled by the gap length could never produce
    (its outputs would depend on the gap length, the data: §7.4)."""
    rng = random.Random(13)
    small = [v for v in (exact._uniform_rounded(0.0, 1.0, rng) for _ in range(4000)) if v < 0.25]
    fine = sum((v * 2.0**53) % 1 != 0 for v in small)
    assert fine > len(small) / 2


def test_quantile_clips_data_before_use():
    raw = [-5.0, 0.2, math.inf, 7.0, -math.inf, 0.6, math.nan]
    clipped = [0.0, 0.2, 1.0, 1.0, 0.0, 0.6, 0.0]
    for seed in range(20):
        a = exact_quantile(raw, 0.5, 0.0, 1.0, 2.0, "add_remove", random.Random(seed))
        b = exact_quantile(clipped, 0.5, 0.0, 1.0, 2.0, "add_remove", random.Random(seed))
        assert a == b


def test_quantile_draw_reports_the_em_charge():
    draw = exact_quantile([0.1, 0.5, 1.7, 0.2], 0.3, -1.0, 2.0, 1.0, "replace_one", _rng(0.3))
    assert draw.base == exponential_base(1.0, 20)
    assert draw.epsilon_implemented == exponential_base_loss(1.0, 20)
    assert draw.zcdp_rho == pytest.approx(draw.epsilon_implemented**2 / 8, rel=1e-15)
    assert draw.index in range(5)


_LAMBDA_CASES = [*_QUANTILE_CASES, (1 / 3, "add_remove", 1e-3)]


@pytest.mark.parametrize(("q", "neighbouring", "epsilon"), _LAMBDA_CASES)
def test_quantile_inverse_temperature_is_what_is_sampled(q, neighbouring, epsilon):
    """λ in the units of u = ũ/den: (-log b)·den = ε_impl·den/Δ̃_osc, rounded up (checked at
    200 digits), and at most ε/Δ_osc(u) = ε·den/Δ̃_osc."""
    osc = quantile_osc_sensitivity(q, neighbouring)
    den = Fraction(q).limit_denominator(10**6).denominator
    lam = quantile_inverse_temperature(epsilon, q, neighbouring)
    assert lam == pytest.approx(exponential_base_loss(epsilon, osc) * den / osc, rel=1e-15)
    base = exponential_base(epsilon, osc)
    assert decimal.Decimal(lam) >= -_HIGH.ln(_HIGH.divide(base.numerator, base.denominator)) * den
    assert lam <= epsilon * den / osc * (1 + 1e-15)


def test_exact_quantile_certificate_states_the_sampled_inverse_temperature():
    """The exact plan's certificate states the λ that is sampled (to float rounding) for levels
    q whose q̃ = q to float precision (the plan imports opacus: one test, several cases)."""
    for q, neighbouring, epsilon in _LAMBDA_CASES:
        mechanism = ExponentialMechanism(
            Quantile(q, 0.0, 1.0), epsilon, method="exact", neighbouring=neighbouring
        )
        lam = quantile_inverse_temperature(epsilon, q, neighbouring)
        assert mechanism.plan().certificate.inverse_temperature == pytest.approx(lam, rel=1e-12)


# --------------------------------------------------------------------------- permute-and-flip
def _pf_law(scores, lam):
    """P(r) = mean over orders of Π_{s before r}(1 - p_s)·p_r, p_s = e^{-λ(u*-u_s)}."""
    p = [math.exp(-lam * (max(scores) - s)) for s in scores]
    law = [0.0] * len(scores)
    orders = list(itertools.permutations(range(len(scores))))
    for order in orders:
        reach = 1.0
        for r in order:
            law[r] += reach * p[r] / len(orders)
            reach *= 1 - p[r]
    return law


def test_permute_and_flip_matches_its_law_and_charges_pure_dp_zcdp():
    scores, epsilon = [3, 1, 0, 2], 1.5
    rng = random.Random(31)
    draws = [permute_and_flip(scores, epsilon, 1, rng) for _ in range(50_000)]
    law = _pf_law(scores, epsilon / 2)  # λ = ε/(2Δu)
    assert _chi2_pvalue(_tally([d.index for d in draws], 4), law) > _ALPHA
    assert draws[0].epsilon_implemented == epsilon
    assert draws[0].zcdp_rho == epsilon**2 / 2
    assert draws[0].base is None


# --------------------------------------------------------------------------- contracts
@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: exact_exponential_mechanism([1, 2], 0.0, 1), "epsilon"),
        (lambda: exact_exponential_mechanism([1, 2], math.nan, 1), "epsilon"),
        (lambda: exact_exponential_mechanism([1, 2], math.inf, 1), "epsilon"),
        (lambda: exact_exponential_mechanism([1, 2], 1.0, 0), "osc_sensitivity"),
        (lambda: exact_exponential_mechanism([1, 2], 1.0, 1.5), "osc_sensitivity"),
        (lambda: exact_exponential_mechanism([], 1.0, 1), "scores"),
        (lambda: exact_exponential_mechanism([1.0, 2.0], 1.0, 1), "scores"),
        (lambda: exact_exponential_mechanism([0] * (exact.MAX_CANDIDATES + 1), 1.0, 1), "scores"),
        (lambda: permute_and_flip([1, 2], 1.0, 0), "sensitivity"),
        (lambda: permute_and_flip([1, 2], -1.0, 1), "epsilon"),
        (lambda: exact_quantile([0.5], 1.5, 0, 1, 1.0, "add_remove"), "q"),
        (lambda: exact_quantile([0.5], math.nan, 0, 1, 1.0, "add_remove"), "q"),
        (lambda: exact_quantile([0.5], 0.5, 1, 0, 1.0, "add_remove"), "upper"),
        (lambda: exact_quantile([0.5], 0.5, 0, 0, 1.0, "add_remove"), "upper"),
        (lambda: exact_quantile([0.5], 0.5, -math.inf, 0, 1.0, "add_remove"), "lower"),
        (lambda: exact_quantile([0.5], 0.5, -1e308, 1e308, 1.0, "add_remove"), "upper"),
        (lambda: exact_quantile([0.5], 0.5, 0, 1, 0.0, "add_remove"), "epsilon"),
        (lambda: exact_quantile([0.5], 0.5, 0, 1, 1.0, "swap"), "neighbouring"),
        (lambda: exact_quantile([[0.5]], 0.5, 0, 1, 1.0, "add_remove"), "data"),
        (lambda: exact_quantile(["a"], 0.5, 0, 1, 1.0, "add_remove"), "data"),
        (lambda: exact_quantile_samples([0.5], 0.5, 0, 1, 1.0, "add_remove", 0), "n_samples"),
        (lambda: quantile_gap_probabilities([0.5], 0.5, 0, 1, -1.0, "add_remove"), "epsilon"),
        (lambda: quantile_inverse_temperature(1.0, 2.0, "add_remove"), "q"),
        (lambda: integerize([0.5], 0.0), "quantum"),
        (lambda: integerize([0.5], 1.0, bound=-1.0), "bound"),
        (lambda: grid_sensitivity(0.0, 1.0), "bound"),
        (lambda: em_probabilities([1, 2], Fraction(3, 2)), "base"),
    ],
)
def test_invalid_parameters_name_their_field(call, field):
    with pytest.raises(InvalidParameter) as err:
        call()
    assert err.value.field == field


def test_seeded_public_runs_are_reproducible():
    def run(seed):
        rng = random.Random(seed)
        return (
            [exact_exponential_mechanism(_SCORES, 1.0, 1, rng).index for _ in range(50)],
            [exact_quantile([0.2, 0.7], 0.5, 0, 1, 1.0, "replace_one", rng) for _ in range(50)],
            [permute_and_flip(_SCORES, 1.0, 1, rng).index for _ in range(50)],
        )

    assert run(123) == run(123)
    assert run(123) != run(124)


def test_default_source_is_the_csprng():
    draw = exact_exponential_mechanism(_SCORES, 1.0, 1)
    assert 0 <= draw.index < len(_SCORES)
    assert 0 <= exact_quantile([0.3], 0.5, 0, 1, 1.0, "add_remove").value <= 1
    assert 0 <= permute_and_flip(_SCORES, 1.0, 1).index < len(_SCORES)
