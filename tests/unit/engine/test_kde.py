"""Gaussian KDE log-density and score against the reference and against finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dp_core.engine import kde, kernels
from dp_core.reference.bdls import log_kde_reference, logsumexp_reference

_EPS = np.finfo(np.float64).eps
_REL = 1e-10


@pytest.mark.parametrize(("n", "d", "h"), [(1, 1, 0.3), (7, 2, 0.05), (300, 3, 0.4), (513, 1, 2.0)])
def test_log_kde_self_matches_reference(n, d, h):
    rng = np.random.default_rng(100 * n + d)
    x = rng.normal(size=(n, d))
    x[n // 2] = x[0]  # a duplicate particle
    got = kde.log_kde_self(x, h)
    ref = log_kde_reference(x, x, h)
    assert np.all(np.abs(got - ref) <= _REL * np.maximum(1.0, np.abs(ref)))
    # the self term bounds the density below by 1/N
    assert np.all(got >= -math.log(n) - 1e-12)


def test_log_kde_far_from_every_centre_is_finite_and_exact():
    rng = np.random.default_rng(2024)
    centres = rng.normal(size=(50, 2))
    h = 0.25
    x = np.array([[60.0, 0.0], [-40.0, 35.0], [0.0, 0.0], [0.0, 1e3]])
    # |x - c|² / (2h²) is ~ 3e4 or more for the far rows: every term underflows on its own
    plain = kernels.kernel_sum(x, centres, np.full(50, 1.0 / 50), kernels.GAUSSIAN, h)
    assert np.all(plain[[0, 1, 3]] == 0.0)
    got = kde.log_kde(x, centres, h)
    ref = log_kde_reference(x, centres, h)
    assert np.all(np.isfinite(got))
    assert np.all(np.abs(got - ref) <= _REL * np.maximum(1.0, np.abs(ref)))


def test_log_kde_with_weights_including_zeros():
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(40, 3))
    x = rng.normal(size=(11, 3)) * 3.0
    w = rng.uniform(0.0, 1.0, 40)
    w[::4] = 0.0
    h = 0.7
    got = kde.log_kde(x, centres, h, weights=w)
    with np.errstate(divide="ignore"):
        log_w = np.log(w)
    ref = logsumexp_reference(x, centres, log_w, np.zeros(40), h * h)
    assert np.all(np.abs(got - ref) <= _REL * np.maximum(1.0, np.abs(ref)))
    # default weights are uniform 1/M
    np.testing.assert_allclose(
        kde.log_kde(x, centres, h),
        kde.log_kde(x, centres, h, weights=np.full(40, 0.025)),
        rtol=0.0,
        atol=1e-14,
    )


def test_score_is_the_gradient_of_log_kde():
    """kde_score_self(x)_i = ∇ log KDE at x_i with the centres held at the particles."""
    rng = np.random.default_rng(8)
    d = 2
    bw = 0.5
    # Dyadic coordinates in a box of side L so x ± step is exact.
    side = 1.5
    x = rng.integers(0, 1536, size=(120, d)) / 1024.0
    score = kde.kde_score_self(x, bw)
    step = 2.0**-17
    fd = np.empty_like(x)
    for k in range(d):
        e = np.zeros(d)
        e[k] = step
        fd[:, k] = (kde.log_kde(x + e, x, bw) - kde.log_kde(x - e, x, bw)) / (2.0 * step)
    # ∂³ log KDE along a coordinate is the third cumulant of (x_k - c_k)/bw² under the
    # soft-max responsibilities, at most (L / bw²)³ in size for centres spread over a side L.
    # Rounding: log KDE comes from scores of size at most (L√d)² / (2bw²) + log N, each good
    # to a few eps; 64 eps of that size covers the log-sum-exp.
    trunc = step**2 / 6.0 * (side / bw**2) ** 3
    s_max = max(1.0, side**2 * d / (2.0 * bw**2) + math.log(x.shape[0]))
    rounding = 64.0 * _EPS * s_max / step
    tol = trunc + rounding
    assert np.max(np.abs(score - fd)) <= tol
    assert np.max(np.abs(score)) > 1e4 * tol  # the comparison has power


# --------------------------------------------------------------------------- the 1-D path
def _sums_long_double(x: np.ndarray, h: float) -> np.ndarray:
    """Σ_j exp(-(x_i - x_j)²/(2h²)) over every pair (no cutoff), in long double."""
    xl = x[:, 0].astype(np.longdouble)
    scale = np.longdouble(1.0) / (np.longdouble(h) * np.sqrt(np.longdouble(2.0)))
    out = np.empty(xl.size, dtype=np.longdouble)
    for i in range(xl.size):
        z = (xl[i] - xl) * scale
        out[i] = np.sum(np.exp(-z * z))
    return out


def _one_d_sets():
    rng = np.random.default_rng(11)
    yield "uniform", rng.uniform(0.0, 100.0, 2000), 2.19
    yield "narrow cluster (one cell, Taylor)", 50.0 + 0.04 * rng.normal(size=2000), 2.19
    yield "law as wide as the bandwidth", 50.0 + 2.19 * rng.normal(size=2000), 2.19
    clusters = [rng.normal(-3.0, 0.01, 700), rng.normal(0.0, 1.0, 600), rng.normal(4.0, 0.3, 700)]
    yield "three clusters", np.concatenate(clusters), 0.3
    yield "far from the origin", 1e6 + rng.uniform(0.0, 10.0, 1500), 0.5
    yield "sparse (cells from a sort)", rng.uniform(-4.0, 4.0, 1000), 1e-4
    yield "duplicates", np.repeat(rng.normal(size=50), 20), 0.2
    yield "two particles", np.array([3.0, 3.1]), 0.1
    yield "one particle", np.array([3.0]), 1.0


@pytest.mark.parametrize(("name", "points", "h"), list(_one_d_sets()), ids=lambda v: str(v)[:24])
def test_log_kde_self_1d_is_exact_to_rounding(name, points, h):
    """The cell expansion with its cutoff against the full sum in long double: every density
    within 2^-46 (64 ulp) relative, on particle sets that use the direct sums, the Taylor
    expansion, the sorted cells and the cutoff (the docstring's bound is a few ulp)."""
    x = np.ascontiguousarray(points.reshape(-1, 1))
    got = kde.log_kde_self(x, h)
    ref = np.log(_sums_long_double(x, h)) - np.log(np.longdouble(x.shape[0]))
    rel = np.abs(np.expm1((got - ref).astype(np.float64)))
    assert np.max(rel) <= 2.0**-46, name
    # as precise as the plain pairwise kernel sum, within a factor of 16 (measured: <= 8)
    plain = np.log(kernels.kernel_sum(x, x, np.full(x.shape[0], 1.0 / x.shape[0]), 0, h))
    rel_plain = np.abs(np.expm1((plain - ref).astype(np.float64)))
    assert np.max(rel) <= 16.0 * max(np.max(rel_plain), _EPS), name


def test_log_kde_self_1d_keeps_every_pair_above_rounding():
    """A group of 100 particles and one of 3000 at distance d with d² = 45 ln 2 (in units of
    √2 h): each cross term is 2^-45, together 2^-40 of the small group's density, far above
    rounding and inside the cutoff (d² <= 60 ln 2 + ln N), so they must be there."""
    h = 0.7
    d = math.sqrt(45.0 * math.log(2.0)) * math.sqrt(2.0) * h
    x = np.concatenate([np.zeros(100), np.full(3000, d)]).reshape(-1, 1)
    got = kde.log_kde_self(x, h)
    ref = np.log(_sums_long_double(x, h)) - np.log(np.longdouble(3100))
    assert np.max(np.abs((got - ref).astype(np.float64))) <= 2.0**-48
    without = math.log(100.0 / 3100.0)
    assert abs(got[0] - without) > 2.0**-42  # the cross terms are visible


def test_log_kde_self_1d_does_not_depend_on_thread_count():
    """Large cells are split among threads; every density keeps its bits."""
    numba = pytest.importorskip("numba")
    assert numba.config.NUMBA_NUM_THREADS >= 2, "this machine gives Numba a single thread"
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0.0, 0.01, 3000), rng.uniform(-5.0, 5.0, 3000)])
    x = np.ascontiguousarray(x.reshape(-1, 1))
    numba.set_num_threads(1)
    try:
        one = kde.log_kde_self(x, 0.3)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    many = kde.log_kde_self(x, 0.3)
    assert np.array_equal(one, many)


def test_log_kde_self_1d_empty():
    assert kde.log_kde_self(np.empty((0, 1)), 0.5).shape == (0,)
