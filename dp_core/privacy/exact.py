"""Exact mechanisms: differentially private as implemented (certificate scope ``exact``).

Certificates note §7.3–7.4. Sampling decisions are integer or rational arithmetic on random
bits, so the released law is exactly the analysed one, free of §7.4's float failures:

* primitives: ``uniform_below``, ``bernoulli_rational``, ``bernoulli_exp_neg`` (32);
* the base-2 exponential mechanism (31): ``exponential_base``, ``exact_exponential_mechanism``,
  ``exact_grid_mechanism``; ``integerize`` and ``grid_sensitivity`` for public grid units;
* the exact continuous quantile (§9 item 1; accuracy note §4; no grid): ``exact_quantile``
  (``exact_quantile_samples`` for several draws), its exact law
  ``quantile_gap_probabilities`` and ``quantile_inverse_temperature``;
* permute-and-flip with exact acceptances (32): ``permute_and_flip``;
* ``em_probabilities``: the exact law of (31) as Fractions (a reference for tests, audits).

Floats appear only in public parameters, deterministic per-record preprocessing (clipping,
sorting, comparisons, rounding to grid units), the final rounding of the continuous quantile to
float64 (post-processing of an exactly drawn θ) and the reported ε_impl; never in a sampling
decision. Random bits come from a :class:`RandomBits`, by default a fresh
``secrets.SystemRandom()``; a seeded ``random.Random`` is for public test and audit runs only.
Running times depend on the data, so timings must never be reported (note §0, Diagnostics).
"""

from __future__ import annotations

import bisect
import decimal
import functools
import itertools
import math
import operator
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from numbers import Rational
from typing import Literal, Protocol

import numpy as np

from dp_core.errors import InvalidParameter

__all__ = [
    "BASE_BITS",
    "MAX_CANDIDATES",
    "QUANTILE_DENOMINATOR",
    "ExactDraw",
    "RandomBits",
    "bernoulli_exp_neg",
    "bernoulli_rational",
    "em_probabilities",
    "exact_exponential_mechanism",
    "exact_grid_mechanism",
    "exact_quantile",
    "exact_quantile_samples",
    "exponential_base",
    "exponential_base_loss",
    "grid_sensitivity",
    "integerize",
    "permute_and_flip",
    "quantile_gap_probabilities",
    "quantile_inverse_temperature",
    "quantile_osc_sensitivity",
    "uniform_below",
]

BASE_BITS = 64
"""y in the base b = x/2^y of (31): the base is e^{-λ} rounded up to a multiple of 2^-64."""

MAX_CANDIDATES = 10**6
"""Largest candidate set accepted; caps the O(m) work and memory per draw."""

QUANTILE_DENOMINATOR = 10**6
"""q is replaced by the nearest fraction num/den with den ≤ this (Fraction.limit_denominator)."""

Neighbouring = Literal["add_remove", "replace_one"]


class RandomBits(Protocol):
    """A source of uniform random bits (``secrets.SystemRandom`` and ``random.Random`` fit)."""

    def getrandbits(self, k: int, /) -> int: ...


@dataclass(frozen=True)
class ExactDraw:
    """One release of an exact mechanism:

    ``index``: the released candidate (grid index for grid mechanisms; for
    :func:`exact_quantile` the gap i of θ ∈ [x_(i), x_(i+1)] between order statistics).
    ``epsilon_implemented``: pure-DP loss as implemented, rounded up, never above the requested
    ε: (-log b)·Δ̃_osc for the EM (31), ε for permute-and-flip.
    ``zcdp_rho``: the zCDP charge, rounded up: ε_impl²/8 for the EM (bounded range, note §4),
    ε²/2 for permute-and-flip (pure DP only, §7.3).
    ``base``: the public base b = x/2^64 of the EM; None for permute-and-flip (e^{-λ} via (32)).
    ``value``: the released float θ of :func:`exact_quantile`; None otherwise.
    """

    index: int
    epsilon_implemented: float
    zcdp_rho: float
    base: Fraction | None
    value: float | None = None


# --------------------------------------------------------------------------- exact primitives
def _bits(rng: RandomBits | None) -> RandomBits:
    return secrets.SystemRandom() if rng is None else rng


def uniform_below(n: int, rng: RandomBits | None = None) -> int:
    """Exactly uniform integer in [0, n): rejection from bit_length(n-1) bits (< 2 rounds)."""
    if not isinstance(n, int) or n < 1:
        raise InvalidParameter("n", "must be a positive integer")
    if n == 1:
        return 0
    rng, k = _bits(rng), (n - 1).bit_length()
    while True:
        r = rng.getrandbits(k)
        if r < n:
            return r


def _bernoulli(num: int, den: int, rng: RandomBits) -> bool:
    return uniform_below(den, rng) < num


