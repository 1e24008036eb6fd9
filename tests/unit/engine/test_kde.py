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
