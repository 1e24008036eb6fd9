"""Public constants as exact rationals, rounded up to floats only at the end.

A sensitivity computed in floats can round below its exact value (√2 + 2·√2 ... one unit in the
last place below). The families' bounds (a box's diameter, a feature norm, a residual bound) are
computed here from the float inputs as exact :class:`~fractions.Fraction` values, with square
roots bounded outward (:func:`sqrt_up`, checked by squaring), and turned into floats by
:func:`float_up`: never below the exact value, and equal to it when it is a float (the diameter
of [0, 10] is exactly 10). :mod:`dp_core.privacy.utilities.intervals` builds on the same
helpers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction

__all__ = [
    "box_diameter",
    "float_down",
    "float_up",
    "norm_up",
    "sqrt_down",
    "sqrt_up",
    "square_up",
    "up_ulps",
]


def float_down(q: Fraction, ulps: int = 0) -> float:
    """The largest float <= q, then ``ulps`` further down (OverflowError past the floats)."""
    v = float(q)
    if Fraction(v) > q:
        v = math.nextafter(v, -math.inf)
    for _ in range(ulps):
        v = math.nextafter(v, -math.inf)
    return v


def float_up(q: Fraction, ulps: int = 0) -> float:
    """The smallest float >= q, then ``ulps`` further up."""
    return -float_down(-q, ulps)


def sqrt_down(q: Fraction) -> Fraction:
    """A rational <= sqrt(q) (q >= 0) within an ulp or two; exact where sqrt(q) is a float."""
    s = math.sqrt(float_down(q))
    while Fraction(s) ** 2 > q:
        s = math.nextafter(s, -math.inf)
    return Fraction(s)


def sqrt_up(q: Fraction) -> Fraction:
    """A rational >= sqrt(q) (q >= 0) within an ulp or two; exact where sqrt(q) is a float."""
    s = math.sqrt(float_up(q))
    while Fraction(s) ** 2 < q:
        s = math.nextafter(s, math.inf)
    return Fraction(s)


def norm_up(values: Iterable[float | Fraction]) -> Fraction:
    """An upper bound of the Euclidean norm of ``values``, exact where it is a float."""
    return sqrt_up(sum((Fraction(v) ** 2 for v in values), Fraction(0)))


def box_diameter(lower: Iterable[float], upper: Iterable[float]) -> float:
    """The diameter of the box [lower, upper], rounded up (exact where it is a float)."""
    sides = (Fraction(hi) - Fraction(lo) for lo, hi in zip(lower, upper, strict=True))
    return float_up(norm_up(sides))


def square_up(value: float) -> float:
    """value², rounded up."""
    return float_up(Fraction(value) ** 2)


def up_ulps(value: float, ulps: int) -> float:
    """``value`` moved ``ulps`` floats up: for a result of libm functions, each accurate within
    an ulp, that are increasing in the rounded-up inputs."""
    for _ in range(ulps):
        value = math.nextafter(value, math.inf)
    return value