def _bernoulli_exp_neg_unit(num: int, den: int, rng: RandomBits) -> bool:
    """Bernoulli(e^{-γ}) for γ = num/den ∈ [0, 1], the first case of (32)."""
    k = 1
    while _bernoulli(num, den * k, rng):
        k += 1
    return k % 2 == 1


def _rational(value: object, field: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, Rational):
        raise InvalidParameter(field, "must be an int or a fractions.Fraction (exact rational)")
    return Fraction(value)


def bernoulli_rational(p: Fraction, rng: RandomBits | None = None) -> bool:
    """Exact Bernoulli(p) for rational p ∈ [0, 1]: ``uniform_below(den) < num``."""
    p = _rational(p, "p")
    if not 0 <= p <= 1:
        raise InvalidParameter("p", "must lie in [0, 1]")
    return _bernoulli(p.numerator, p.denominator, _bits(rng))


def bernoulli_exp_neg(gamma: Fraction, rng: RandomBits | None = None) -> bool:
    """Exact Bernoulli(e^{-γ}) for rational γ ≥ 0 (Canonne–Kamath–Steinke 2020, Alg. 1; (32)).

    For γ ∈ [0, 1]: draw A_k ~ Bernoulli(γ/k) for k = 1, 2, ... until the first A_k = 0 and
    return 1 iff that k is odd; P(k odd) = Σ_j (-γ)^j / j! = e^{-γ}. For γ > 1: return 1 iff
    ⌊γ⌋ draws of Bernoulli(e^{-1}) and one of Bernoulli(e^{-(γ-⌊γ⌋)}) all return 1, stopping at
    the first 0 (expected work O(1) whatever γ).
    """
    gamma = _rational(gamma, "gamma")
    if gamma < 0:
        raise InvalidParameter("gamma", "must be non-negative")
    rng, (whole, rest) = _bits(rng), divmod(gamma.numerator, gamma.denominator)
    if any(not _bernoulli_exp_neg_unit(1, 1, rng) for _ in range(whole)):
        return False
    return _bernoulli_exp_neg_unit(rest, gamma.denominator, rng)


# --------------------------------------------------------------------------- the base b of (31)
_DEC = decimal.Context(prec=100, Emin=-999999, Emax=999999)
_GUARD = decimal.Decimal("1e-80")  # dominates every rounding error of the 100-digit steps below
_LAMBDA_TINY_BASE = 45  # e^{-45} < 2^-64, so x = 1 for every λ ≥ 45


