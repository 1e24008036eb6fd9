"""Public bounds never round below their exact values (``dp_core/privacy/bounds.py``), and are
exact where the exact value is a float."""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from dp_core.privacy.bounds import box_diameter, float_up, norm_up, sqrt_down, sqrt_up
from dp_core.privacy.utilities import ClippedMean, LinearRegression


@given(st.fractions(min_value=0, max_value=10**12))
def test_square_roots_bracket_the_exact_root_within_an_ulp(q: Fraction) -> None:
    low, high = sqrt_down(q), sqrt_up(q)
    assert low**2 <= q <= high**2
    assert high - low <= 2 * Fraction(math.ulp(float(high)))


_MAGNITUDES = st.one_of(st.just(0.0), st.floats(1e-6, 1e6), st.floats(-1e6, -1e-6))


@given(st.lists(_MAGNITUDES, min_size=1, max_size=6))
def test_a_rounded_up_norm_lies_within_two_floats_above_the_exact_norm(values: list[float]) -> None:
    exact_sq = sum(Fraction(v) ** 2 for v in values)
    bound = float_up(norm_up(values))
    assert Fraction(bound) ** 2 >= exact_sq
    two_below = math.nextafter(math.nextafter(bound, -math.inf), -math.inf)
    assert bound == 0 or Fraction(two_below) ** 2 < exact_sq


def test_exact_values_stay_exact() -> None:
    assert box_diameter([0.0], [10.0]) == 10.0
    assert box_diameter([0.0, 0.0], [3.0, 4.0]) == 5.0
    assert ClippedMean((0.0,), (10.0,)).sensitivity("add_remove", 5).delta_u == 10.0


def test_irrational_and_inexact_bounds_round_up() -> None:
    side = box_diameter([-0.1], [0.7])  # 0.7 - (-0.1) rounds below its exact value in floats
    assert Fraction(side) >= Fraction(0.7) - Fraction(-0.1) > Fraction(0.7 - -0.1)
    # least squares on the unit ball, features in [-1, 1]², targets in [-2, 2]:
    # G = (Y + R·X)·X = (2 + √2)·√2 = 2 + 2√2, irrational; its float must lie above it
    g = LinearRegression((-1.0, -1.0), (1.0, 1.0), -2.0, 2.0, 1.0).gradient_bound
    assert Fraction(g) - 2 > 0 and (Fraction(g) - 2) ** 2 >= 8
    assert g > 2 + 2 * math.sqrt(2)  # the float formula rounds below the exact value
