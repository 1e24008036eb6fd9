"""Rigorous enclosures of a custom loss's SymPy expressions over boxes (issue 19).

:func:`enclose` walks a SymPy tree built by :mod:`codegen` (ℓ or one of its derivatives) with
every symbol ranging over a closed interval and returns an interval holding every value the
expression takes there. It is an inclusion, never an estimate:

* endpoints are exact rationals (:class:`fractions.Fraction`; every float is one): + - × /
  and integer powers are exact, so ``|θ - x| <= 10`` on [0, 10]² comes out as exactly 10;
* ``exp``, ``log``, ``log1p``, ``tanh``, ``sigmoid``, ``softplus`` and ``sqrt`` are increasing:
  they are evaluated in floats at inputs rounded outward, and the results are widened by a few
  ulps (libm is accurate within one; sqrt's ends are checked by squaring);
* a node it does not know, a singularity inside the box (log of a non-positive number, a
  division or negative power by an interval holding 0, sqrt of a negative number), an overflow
  or a non-finite number raises :class:`Unbounded`: the caller then proves nothing;
* ``Piecewise``, ``Heaviside``, ``sign``, ``sin`` and ``cos`` enclose by the hull of what they
  can take, whatever the conditions.

It is used to prove that a custom loss's clip never binds (:mod:`quadratic`), so it only ever
widens. Runs in the SymPy child (:mod:`symbolic`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction

import sympy as sp
from sympy.codegen.cfunctions import log1p

from dp_core.privacy.bounds import float_down, float_up, sqrt_down, sqrt_up
from dp_core.privacy.utilities.codegen import sigmoid, softplus

__all__ = ["LARGEST", "Interval", "Unbounded", "enclose"]

Interval = tuple[Fraction, Fraction]
_MAX_POWER = 64
LARGEST = Fraction(10) ** 100
"""No node may reach this magnitude: the kernel's float evaluation of every node then stays far
from overflow, and a reciprocal far from a float underflowing to 0."""


class Unbounded(ValueError):
    """The expression has no finite enclosure this walk can prove on the box."""


def _exact(v: float) -> Fraction:
    if not math.isfinite(v):
        raise Unbounded
    return Fraction(v)


def _mul(a: Interval, b: Interval) -> Interval:
    products = (a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1])
    return min(products), max(products)


def _reciprocal(a: Interval) -> Interval:
    if a[0] <= 0 <= a[1]:
        raise Unbounded
    return 1 / a[1], 1 / a[0]


def _abs(a: Interval) -> Interval:
    if a[0] >= 0:
        return a
    if a[1] <= 0:
        return -a[1], -a[0]
    return Fraction(0), max(-a[0], a[1])


def _power(a: Interval, k: int) -> Interval:
    """a**k for an integer k (exact; |k| is small: the grammar bounds exponents)."""
    if abs(k) > _MAX_POWER:
        raise Unbounded
    if k < 0:
        return _reciprocal(_power(a, -k))
    if k % 2 == 1:
        return a[0] ** k, a[1] ** k
    m = _abs(a)
    return m[0] ** k, m[1] ** k


def _sqrt(a: Interval) -> Interval:
    if a[0] < 0:
        raise Unbounded
    return sqrt_down(a[0]), sqrt_up(a[1])


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


def _softplus(v: float) -> float:
    return v + math.log1p(math.exp(-v)) if v > 0 else math.log1p(math.exp(v))


@dataclass(frozen=True)
class _Increasing:
    """An increasing function: defined above ``floor`` (an enclosure reaching it is
    :class:`Unbounded`), values within [``lowest``, ``highest``], accurate within ``ulps``."""

    fn: Callable[[float], float]
    ulps: int = 2
    floor: float = -math.inf
    lowest: float = -math.inf
    highest: float = math.inf

    def __call__(self, a: Interval) -> Interval:
        if a[0] <= self.floor:
            raise Unbounded
        try:
            lo = math.nextafter(self.fn(float_down(a[0])), -math.inf)
            hi = math.nextafter(self.fn(float_up(a[1])), math.inf)
        except (OverflowError, ValueError):
            raise Unbounded from None
        for _ in range(self.ulps - 1):
            lo, hi = math.nextafter(lo, -math.inf), math.nextafter(hi, math.inf)
        return _exact(max(lo, self.lowest)), _exact(min(hi, self.highest))


_MONOTONE: dict[type, _Increasing] = {
    sp.exp: _Increasing(math.exp, lowest=0.0),
    sp.log: _Increasing(math.log, floor=0.0),
    log1p: _Increasing(math.log1p, floor=-1.0),
    sp.tanh: _Increasing(math.tanh, lowest=-1.0, highest=1.0),
    sigmoid: _Increasing(_sigmoid, ulps=4, lowest=0.0, highest=1.0),
    softplus: _Increasing(_softplus, ulps=4, lowest=0.0),
}
_HULL: dict[type, Interval] = {
    sp.sin: (Fraction(-1), Fraction(1)),
    sp.cos: (Fraction(-1), Fraction(1)),
    sp.sign: (Fraction(-1), Fraction(1)),
    sp.Heaviside: (Fraction(0), Fraction(1)),
}


def _hull(parts: list[Interval]) -> Interval:
    return min(p[0] for p in parts), max(p[1] for p in parts)


def enclose(
    expr: sp.Basic, ranges: Mapping[sp.Symbol, tuple[float, float] | Interval]
) -> tuple[Interval, Fraction]:
    """An interval holding every value of ``expr`` with each symbol s in ``ranges[s]``, and the
    peak: the largest magnitude any node of the tree can take there (what bounds the rounding
    error of evaluating it in floats); :class:`Unbounded` when no finite enclosure is proved or
    a node can reach :data:`LARGEST`."""
    walk = _Enclosure(ranges)
    return walk(expr), walk.peak


class _Enclosure:
    def __init__(self, ranges: Mapping[sp.Symbol, tuple[float, float] | Interval]) -> None:
        self.ranges = ranges
        self.memo: dict[sp.Basic, Interval] = {}
        self.peak = Fraction(0)

    def __call__(self, expr: sp.Basic) -> Interval:
        cached = self.memo.get(expr)
        if cached is None:
            cached = self.memo[expr] = self._node(expr)
            magnitude = max(-cached[0], cached[1])
            if magnitude >= LARGEST:
                raise Unbounded
            self.peak = max(self.peak, magnitude)
        return cached

    def _node(self, expr: sp.Basic) -> Interval:
        if isinstance(expr, sp.Symbol):
            if expr not in self.ranges:
                raise Unbounded
            lo, hi = self.ranges[expr]
            return _exact(lo), _exact(hi)
        if isinstance(expr, sp.Rational):  # Integer too: exact
            return Fraction(int(expr.p), int(expr.q)), Fraction(int(expr.p), int(expr.q))
        if isinstance(expr, sp.Float):  # what the kernel prints: repr(float(expr))
            value = _exact(float(expr))
            return value, value
        if isinstance(expr, sp.NumberSymbol):  # pi, E: within half an ulp of the float
            v = float(expr)
            return _exact(math.nextafter(v, -math.inf)), _exact(math.nextafter(v, math.inf))
        if isinstance(expr, sp.Piecewise):
            return _hull([self(branch) for branch, _ in expr.args])
        args = [self(a) for a in expr.args]
        if isinstance(expr, sp.Add):
            return sum(a[0] for a in args), sum(a[1] for a in args)
        if isinstance(expr, sp.Mul):
            out = args[0]
            for a in args[1:]:
                out = _mul(out, a)
            return out
        if isinstance(expr, sp.Pow):
            exponent = expr.args[1]
            if exponent.is_Integer:
                return _power(args[0], int(exponent))
            if exponent == sp.Rational(1, 2):
                return _sqrt(args[0])
            if exponent == sp.Rational(-1, 2):
                return _reciprocal(_sqrt(args[0]))
            raise Unbounded
        if isinstance(expr, (sp.Min, sp.Max)):
            pick = min if isinstance(expr, sp.Min) else max
            return pick(a[0] for a in args), pick(a[1] for a in args)
        if isinstance(expr, sp.Abs):
            return _abs(args[0])
        for kind, increasing in _MONOTONE.items():
            if isinstance(expr, kind):
                return increasing(args[0])
        for kind, hull in _HULL.items():
            if isinstance(expr, kind):
                return hull
        raise Unbounded