def _positive(value: object, field: str, *, zero: bool = False, real: bool = False) -> float:
    """A finite float > 0 (≥ 0 with ``zero``, any sign with ``real``), or InvalidParameter."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and (real or value > 0 or (zero and value == 0))):  # type: ignore[operator]
        sign = "" if real else " ≥ 0" if zero else " > 0"
        raise InvalidParameter(field, f"must be a finite number{sign}")
    return float(value)  # type: ignore[arg-type]


def _check_positive_int(value: object, field: str) -> int:
    try:
        out = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        out = 0
    if out < 1:
        raise InvalidParameter(field, "must be a positive integer")
    return out


@functools.lru_cache(maxsize=256)
def _base_numerator(lam: Fraction) -> int:
    """Smallest x ≥ 1 with x/2^64 ≥ e^{-λ} (up to a 10^-80 relative guard, which rounds up)."""
    if lam >= _LAMBDA_TINY_BASE:
        return 1
    lam_dec = _DEC.divide(decimal.Decimal(lam.numerator), decimal.Decimal(lam.denominator))
    upper = _DEC.multiply(_DEC.exp(-lam_dec), _DEC.add(1, _GUARD))
    scaled = _DEC.multiply(upper, decimal.Decimal(1 << BASE_BITS))
    return max(1, int(scaled.to_integral_value(rounding=decimal.ROUND_CEILING)))


def _ceil_float(value: decimal.Decimal | Fraction) -> float:
    """The smallest float ≥ value (value ≥ 0)."""
    out = float(value)
    exact = decimal.Decimal(out) if isinstance(value, decimal.Decimal) else Fraction(out)
    return math.nextafter(out, math.inf) if exact < value else out


@functools.lru_cache(maxsize=256)
def _implemented_loss(x: int, osc: int) -> decimal.Decimal:
    """An upper bound on (-log(x/2^64))·osc, exact to about 80 digits."""
    if x == 1 << BASE_BITS:
        return decimal.Decimal(0)
    neg_log_b = _DEC.subtract(_DEC.multiply(BASE_BITS, _DEC.ln(2)), _DEC.ln(x))
    return _DEC.multiply(_DEC.add(neg_log_b, _GUARD), osc)


def exponential_base(epsilon: float, osc_sensitivity: int) -> Fraction:
    """The public base b = x/2^64 of (31) for λ = ε/Δ̃_osc (exact rational: float ε / int).

    x is the smallest integer with b ≥ e^{-λ}, i.e. -log b ≤ λ, so weights b^{ũ*-ũ} give
    ε_impl = (-log b)·Δ̃_osc ≤ ε. b ∈ (0, 1]: b = 1 (uniform) only when λ < 2^-64, and
    b = 2^-64 for every λ ≥ 64·log 2, where ε_impl = 44.36·Δ̃_osc < ε.
    """
    osc = _check_positive_int(osc_sensitivity, "osc_sensitivity")
    lam = Fraction(_positive(epsilon, "epsilon")) / osc
    return Fraction(_base_numerator(lam), 1 << BASE_BITS)


def exponential_base_loss(epsilon: float, osc_sensitivity: int) -> float:
    """ε_impl = (-log b)·Δ̃_osc of (31), b = :func:`exponential_base`, rounded up; ≤ ε.

    A function of public parameters only: planners and certificates may call it.
    """
    base = exponential_base(epsilon, osc_sensitivity)
    loss = _implemented_loss(int(base * (1 << BASE_BITS)), operator.index(osc_sensitivity))
    return min(_ceil_float(loss), float(epsilon))


# --------------------------------------------------------------------------- exact weighted draw
def _pow_bounds(x: int, gap: int, prec: int) -> tuple[int, int]:
    """Integers lo ≤ (x/2^64)^gap · 2^prec ≤ hi by binary powering with floor / ceiling:
    products of lower (upper) bounds of numbers ≥ 0, rounded down (up), stay lower (upper)
    bounds. The width, O(gap) units of 2^-prec, only costs refinements."""
    shift = prec - BASE_BITS
    lo_b = x << shift if shift >= 0 else x >> -shift
    hi_b = x << shift if shift >= 0 else -((-x) >> -shift)
    lo = hi = 1 << prec
    while gap:
        if gap & 1:
            lo, hi = (lo * lo_b) >> prec, -((-hi * hi_b) >> prec)
        gap >>= 1
        if gap:
            lo_b, hi_b = (lo_b * lo_b) >> prec, -((-hi_b * hi_b) >> prec)
    return lo, min(hi, 1 << prec)


def _sample_index(
    counts: Sequence[int], gaps: Sequence[int], x: int, rng: RandomBits, prec: int = 0
) -> int:
    """Draw i with probability counts[i]·b^gaps[i] / Σ_j counts[j]·b^gaps[j], exactly.

    This is (31)'s "uniform integer below the total weight, then cumulative comparison" done
    lazily: V ∈ [0, 1) is revealed bit by bit and the weights are bounded at precision prec;
    i is returned only when every V in the revealed interval [v/2^t, (v+1)/2^t) satisfies
    C_{i-1} ≤ V·C_m < C_i for every weight vector within the bounds, which is the exact
    inversion rule. Otherwise more bits are drawn and prec doubles. The weights b^g are never
    expanded to their 64·g-bit exact form, so large gaps cost O(log g), not O(g²).
    """
    if prec <= 0:
        prec = 64 + 2 * max(gaps).bit_length() + len(gaps).bit_length()
    v = t = 0
    while True:
        cache: dict[int, tuple[int, int]] = {}
        lo_cum, hi_cum, lo_sum, hi_sum = [], [], 0, 0
        for c, g in zip(counts, gaps, strict=True):
            if g not in cache:
                cache[g] = _pow_bounds(x, g, prec)
            lo, hi = cache[g]
            lo_sum += c * lo
            hi_sum += c * hi
            lo_cum.append(lo_sum)
            hi_cum.append(hi_sum)
        more = prec + 16 - t
        v, t = (v << more) | rng.getrandbits(more), t + more
        i = _invert(lo_cum, hi_cum, v, t)
        if i is not None:
            return i
        prec *= 2


def _invert(lo_cum: list[int], hi_cum: list[int], v: int, t: int) -> int | None:
    """The index i that the exact inversion rule assigns to every V ∈ [v/2^t, (v+1)/2^t), or
    None when the bounds cannot decide it yet.

    lo_cum[i] ≤ C_i ≤ hi_cum[i] bound the cumulative weights C_i (C_m = the last); i is
    returned only when C_{i-1} ≤ V·C_m < C_i for every V in the interval and every weight
    vector within the bounds.
    """
    lo_sum, hi_sum = lo_cum[-1], hi_cum[-1]
    # smallest i with lo_cum[i]·2^t ≥ (v+1)·hi_sum, i.e. V·C_m < C_i for the whole interval
    i = bisect.bisect_left(lo_cum, -((-(v + 1) * hi_sum) >> t))
    if i < len(lo_cum) and (hi_cum[i - 1] if i else 0) << t <= v * lo_sum:
        return i
    return None


def _int_scores(scores: Sequence[int]) -> list[int]:
    try:
        out = [operator.index(s) for s in scores]
    except TypeError:
        raise InvalidParameter("scores", "must be integers (see integerize)") from None
    if not 1 <= len(out) <= MAX_CANDIDATES:
        raise InvalidParameter("scores", f"need between 1 and {MAX_CANDIDATES} candidates")
    return out


# --------------------------------------------------------------------------- mechanisms (31)
def _em_draw(
    counts: list[int], utilities: list[int], epsilon: float, osc: int, rng: RandomBits
) -> tuple[int, float, float, Fraction]:
    """(index, ε_impl, ρ, b) for the EM (31) over items with multiplicities ``counts``."""
    base = exponential_base(epsilon, osc)
    top = max(utilities)
    x = int(base * (1 << BASE_BITS))  # base.numerator is reduced; x is over 2^64
    i = _sample_index(counts, [top - u for u in utilities], x, rng)
    eps_impl = exponential_base_loss(epsilon, osc)
    return i, eps_impl, _ceil_float(Fraction(eps_impl) ** 2 / 8), base


def exact_exponential_mechanism(
    scores: Sequence[int], epsilon: float, osc_sensitivity: int, rng: RandomBits | None = None
) -> ExactDraw:
    """Base-2 exponential mechanism over a finite candidate set, exact (31).

    ``scores`` are m ≤ MAX_CANDIDATES integer utilities ũ_r (higher is better), e.g. from
    :func:`integerize`; ``osc_sensitivity`` is their public oscillation sensitivity Δ̃_osc in
    the same units (§9: B add/remove, 2B replace-one; 2Δu always suffices); ``rng`` defaults
    to a fresh ``secrets.SystemRandom()``. Candidate r is released with probability
    b^{ũ*-ũ_r} / Σ_s b^{ũ*-ũ_s}, b = :func:`exponential_base` (ε, Δ̃_osc); the draw reports
    ε_impl = (-log b)·Δ̃_osc ≤ ε and ρ = ε_impl²/8. Any score range is accepted, since the
    sampler never expands b^gap exactly (see ``_sample_index``).
    """
    utilities = _int_scores(scores)
    osc = _check_positive_int(osc_sensitivity, "osc_sensitivity")
    index, eps_impl, rho, base = _em_draw([1] * len(utilities), utilities, epsilon, osc, _bits(rng))
    return ExactDraw(index, eps_impl, rho, base)


def exact_grid_mechanism(
    integer_scores_on_grid: Sequence[int],
    epsilon: float,
    osc_sensitivity: int,
    rng: RandomBits | None = None,
) -> ExactDraw:
    """EM over a public grid or net of a low-dimensional domain (§7.3, d ≤ 3), exact.

    The finite EM (31) over the grid points' integer scores in the caller's order (the caller
    maps ``index`` back): scores from :func:`integerize`, Δ̃_osc from :func:`grid_sensitivity`.
    Utility loss: at most G·mesh plus the log|grid| term of (28).
    """
    return exact_exponential_mechanism(integer_scores_on_grid, epsilon, osc_sensitivity, rng)


def integerize(values: Sequence[float], quantum: float, *, bound: float | None = None) -> list[int]:
    """Per-record contributions in public grid units: ``round(ℓ/q)`` (31).

    ``round`` is Python's round-half-even of the float quotient fl(ℓ/q). With ``bound`` = B
    the contributions are first clipped to [0, B] (NaN counts as B), which makes the
    sensitivity claim of :func:`grid_sensitivity` hold by construction; without it the
    caller guarantees 0 ≤ ℓ ≤ B, and a non-finite ℓ (a broken contract) raises.
    """
    _positive(quantum, "quantum")
    if bound is not None:
        bound = _positive(bound, "bound", zero=True)
        values = [bound if math.isnan(v) else min(max(v, 0.0), bound) for v in values]
    try:
        return [round(v / quantum) for v in values]
    except (ValueError, OverflowError):
        raise InvalidParameter("values", "must be finite; pass bound to clip them") from None


def grid_sensitivity(bound: float, quantum: float) -> int:
    """⌈B/q⌉: the sensitivity, in grid units, of one record's contribution ``integerize``d.

    For 0 ≤ ℓ ≤ B, IEEE division and rounding are monotone, so 0 ≤ round(fl(ℓ/q)) ≤
    round(fl(B/q)) ≤ ⌈fl(B/q)⌉, computed here with the same float operations. For a sum-form
    utility ũ = r̃(θ) - Σ_z round(ℓ(θ; z)/q) (§9 lemma) this gives Δ̃u = Δ̃_osc = ⌈B/q⌉ under
    add/remove and Δ̃_osc ≤ 2⌈B/q⌉ under replace-one. The rounding changes the utility by at
    most n·q/2 (accuracy only, not privacy).
    """
    ratio = _positive(bound, "bound") / _positive(quantum, "quantum")
    if not math.isfinite(ratio):
        raise InvalidParameter("quantum", "bound/quantum overflows")
    return max(1, math.ceil(ratio))


def em_probabilities(
    scores: Sequence[int], base: Fraction, counts: Sequence[int] | None = None
) -> list[Fraction]:
    """Exact law counts[r]·b^{ũ*-ũ_r} / Σ_s counts[s]·b^{ũ*-ũ_s} of (31) as Fractions.

    Big-integer numerators over the common denominator den(b)^{max gap}: memory grows like
    m·(max gap)·64 bits, so this is a reference for tests and audits, not a sampler.
    """
    utilities = _int_scores(scores)
    base = _rational(base, "base")
    if not 0 < base <= 1:
        raise InvalidParameter("base", "must lie in (0, 1]")
    mult = [1] * len(utilities) if counts is None else [operator.index(c) for c in counts]
    (top, bottom), (num, den) = (max(utilities), min(utilities)), base.as_integer_ratio()
    pairs = zip(mult, utilities, strict=True)
    weights = [c * num ** (top - u) * den ** (u - bottom) for c, u in pairs]
    return [Fraction(w, total) for total in [sum(weights)] for w in weights]


# --------------------------------------------------------------------------- exact quantile
def _check_bounds(lower: float, upper: float) -> None:
    lower, upper = _positive(lower, "lower", real=True), _positive(upper, "upper", real=True)
    if not (lower < upper and math.isfinite(upper - lower)):
        raise InvalidParameter("upper", "need finite lower < upper")


_QUANTILE_OSC: dict[str, Callable[[int, int], int]] = {
    "add_remove": lambda num, den: 2 * max(num, den - num),
    "replace_one": lambda num, den: 2 * den,
}


def _q_tilde(q: float) -> Fraction:
    return Fraction(q).limit_denominator(QUANTILE_DENOMINATOR)


def quantile_osc_sensitivity(q: float, neighbouring: Neighbouring) -> int:
    """Δ̃_osc of ũ = den·u = -|den·N - num·n|, q̃ = num/den (§9 item 1): den·2max(q̃, 1-q̃)
    = 2max(num, den-num) (add/remove), den·2 (replace-one); q̃ = Fraction(q).limit_denominator(
    10^6)."""
    if isinstance(q, bool) or not (isinstance(q, int | float) and 0 <= q <= 1):
        raise InvalidParameter("q", "must be a number in [0, 1]")
    if neighbouring not in _QUANTILE_OSC:
        raise InvalidParameter("neighbouring", "must be 'add_remove' or 'replace_one'")
    q_tilde = _q_tilde(q)
    return _QUANTILE_OSC[neighbouring](q_tilde.numerator, q_tilde.denominator)


def quantile_inverse_temperature(epsilon: float, q: float, neighbouring: Neighbouring) -> float:
    """The λ that :func:`exact_quantile` samples, in the units of u = -|N_D(θ) - q̃·n|:
    (-log b)·den with b = :func:`exponential_base` (ε, Δ̃_osc), since ũ = den·u; rounded up.

    Equals ε/Δ_osc(u) = ε/(2max(q̃, 1-q̃)) (add/remove) or ε/2 (replace-one) up to the
    rounding of b (a relative 2^-64/b) and q̃ ≠ q (at most 10^-6 relative); a function of
    public parameters only.
    """
    osc = quantile_osc_sensitivity(q, neighbouring)
    den = _q_tilde(q).denominator
    x = int(exponential_base(epsilon, osc) * (1 << BASE_BITS))
    return _ceil_float(_implemented_loss(x, den))


def _clipped_sorted(data: Sequence[float], lower: float, upper: float) -> np.ndarray:
    """The data as float64, NaN → lower, clipped to [lower, upper], sorted (deterministic)."""
    try:
        x = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        x = np.empty((0, 0))
    if x.ndim != 1:
        raise InvalidParameter("data", "must be a 1-D sequence of numbers")
    return np.sort(np.clip(np.where(np.isnan(x), lower, x), lower, upper))


def _quantile_setup(
    q: float, lower: float, upper: float, epsilon: float, neighbouring: Neighbouring
) -> tuple[int, int, int, Fraction]:
    """(num, den, Δ̃_osc, b) from public parameters, validated."""
    _check_bounds(lower, upper)
    osc = quantile_osc_sensitivity(q, neighbouring)
    q_tilde = _q_tilde(q)
    return q_tilde.numerator, q_tilde.denominator, osc, exponential_base(epsilon, osc)


def _dyadic_scale(values: np.ndarray) -> int:
    """An s ≥ 0 with v·2^s an integer for every float64 v in ``values`` (v = m·2^(e-53))."""
    exponents = np.frexp(values[values != 0])[1]
    return max(0, 53 - int(exponents.min())) if exponents.size else 0


def _scaled(value: float, scale: int) -> int:
    """value·2^scale as an exact integer (value a float64 with denominator ≤ 2^scale)."""
    num, den = value.as_integer_ratio()
    return num << (scale - den.bit_length() + 1)


_WINDOW = 32
"""Initial half-width, in gaps, of the window around the mode of ũ that ``_GapLaw`` expands."""
_TAIL_BITS = 32
"""The first window grows until the gaps outside it weigh at most 2^-32 of those inside."""


@dataclass(frozen=True)
class _Pass:
    """One refinement level of ``_GapLaw``: window gaps [start, start + size), precision prec and
    bounds lo_cum ≤ C ≤ hi_cum of the cumulative weights of [left tail, window..., right tail]."""

    start: int
    size: int
    prec: int
    lo_cum: list[int]
    hi_cum: list[int]
    tails: bool


class _GapLaw:
    """Draws j with probability L_j·b^{gaps[j]} / Σ_k L_k·b^{gaps[k]}, L_j = edges[j+1] - edges[j].

    ``edges`` are increasing float64 (exact dyadic rationals, so L_j·2^s is an integer for a
    common s) and ``gaps`` (length len(edges) - 1) is non-increasing then non-decreasing, as
    ũ* - ũ is for the quantile. This is ``_sample_index`` with the lengths as integer
    multiplicities, restricted to a window of gaps around the smallest gap: the gaps left
    (right) of the window count as one item whose weight lies in [0, L·b^g], L their total
    length and g the gap next to the window, since b ≤ 1 and the gaps grow away from the mode.
    The same inversion rule (``_invert``) returns a window gap only when its choice is certain
    for every weight within the bounds, so the law is exact; otherwise more bits of the same V
    are drawn at the next pass (window and precision doubled). The passes depend on the law
    only, so they are computed once and shared by every draw. Work: O(window) integer
    operations per pass, not O(n): about (1/λ)·log(range/gap) gaps; all of them when λ is tiny.
    """

    def __init__(self, edges: np.ndarray, gaps: np.ndarray, x: int) -> None:
        self.edges, self.gaps, self.x = edges, gaps, x
        self.peak = int(np.argmin(gaps))
        self.scale = _dyadic_scale(edges)
        self.first = _scaled(float(edges[0]), self.scale)
        self.last = _scaled(float(edges[-1]), self.scale)
        self.passes: list[_Pass] = []

    def _build(self, half: int, prec: int) -> tuple[_Pass, int, int]:
        """The pass for window half-width ``half`` and precision at least ``prec``; also the
        window's lower-bound weight and the tails' upper bound."""
        m, gaps = len(self.gaps), self.gaps
        start, stop = max(0, self.peak - half), min(m, self.peak + half + 1)
        ends = [_scaled(e, self.scale) for e in self.edges[start : stop + 1].tolist()]
        window = gaps[start:stop].tolist()
        left = int(gaps[start - 1]) if start > 0 else None
        right = int(gaps[stop]) if stop < m else None
        top = max(window + [g for g in (left, right) if g is not None])
        prec = max(prec, 64 + 2 * top.bit_length() + (len(window) + 2).bit_length())
        pows = {g: _pow_bounds(self.x, g, prec) for g in {*window, left, right} if g is not None}
        left_hi = (ends[0] - self.first) * pows[left][1] if left is not None else 0
        right_hi = (self.last - ends[-1]) * pows[right][1] if right is not None else 0
        lo_cum, hi_cum, lo_sum, hi_sum = [0], [left_hi], 0, left_hi
        for j, g in enumerate(window):
            lo, hi = pows[g]
            lo_sum += (ends[j + 1] - ends[j]) * lo
            hi_sum += (ends[j + 1] - ends[j]) * hi
            lo_cum.append(lo_sum)
            hi_cum.append(hi_sum)
        lo_cum.append(lo_sum)
        hi_cum.append(hi_sum + right_hi)
        tails = left is not None or right is not None
        return _Pass(start, len(window), prec, lo_cum, hi_cum, tails), lo_sum, left_hi + right_hi

    def _pass(self, k: int) -> _Pass:
        while len(self.passes) <= k:
            if not self.passes:  # widen until the tails are negligible (no bits drawn yet)
                half = _WINDOW
                level, inside, outside = self._build(half, 0)
                while level.tails and outside << _TAIL_BITS > inside:
                    half *= 2
                    level, inside, outside = self._build(half, 0)
            else:
                last = self.passes[-1]
                half = max(self.peak - last.start, last.start + last.size - 1 - self.peak)
                level = self._build(2 * half if last.tails else half, 2 * last.prec)[0]
            self.passes.append(level)
        return self.passes[k]

    def draw(self, rng: RandomBits) -> int:
        v = t = k = 0
        while True:
            level = self._pass(k)
            more = level.prec + 16 - t
            v, t = (v << more) | rng.getrandbits(more), t + more
            i = _invert(level.lo_cum, level.hi_cum, v, t)
            if i is not None and 1 <= i <= level.size:  # the tail items have lower bound 0
                return level.start + i - 1
            k += 1


def _uniform_rounded(a: float, c: float, rng: RandomBits) -> float:
    """fl(θ) for θ ~ Uniform[a, c] drawn exactly, fl = round to the nearest float64 (a < c).

    θ = a + (c - a)·V with V's bits revealed 64, then 32 at a time: once every θ in the
    revealed interval [lo, hi) has the same nearest float y = fl(lo) (hi ≤ the midpoint between
    y and the next float up, or y = c), y is returned. Since fl is monotone, P(y) = |fl^-1(y) ∩
    [a, c]|/(c - a) exactly: a deterministic rounding of an exactly uniform θ, i.e.
    post-processing. (Rounding a + (c - a)·U for a U of fixed precision would not be: its
    outputs near a fine float grid would depend on c - a, the data; cf. Mironov 2012.)
    Integer arithmetic only: with a·2^s = A, c·2^s = C, lo = (A·2^t + (C - A)·v)/2^(s+t),
    and fl(lo) is Python's correctly rounded (half-even) integer true division.
    """
    scale = _dyadic_scale(np.asarray([a, c]))
    start, width = _scaled(a, scale), _scaled(c, scale) - _scaled(a, scale)
    v, t = 0, 0
    while True:
        more = 64 if t == 0 else 32
        v, t = (v << more) | rng.getrandbits(more), t + more
        lo, hi, den = (start << t) + width * v, (start << t) + width * (v + 1), 1 << (scale + t)
        y = lo / den
        if y >= c:
            return y
        # hi/den ≤ (y + y⁺)/2, y⁺ the next float up; both dyadic: compare integers
        (py, qy), (pn, qn) = y.as_integer_ratio(), math.nextafter(y, math.inf).as_integer_ratio()
        if 2 * hi * qy * qn <= (py * qn + pn * qy) * den:
            return y


def _quantile_gaps(
    x: np.ndarray, num: int, den: int, lower: float, upper: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(edges, N, ũ* - ũ) over the gaps of positive length: edges = the distinct values of
    {lower, upper} ∪ x; on the open gap (edges[j], edges[j+1]) N_D = N[j] = #{x ≤ edges[j]}."""
    edges = np.unique(np.concatenate(([lower, upper], x)))
    below = np.searchsorted(x, edges[:-1], side="right").astype(np.int64)
    scores = np.abs(den * below - num * len(x))
    return edges, below, scores - scores.min()


