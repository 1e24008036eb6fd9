"""Exact mechanisms (certificates note §7.3, (31)–(32)): the exact primitives, the base-2 EM,
the exact grid quantile and permute-and-flip, each against an exact or closed-form law."""

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
from dp_core.privacy import exact
from dp_core.privacy.exact import (
    ExactDraw,
    bernoulli_exp_neg,
    bernoulli_rational,
    em_probabilities,
    exact_exponential_mechanism,
    exact_grid_mechanism,
    exact_quantile,
    exponential_base,
    exponential_base_loss,
    grid_sensitivity,
    integerize,
    permute_and_flip,
    quantile_grid,
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
def test_quantile_grid_is_the_cell_midpoints():
    assert quantile_grid(0.0, 1.0, 4).tolist() == [0.125, 0.375, 0.625, 0.875]
    grid = quantile_grid(-3.0, 5.0, 1000)
    assert grid.shape == (1000,)
    assert np.all(np.diff(grid) > 0)
    assert grid[0] > -3.0
    assert grid[-1] < 5.0


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


def test_quantile_output_lies_on_the_grid():
    rng = random.Random(4)
    grid = quantile_grid(-1.0, 2.0, 37)
    for _ in range(200):
        draw = exact_quantile([0.1, 0.5, 1.7, 0.2], 0.5, -1.0, 2.0, 37, 1.0, "add_remove", rng)
        assert draw.value == grid[draw.index]
        assert draw.base == exponential_base(1.0, 2)


def test_quantile_clips_data_before_use():
    raw = [-5.0, 0.2, math.inf, 7.0, -math.inf, 0.6, math.nan]
    clipped = [0.0, 0.2, 1.0, 1.0, 0.0, 0.6, 0.0]
    for seed in range(20):
        a = exact_quantile(raw, 0.5, 0.0, 1.0, 50, 2.0, "add_remove", random.Random(seed))
        b = exact_quantile(clipped, 0.5, 0.0, 1.0, 50, 2.0, "add_remove", random.Random(seed))
        assert a == b


def _quantile_law(data, q, lower, upper, m, epsilon, neighbouring):
    """Brute force over every grid point: N, ũ and b^{ũ*-ũ} per point, exact Fractions."""
    q_t = Fraction(q).limit_denominator(10**6)
    num, den = q_t.numerator, q_t.denominator
    osc = {"add_remove": 2 * max(num, den - num), "replace_one": 2 * den}[neighbouring]
    base = exponential_base(epsilon, osc)
    clipped = [min(max(x, lower), upper) for x in data]
    step = (upper - lower) / m
    utils = []
    for i in range(m):
        theta = lower + (i + 0.5) * step
        utils.append(-abs(den * sum(x <= theta for x in clipped) - num * len(clipped)))
    weights = [base ** (max(utils) - u) for u in utils]
    return base, [w / sum(weights) for w in weights]


@pytest.mark.parametrize(
    ("q", "neighbouring", "epsilon"),
    [(0.5, "add_remove", 2.0), (0.5, "replace_one", 3.0), (0.3, "add_remove", 6.0)],
)
def test_quantile_matches_brute_force_law(q, neighbouring, epsilon):
    data = [0.05, 0.3, 0.3, 0.42, 0.8, 1.4, -0.2]
    m, n = 12, 20_000
    base, law = _quantile_law(data, q, 0.0, 1.0, m, epsilon, neighbouring)
    rng = random.Random(77)
    draws = []
    for _ in range(n):
        draw = exact_quantile(data, q, 0.0, 1.0, m, epsilon, neighbouring, rng)
        draws.append(draw.index)
    assert draw.base == base
    assert _chi2_pvalue(_tally(draws, m), law) > _ALPHA


def test_quantile_on_empty_data_is_uniform():
    rng = random.Random(8)
    draws = [
        exact_quantile([], 0.5, 0.0, 1.0, 5, 1.0, "add_remove", rng).index for _ in range(5000)
    ]
    assert _chi2_pvalue(_tally(draws, 5), [Fraction(1, 5)] * 5) > _ALPHA


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
        (lambda: exact_quantile([0.5], 1.5, 0, 1, 10, 1.0, "add_remove"), "q"),
        (lambda: exact_quantile([0.5], math.nan, 0, 1, 10, 1.0, "add_remove"), "q"),
        (lambda: exact_quantile([0.5], 0.5, 1, 0, 10, 1.0, "add_remove"), "upper"),
        (lambda: exact_quantile([0.5], 0.5, -math.inf, 0, 10, 1.0, "add_remove"), "lower"),
        (lambda: exact_quantile([0.5], 0.5, 0, 1, 0, 1.0, "add_remove"), "grid_size"),
        (lambda: exact_quantile([0.5], 0.5, 0, 1, 10**6 + 1, 1.0, "add_remove"), "grid_size"),
        (lambda: exact_quantile([0.5], 0.5, 0, 1, 10, 0.0, "add_remove"), "epsilon"),
        (lambda: exact_quantile([0.5], 0.5, 0, 1, 10, 1.0, "swap"), "neighbouring"),
        (lambda: exact_quantile([[0.5]], 0.5, 0, 1, 10, 1.0, "add_remove"), "data"),
        (lambda: exact_quantile(["a"], 0.5, 0, 1, 10, 1.0, "add_remove"), "data"),
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
            [exact_quantile([0.2, 0.7], 0.5, 0, 1, 64, 1.0, "replace_one", rng) for _ in range(50)],
            [permute_and_flip(_SCORES, 1.0, 1, rng).index for _ in range(50)],
        )

    assert run(123) == run(123)
    assert run(123) != run(124)


def test_default_source_is_the_csprng():
    draw = exact_exponential_mechanism(_SCORES, 1.0, 1)
    assert 0 <= draw.index < len(_SCORES)
    assert 0 <= exact_quantile([0.3], 0.5, 0, 1, 8, 1.0, "add_remove").index < 8
    assert 0 <= permute_and_flip(_SCORES, 1.0, 1).index < len(_SCORES)
