"""fastexp: the vectorisable exp is within 2 ulp, exact at its special values, monotone; fma is
a single rounding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

from dp_core.engine.fastexp import EXP_UNDERFLOW, exp, fma, log1p_unit

_LO = -708.0
_HI = 709.78
_MAX_ULP = 2.0
# ln(DBL_MAX) rounded to float64 (slightly below the exact value): exp there is finite, and the
# next double up must already give inf.
_LN_DBL_MAX = 709.782712893384


@njit(cache=False)
def _exp_many(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = exp(x[i])
    return out


@njit(cache=False)
def _fma(a, b, c):
    return fma(a, b, c)


def _has_extended_long_double() -> bool:
    return np.finfo(np.longdouble).nmant >= 63


def _ulp_error(x: np.ndarray) -> np.ndarray:
    """|exp_engine(x) - exp(x)| in units of the last place of the float64 result.

    The reference is exp in 80-bit long double (64-bit mantissa: 11 extra bits, so its own
    error is below 1/1000 ulp of float64) where the platform has it, else numpy.exp.
    """
    got = _exp_many(x)
    if _has_extended_long_double():
        ref = np.exp(x.astype(np.longdouble))
        ulp = np.spacing(ref.astype(np.float64)).astype(np.longdouble)
        return np.asarray(np.abs((got.astype(np.longdouble) - ref) / ulp), dtype=np.float64)
    ref64 = np.exp(x)
    return np.abs(got - ref64) / np.spacing(ref64)


def test_ulp_error_on_dense_grid_and_random_points():
    rng = np.random.default_rng(20240611)
    grid = np.linspace(_LO, _HI, 2_000_001)
    random_wide = rng.uniform(_LO, _HI, 500_000)
    random_small = rng.uniform(-1.0, 1.0, 200_000)  # |r| <= ln2/2 paths and k in {-1, 0, 1}
    tiny = rng.choice([-1.0, 1.0], 10_000) * 10.0 ** rng.uniform(-300, -1, 10_000)
    x = np.concatenate([grid, random_wide, random_small, tiny, [_LO, _LN_DBL_MAX]])
    err = _ulp_error(x)
    worst = int(np.argmax(err))
    assert err[worst] <= _MAX_ULP, f"{err[worst]} ulp at x = {x[worst]!r}"
    # The brief's comparison against numpy.exp directly (itself < 1 ulp): engine within 2 ulp of
    # numpy's result too.
    ref = np.exp(x)
    assert np.max(np.abs(_exp_many(x) - ref) / np.spacing(ref)) <= _MAX_ULP


def test_special_values():
    below = np.array(
        [np.nextafter(EXP_UNDERFLOW, -np.inf), -708.5, -745.2, -746.0, -1e300, -np.inf]
    )
    assert np.all(_exp_many(below) == 0.0)
    assert not np.any(np.signbit(_exp_many(below)))
    above = np.array([np.nextafter(_LN_DBL_MAX, np.inf), 709.79, 710.0, 1e300, np.inf])
    assert np.all(np.isposinf(_exp_many(above)))
    top = _exp_many(np.array([_LN_DBL_MAX]))[0]
    assert np.isfinite(top)
    assert top == pytest.approx(math.exp(_LN_DBL_MAX), rel=5e-16)  # 2.4e-14 below DBL_MAX
    assert math.isnan(_exp_many(np.array([np.nan]))[0])
    assert _exp_many(np.array([0.0]))[0] == 1.0
    assert _exp_many(np.array([-0.0]))[0] == 1.0
    # exp(-708) = 3.3e-308 is normal and must be returned (not flushed)
    edge = _exp_many(np.array([EXP_UNDERFLOW]))[0]
    assert edge == pytest.approx(math.exp(EXP_UNDERFLOW), rel=5e-16)
    # |x| below half an ulp of 1 must give exactly 1
    assert np.all(_exp_many(np.array([1e-300, -1e-300, 2.0**-60, -(2.0**-60)])) == 1.0)


def test_monotone_on_fine_sorted_grid():
    coarse = np.linspace(_LO, _HI, 1_000_001)
    assert np.all(np.diff(_exp_many(coarse)) >= 0.0)
    # Non-monotonicity in a range-reduced exp shows up where k = round(x / ln2) switches:
    # walk 401 consecutive doubles across every switching point x = (k + 1/2) ln2 in range.
    ks = np.arange(-1022, 1024)
    centres = (ks + 0.5) * math.log(2.0)
    centres = centres[(centres > _LO + 1e-9) & (centres < _HI - 1e-9)]
    steps = np.arange(-200, 201)
    # (np.spacing is negative for negative arguments: take its magnitude so runs increase)
    runs = centres[:, None] + steps[None, :] * np.abs(np.spacing(centres))[:, None]
    assert np.all(np.diff(runs, axis=1) > 0.0)
    vals = _exp_many(runs.ravel()).reshape(runs.shape)
    bad = np.flatnonzero(np.any(np.diff(vals, axis=1) < 0.0, axis=1))
    assert bad.size == 0, f"exp not monotone near {centres[bad[:5]]!r}"


def test_fma_is_single_rounding():
    a = 1.0 + 2.0**-30
    b = 1.0 - 2.0**-30
    # a * b = 1 - 2**-60 exactly; the two-rounding a * b rounds to 1 and then gives 0
    assert a * b - 1.0 == 0.0
    assert _fma(a, b, -1.0) == -(2.0**-60)
    assert _fma(0.1, 10.0, -1.0) == 2.0**-54  # 0.1 is 0.1 + 2**-54 / 10 in binary
    assert _fma(2.0, 3.0, 4.0) == 10.0


@njit(cache=False)
def _log1p_many(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = log1p_unit(x[i])
    return out


def test_log1p_unit_within_1_ulp_on_the_unit_interval():
    """Against log1p in 80-bit long double where the platform has it (else math.log1p)."""
    rng = np.random.default_rng(7)
    x = np.concatenate(
        [
            np.linspace(0.0, 1.0, 1_000_001),
            rng.uniform(0.0, 1.0, 200_000),
            10.0 ** rng.uniform(-300, -1, 20_000),  # tiny: log1p(x) ≈ x without cancellation
            [0.0, 5e-324, 1e-17, 1.0],
        ]
    )
    got = _log1p_many(x)
    if _has_extended_long_double():
        ref = np.log1p(x.astype(np.longdouble))
    else:
        ref = np.array([math.log1p(v) for v in x])
    ulp = np.spacing(np.asarray(ref, dtype=np.float64))
    err = np.asarray(np.abs(got.astype(np.longdouble) - ref) / ulp, dtype=np.float64)
    worst = int(np.argmax(err))
    assert err[worst] <= 1.0, f"{err[worst]} ulp at x = {x[worst]!r}"
    assert got[0] == 0.0 and got[1] > 0.0