def exact_quantile(
    data: Sequence[float],
    q: float,
    lower: float,
    upper: float,
    epsilon: float,
    neighbouring: Neighbouring,
    rng: RandomBits | None = None,
) -> ExactDraw:
    """Exact ε-DP q-quantile, the continuous exponential mechanism (Smith 2011; accuracy §4).

    ``data`` (n floats) are clipped to the public [lower, upper] (NaN counts as ``lower``) and
    sorted: x_(1) ≤ ... ≤ x_(n), with x_(0) = lower and x_(n+1) = upper. q ∈ [0, 1] is replaced
    by q̃ = num/den = Fraction(q).limit_denominator(10^6). The released θ ∈ [lower, upper] has
    density ∝ b^{ũ*-ũ(θ)} on [lower, upper] for the integer rank utility ũ(θ) = -|den·N_D(θ) -
    num·n|, N_D(θ) = #{x ≤ θ}, b = :func:`exponential_base` (ε, Δ̃_osc), Δ̃_osc =
    :func:`quantile_osc_sensitivity` (q, neighbouring): the base-2 EM (31) on the continuum,
    with density ratio ≤ b^{-Δ̃_osc} = e^{ε_impl} between neighbours at every θ, and no grid.
    In the units of u = ũ/den its inverse temperature is :func:`quantile_inverse_temperature`.

    The density is constant, ũ_i = -|den·i - num·n|, on each gap (x_(i), x_(i+1)), i = 0..n:

    1. choose gap i with probability (x_(i+1) - x_(i))·b^{ũ*-ũ_i} / Σ_k (same), exactly: the
       endpoints are float64, so the lengths times 2^s (one common s) are integers and act as
       integer multiplicities in the lazy exact inversion of (31) (``_GapLaw``; ties and
       points at the bounds give gaps of length 0, weight 0, never chosen);
    2. release fl(θ), θ uniform on [x_(i), x_(i+1)], by revealing random bits of θ until its
       nearest float64 is decided (``_uniform_rounded``); rounding is post-processing.

    No floating point enters a sampling decision: clipping, sorting and the comparisons are
    deterministic per-record preprocessing; b and every weight are exact rationals; bits come
    from ``rng`` (default a fresh ``secrets.SystemRandom()``). ``index`` is i (= N_D(θ) on the
    open gap), ``value`` the released float in [lower, upper]; ε_impl = (-log b)·Δ̃_osc ≤ ε,
    ρ = ε_impl²/8. Work: O(n log n) to sort plus O(window) exact operations around the mode
    (see ``_GapLaw``); :func:`quantile_gap_probabilities` is the exact law for tests.
    """
    return exact_quantile_samples(data, q, lower, upper, epsilon, neighbouring, 1, rng)[0]


def exact_quantile_samples(
    data: Sequence[float],
    q: float,
    lower: float,
    upper: float,
    epsilon: float,
    neighbouring: Neighbouring,
    n_samples: int,
    rng: RandomBits | None = None,
) -> list[ExactDraw]:
    """``n_samples`` independent draws of :func:`exact_quantile`, each ε-DP (the caller
    accounts for their composition); the data are sorted and the law prepared once."""
    num, den, osc, base = _quantile_setup(q, lower, upper, epsilon, neighbouring)
    count = _check_positive_int(n_samples, "n_samples")
    rng = _bits(rng)
    x = _clipped_sorted(data, lower, upper)
    edges, below, gaps = _quantile_gaps(x, num, den, float(lower), float(upper))
    law = _GapLaw(edges, gaps, int(base * (1 << BASE_BITS)))
    eps_impl = exponential_base_loss(epsilon, osc)
    rho = _ceil_float(Fraction(eps_impl) ** 2 / 8)
    out = []
    for _ in range(count):
        j = law.draw(rng)
        value = _uniform_rounded(float(edges[j]), float(edges[j + 1]), rng)
        out.append(ExactDraw(int(below[j]), eps_impl, rho, base, value))
    return out


def quantile_gap_probabilities(
    data: Sequence[float],
    q: float,
    lower: float,
    upper: float,
    epsilon: float,
    neighbouring: Neighbouring,
) -> list[tuple[float, float, Fraction]]:
    """The exact law of :func:`exact_quantile`'s gap: (x_(i), x_(i+1), P(i)) for i = 0..n.

    P(i) = L_i·b^{ũ*-ũ_i} / Σ_k L_k·b^{ũ*-ũ_k} as a Fraction, L_i = x_(i+1) - x_(i) exactly
    (0 for ties), through :func:`em_probabilities` with the lengths as integer counts; θ is
    uniform on the gap given i. Big integers of about 64·max(ũ*-ũ) bits per gap: a reference
    for tests and audits on small n, not a sampler.
    """
    num, den, _, base = _quantile_setup(q, lower, upper, epsilon, neighbouring)
    x = _clipped_sorted(data, lower, upper)
    ends = [float(lower), *x.tolist(), float(upper)]
    scale = _dyadic_scale(np.asarray(ends))
    ints = [_scaled(e, scale) for e in ends]
    counts = [b - a for a, b in itertools.pairwise(ints)]
    scores = [-abs(den * i - num * len(x)) for i in range(len(x) + 1)]
    probs = em_probabilities(scores, base, counts)
    return [(ends[i], ends[i + 1], p) for i, p in enumerate(probs)]


# --------------------------------------------------------------------------- permute-and-flip
def permute_and_flip(
    scores: Sequence[int], epsilon: float, sensitivity: int, rng: RandomBits | None = None
) -> ExactDraw:
    """Permute-and-flip (McKenna–Sheldon 2020) with exact acceptances (§7.3, (32)).

    Visits the candidates in a uniformly random order (Fisher–Yates with
    :func:`uniform_below`) and accepts r with probability exp(-λ(ũ* - ũ_r)), λ = ε/(2Δu) as
    an exact rational, drawn by :func:`bernoulli_exp_neg`; the best candidate always accepts,
    so one pass suffices. Pure ε-DP (``epsilon_implemented`` = ε) but not known to be bounded
    range: ``zcdp_rho`` = ε²/2, not ε²/8; the ledger must charge it.
    """
    utilities = _int_scores(scores)
    eps = _positive(epsilon, "epsilon")
    lam = Fraction(eps) / (2 * _check_positive_int(sensitivity, "sensitivity"))
    rng, top, order = _bits(rng), max(utilities), list(range(len(utilities)))
    for i in range(len(order)):
        j = i + uniform_below(len(order) - i, rng)
        order[i], order[j] = order[j], order[i]
        if bernoulli_exp_neg(lam * (top - utilities[order[i]]), rng):
            return ExactDraw(order[i], eps, _ceil_float(Fraction(eps) ** 2 / 2), None)
    raise AssertionError("unreachable: the best candidate accepts with probability 1")
