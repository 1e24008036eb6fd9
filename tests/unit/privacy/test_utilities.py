"""Utility families in both forms (accuracy note §3): losses against direct per-record NumPy
definitions, gradients against finite differences, summaries against record passes, and the
declared sensitivities against brute force (never exceeded) and closed-form neighbours
(attained)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dp_core.engine.utility_kernels import clipped_mean_loss_nd
from dp_core.errors import InvalidParameter
from dp_core.privacy.utilities import (
    ClippedMean,
    KMeans,
    LinearRegression,
    LogisticRegression,
    Mode,
    Quantile,
    canonical_centres,
)
from dp_core.privacy.utilities.mean import assignment_gradient_loss

EPS = np.finfo(float).eps
N = 600  # two full tiles of 256 records and a partial one (the fused passes tile by 256)


def _normal(rng, n, d, scale=1.0, shift=0.0):
    return rng.normal(size=(n, d)) * scale + shift


def _regression(rng, n, d, y_scale):
    return np.column_stack([_normal(rng, n, d, 2.0), rng.normal(size=n) * y_scale])


def _labelled(rng, n, d):
    return np.column_stack([_normal(rng, n, d), rng.integers(0, 2, n).astype(float)])


# name: (family for a form, records for a generator). Records overflow the bounds on purpose.
CASES = {
    "mean_1d": (lambda f: ClippedMean((-1.0,), (3.0,), form=f), lambda r: _normal(r, N, 1, 2.0)),
    # c = 0.7 binds: the 1-D prefix path with clipped tails
    "mean_1d_clip": (
        lambda f: ClippedMean((-1.0,), (3.0,), 0.7, form=f),
        lambda r: _normal(r, N, 1, 2.0),
    ),
    # no clip in 2-D: the count and centred sums
    "mean_2d": (
        lambda f: ClippedMean((-1.0, 0.0), (1.0, 2.0), form=f),
        lambda r: _normal(r, N, 2, 3.0, 1.0),
    ),
    # c = 2.9 >= diam = √8: cannot bind, also the centred sums
    "mean_2d_clip_above_diam": (
        lambda f: ClippedMean((-1.0, 0.0), (1.0, 2.0), 2.9, form=f),
        lambda r: _normal(r, N, 2, 3.0, 1.0),
    ),
    # c = 0.9 binds in 2-D: the record pass
    "mean_2d_clip": (
        lambda f: ClippedMean((-1.0, 0.0), (1.0, 2.0), 0.9, form=f),
        lambda r: _normal(r, N, 2),
    ),
    # diam/2 < c = 2 < diam: binds only for far pairs
    "mean_2d_clip_wide": (
        lambda f: ClippedMean((-1.0, 0.0), (1.0, 2.0), 2.0, form=f),
        lambda r: _normal(r, N, 2, 3.0, 1.0),
    ),
    "linear": (
        lambda f: LinearRegression((-1.0, -2.0), (1.0, 2.0), -3.0, 3.0, 2.0, form=f),
        lambda r: _regression(r, N, 2, 4.0),
    ),
    "logistic_3d": (
        lambda f: LogisticRegression((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0), 3.0, form=f),
        lambda r: _labelled(r, N, 3),
    ),
    "kmeans_clip": (
        lambda f: KMeans((-2.0, -2.0), (2.0, 2.0), 3, 1.2, form=f),
        lambda r: _normal(r, N, 2, 1.5),
    ),
    # 3-D, no clip, 677 records: not a multiple of the tile
    "kmeans_3d": (
        lambda f: KMeans((-2.0, -1.0, 0.0), (2.0, 1.0, 3.0), 2, form=f),
        lambda r: _normal(r, N + 77, 3),
    ),
    "kmeans_3d_clip": (
        lambda f: KMeans((-2.0, -1.0, 0.0), (2.0, 1.0, 3.0), 2, 2.0, form=f),
        lambda r: _normal(r, N + 77, 3),
    ),
}
FORMS = ("gradient_norm", "loss")
FORM_CASES = [(name, form) for name in CASES for form in FORMS]


def _case(name: str, form: str, rng: np.random.Generator):
    make, records = CASES[name]
    return make(form), records(rng)


def _per_record_bound(utility) -> float:
    """G (gradient form) or B (loss form): what one record can contribute to |u|."""
    return utility.gradient_bound if utility.form == "gradient_norm" else utility.loss_bound


def _clip_norm(g: np.ndarray, c: float | None) -> np.ndarray:
    """Rows of g scaled to norm at most c (DP-SGD's clip; None: no clip)."""
    if c is None:
        return g
    norm = np.linalg.norm(g, axis=1, keepdims=True)
    return g * np.minimum(1.0, c / np.maximum(norm, 1e-300))


def _direct_loss(utility, records: np.ndarray, theta: np.ndarray) -> float:
    """L = -u(D, θ) from the module docstrings, one record at a time after clipping:
    gradient form |Σ_x clip_G(g(θ; x))|, loss form Σ_x ℓ(θ; x)."""
    if isinstance(utility, Quantile):
        x = np.clip(records.ravel(), utility.lower, utility.upper)
        return abs(np.sum(x <= theta[0]) - utility.q * x.size)
    gradient = utility.form == "gradient_norm"
    if isinstance(utility, (ClippedMean, KMeans)):
        x = np.clip(records, utility.lower, utility.upper)
        k = utility.k if isinstance(utility, KMeans) else 1
        centres = theta.reshape(k, -1)
        d2 = np.sum((x[:, None, :] - centres[None]) ** 2, axis=2)
        nearest = np.argmin(d2, axis=1)  # ties to the lowest index
        if gradient:
            g = np.zeros((x.shape[0], theta.size))
            block = _clip_norm(centres[nearest] - x, utility.clip)
            for a in range(x.shape[1]):
                g[np.arange(x.shape[0]), nearest * x.shape[1] + a] = block[:, a]
            return float(np.linalg.norm(g.sum(axis=0)))
        # the loss clip defaults to the diameter of the box (never binds)
        c = utility.diameter if utility.clip is None else utility.clip
        return float(np.sum(np.minimum(d2.min(axis=1), c**2)))
    if isinstance(utility, LinearRegression):
        x = np.clip(records[:, :-1], utility.feature_lower, utility.feature_upper)
        y = np.clip(records[:, -1], utility.target_lower, utility.target_upper)
        if gradient:
            return float(np.linalg.norm((((x @ theta) - y)[:, None] * x).sum(axis=0)))
        return float(np.sum((y - x @ theta) ** 2) / 2)
    assert isinstance(utility, LogisticRegression)
    x = np.clip(records[:, :-1], utility.feature_lower, utility.feature_upper)
    y = 2 * records[:, -1] - 1
    margin = y * (x @ theta)
    if gradient:
        sigma = 1.0 / (1.0 + np.exp(margin))  # σ(-m), |m| <= RX is small here
        return float(np.linalg.norm((-(y * sigma)[:, None] * x).sum(axis=0)))
    return float(np.sum(np.logaddexp(0.0, -margin)))


def _points_in(domain, rng: np.random.Generator, m: int) -> np.ndarray:
    if domain.kind == "box":
        return rng.uniform(domain.lower, domain.upper, size=(m, domain.dim))
    z = rng.normal(size=(m, domain.dim))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    return z * domain.radius * rng.uniform(0, 1, (m, 1)) ** (1 / domain.dim)


def _into(domain, points: np.ndarray) -> np.ndarray:
    """Points moved into Θ: clipped to a box, scaled onto a ball."""
    if domain.kind == "box":
        return np.clip(points, domain.lower, domain.upper)
    centre = np.asarray(domain.center)
    norm = np.linalg.norm(points - centre, axis=1, keepdims=True)
    return centre + (points - centre) * np.minimum(1.0, domain.radius / np.maximum(norm, 1e-300))


def _extreme_points(domain, rng: np.random.Generator, m: int) -> np.ndarray:
    """Corners of a box or points on a ball's sphere: where the sensitivities are attained."""
    if domain.kind == "box":
        lo, hi = np.array(domain.lower), np.array(domain.upper)
        return np.where(rng.integers(0, 2, (m, domain.dim)) == 1, hi, lo)
    z = rng.normal(size=(m, domain.dim))
    return z / np.linalg.norm(z, axis=1, keepdims=True) * domain.radius


def _loss(utility, records, points) -> tuple[np.ndarray, np.ndarray]:
    return utility.loss(utility.prepare(records), np.ascontiguousarray(points))


@pytest.mark.parametrize("name,form", [("quantile", None), *FORM_CASES])
def test_loss_matches_direct_definition(name: str, form: str | None) -> None:
    """Summation order differs between the kernels and NumPy: the error is at most a few ulps
    of n·(per-record bound), hence atol = 1e-12·n·bound (1e-12 ≫ n·eps for n < 10^3)."""
    rng = np.random.default_rng(0 if form is None else 1 + FORM_CASES.index((name, form)))
    if name == "quantile":
        utility, records, bound = Quantile(0.3, -1.0, 2.0), rng.normal(size=N) * 1.5, 1.0
    else:
        utility, records = _case(name, form, rng)
        bound = _per_record_bound(utility)
    points = np.ascontiguousarray(
        np.vstack([_points_in(utility.domain, rng, 40), _extreme_points(utility.domain, rng, 8)])
    )
    loss, _ = _loss(utility, records, points)
    direct = np.array([_direct_loss(utility, records, p) for p in points])
    np.testing.assert_allclose(loss, direct, rtol=1e-10, atol=1e-12 * len(records) * bound)


@pytest.mark.parametrize("name,form", FORM_CASES)
def test_gradient_matches_finite_differences(name: str, form: str) -> None:
    """Central differences, h = 1e-6: truncation h²L'''/6 is negligible; rounding is about
    64·eps·(n·bound)/h (L's own error over 2h). A kink inside [p - h, p + h] (a clip sphere, a
    Voronoi boundary, the cone point A = 0) makes the second difference about (slope jump)·h
    >= 1e-7, while a smooth L gives h²L'' < 1e-8 here: such coordinates are skipped, and at
    least half of them must be checked."""
    rng = np.random.default_rng(10 + list(CASES).index(name) + 100 * FORMS.index(form))
    utility, records = _case(name, form, rng)
    prepared = utility.prepare(records)
    points = np.ascontiguousarray(_points_in(utility.domain, rng, 10) * 0.9)
    _, grad = utility.loss(prepared, points)
    h = 1e-6
    atol = 1e-6 + 64 * EPS * len(records) * _per_record_bound(utility) / h
    checked = total = 0
    for p, g in zip(points, grad, strict=True):
        for k in range(p.size):
            e = np.zeros_like(p)
            e[k] = h
            stencil = np.ascontiguousarray([p - e, p, p + e])
            minus, centre, plus = utility.loss(prepared, stencil)[0]
            total += 1
            if abs(plus - 2 * centre + minus) > 1e-7:
                continue
            checked += 1
            assert (plus - minus) / (2 * h) == pytest.approx(g[k], rel=1e-6, abs=atol)
    assert checked >= total / 2


@pytest.mark.parametrize("clip", [None, 0.7])
def test_mean_1d_prefix_sums_equal_the_record_pass(clip: float | None) -> None:
    """The 1-D sorted-prefix path (gradient form: A and J = #{|θ - x| < c}; loss form) equals
    the record pass on the same clipped records, with the same clip (atol: summation order,
    1e-12·n·bound)."""
    rng = np.random.default_rng(20)
    records = _normal(rng, N, 1, 2.0)
    points = np.ascontiguousarray(np.vstack([rng.uniform(-1, 3, (60, 1)), [[-1.0], [3.0]]]))
    for form in FORMS:
        utility = ClippedMean((-1.0,), (3.0,), clip, form=form)
        prepared = utility.prepare(records)
        assert prepared.sorted_records is not None
        records_t = np.ascontiguousarray(utility.clip_records(records).T)
        if form == "gradient_norm":
            ref = assignment_gradient_loss(points, records_t, 1, utility.effective_clip)
        else:
            ref = (np.empty(len(points)), np.empty(points.shape))
            clipped_mean_loss_nd(points, records_t, math.sqrt(utility.loss_bound), *ref)
        atol = 1e-12 * N * _per_record_bound(utility)
        loss, grad = utility.loss(prepared, points)
        np.testing.assert_allclose(loss, ref[0], rtol=1e-12, atol=atol)
        np.testing.assert_allclose(grad, ref[1], rtol=1e-12, atol=atol)


@pytest.mark.parametrize("clip", [None, 2.9])
def test_mean_centred_sums_equal_the_record_pass(clip: float | None) -> None:
    """d > 1 without a binding clip: L and ∇L from (count, centred sums) equal the record pass
    ``assignment_gradient_loss(points, records_t, 1, inf)`` (gradient form) and the unclipped
    record pass (loss form)."""
    rng = np.random.default_rng(21)
    records = _normal(rng, N, 2, 3.0, 1.0)
    points = np.ascontiguousarray(_points_in(ClippedMean((-1.0, 0.0), (1.0, 2.0)).domain, rng, 60))
    for form in FORMS:
        utility = ClippedMean((-1.0, 0.0), (1.0, 2.0), clip, form=form)
        prepared = utility.prepare(records)
        assert prepared.centre is not None and prepared.count == N
        records_t = np.ascontiguousarray(utility.clip_records(records).T)
        if form == "gradient_norm":
            ref = assignment_gradient_loss(points, records_t, 1, math.inf)
        else:
            ref = (np.empty(len(points)), np.empty(points.shape))
            clipped_mean_loss_nd(points, records_t, math.inf, *ref)
        atol = 1e-12 * N * _per_record_bound(utility)
        loss, grad = utility.loss(prepared, points)
        np.testing.assert_allclose(loss, ref[0], rtol=1e-12, atol=atol)
        np.testing.assert_allclose(grad, ref[1], rtol=1e-12, atol=atol)


def test_linear_regression_summaries_equal_per_record_sums() -> None:
    rng = np.random.default_rng(22)
    utility = LinearRegression((-1.0, -2.0), (1.0, 2.0), -3.0, 3.0, 2.0)
    clipped = utility.clip_records(_regression(rng, N, 2, 4.0))
    stats = utility.prepare(clipped)
    x, y = clipped[:, :-1], clipped[:, -1]
    xtx = sum(np.outer(row, row) for row in x)
    xty = sum(row * t for row, t in zip(x, y, strict=True))
    np.testing.assert_allclose(stats.xtx, xtx, rtol=1e-12, atol=1e-12 * N * 5)
    np.testing.assert_allclose(stats.xty, xty, rtol=1e-12, atol=1e-12 * N * 15)
    assert stats.yty == pytest.approx(float(np.sum(y * y)), rel=1e-12)


# ------------------------------------------------------------------------------ sensitivities


def _extreme_record(utility, rng: np.random.Generator, typical: np.ndarray) -> np.ndarray:
    """A record at a corner of the record box (or a far multiple of a typical one, clipped)."""
    if rng.integers(0, 2):
        return typical * rng.choice([-10.0, 10.0])
    if isinstance(utility, (ClippedMean, KMeans)):
        lo, hi = np.array(utility.lower), np.array(utility.upper)
    else:
        lo = np.append(utility.feature_lower, getattr(utility, "target_lower", 0.0))
        hi = np.append(utility.feature_upper, getattr(utility, "target_upper", 1.0))
    x = np.where(rng.integers(0, 2, lo.size) == 1, hi, lo)
    return x


def _gaps(utility, records, neighbour, thetas) -> tuple[float, float]:
    a = _loss(utility, records, thetas)[0]
    b = _loss(utility, neighbour, thetas)[0]
    diff = b - a  # u - u' = -(L - L')
    return float(np.max(np.abs(diff))), float(np.ptp(diff))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    case=st.sampled_from(FORM_CASES),
    n=st.integers(0, 30),
    replace=st.booleans(),
)
def test_declared_sensitivities_bound_brute_force(seed, case, n, replace) -> None:
    """Random D (possibly empty) and an adversarial neighbour (one extreme record added, or one
    record replaced by an extreme one): over 300 θ in Θ and 64 corners / sphere points,
    sup|u - u'| <= Δu and osc(u - u') <= Δ_osc, for both forms (tolerance: the float error of
    two losses, 1e-12·(n + 1)·bound)."""
    rng = np.random.default_rng(seed)
    utility, records = _case(*case, rng)
    records = records[:n]
    typical = _case(*case, rng)[1][0]
    thetas = np.vstack(
        [_points_in(utility.domain, rng, 300), _extreme_points(utility.domain, rng, 64)]
    )
    extreme = _extreme_record(utility, rng, typical)
    if isinstance(utility, LogisticRegression):
        extreme[-1] = float(rng.integers(0, 2))
    if replace and n > 0:
        neighbour = records.copy()
        neighbour[rng.integers(0, n)] = extreme
        sens = utility.sensitivity("replace_one", 10**6)
    else:
        neighbour = np.vstack([records, extreme])
        sens = utility.sensitivity("add_remove", 10**6)
    sup_gap, osc_gap = _gaps(utility, records, neighbour, thetas)
    slack = 1e-12 * (n + 1) * _per_record_bound(utility)
    assert sup_gap <= sens.delta_u + slack
    assert osc_gap <= sens.delta_osc + slack


def _attaining_add(name: str):
    """(utility, D, x, θ): adding x to D moves u(θ) by exactly G (accuracy note §3)."""
    utility = CASES[name][0]("gradient_norm")
    if isinstance(utility, LinearRegression):
        lo, hi = np.array(utility.feature_lower), np.array(utility.feature_upper)
        corner = np.where(np.abs(hi) >= np.abs(lo), hi, lo)  # |corner| = X
        y_lo, y_hi = utility.target_lower, utility.target_upper
        y = y_lo if abs(y_lo) >= abs(y_hi) else y_hi  # |y| = Y
        # θ = -sign(y)·R x/|x|: θ·x - y = -sign(y)(RX + Y), so |g| = (RX + Y)·X = G
        theta = -np.sign(y) * utility.radius * corner / np.linalg.norm(corner)
        return utility, np.empty((0, corner.size + 1)), np.append(corner, y), theta
    lo, hi = np.array(utility.lower), np.array(utility.upper)
    k = utility.k if isinstance(utility, KMeans) else 1
    # every centre at hi, the record at lo: g = hi - lo (clipped to c) in block 0 (ties)
    return utility, np.empty((0, lo.size)), lo, np.tile(hi, k)


@pytest.mark.parametrize(
    "name",
    [
        "mean_1d",
        "mean_1d_clip",
        "mean_2d",
        "mean_2d_clip",
        "linear",
        "kmeans_clip",
        "kmeans_3d",
        "kmeans_3d_clip",
    ],
)
def test_add_remove_sensitivity_is_attained(name: str) -> None:
    """Δu = G is tight: D = {} and D + {x} with x at a corner and θ where |g(θ; x)| = G."""
    utility, records, x, theta = _attaining_add(name)
    sup_gap, _ = _gaps(utility, records, np.vstack([records, x]), theta[None])
    delta_u = utility.sensitivity("add_remove", 10).delta_u
    assert delta_u == pytest.approx(utility.gradient_bound, rel=1e-15)
    assert sup_gap == pytest.approx(delta_u, rel=1e-12)
    # the same from a one-record D: a copy of x at θ itself contributes 0 (mean, k-means) or a
    # gradient parallel to g (regression), so |A + g| - |A| = G still
    one = np.vstack([records, x])
    assert _gaps(utility, one, np.vstack([one, x]), theta[None])[0] == pytest.approx(
        delta_u, rel=1e-12
    )


def test_logistic_gradient_sensitivity_is_approached_not_attained() -> None:
    """|g| = |x|σ(-y'θ·x) <= X σ(RX) < X = G: the gap of D = {} vs {(x, 1)} at θ = -R x/|x|
    (x the corner of norm X) is exactly X·σ(RX), below G = Δu."""
    utility = CASES["logistic_3d"][0]("gradient_norm")
    corner = np.array(utility.feature_upper)
    big_x = float(np.linalg.norm(corner))
    theta = -utility.radius * corner / big_x
    records = np.empty((0, 4))
    sup_gap, _ = _gaps(utility, records, np.append(corner, 1.0)[None], theta[None])
    expected = big_x / (1.0 + math.exp(-utility.radius * big_x))
    assert sup_gap == pytest.approx(expected, rel=1e-12)
    delta_u = utility.sensitivity("add_remove", 10).delta_u
    assert sup_gap < delta_u
    # G = X = √3 rounded up: the float just above √3 (the nearest float, big_x, lies below it)
    assert Fraction(delta_u) ** 2 >= 3 > Fraction(math.nextafter(delta_u, 0)) ** 2
    assert delta_u == math.nextafter(big_x, math.inf)


@pytest.mark.parametrize("name", ["mean_1d", "mean_2d"])
def test_mean_replace_one_attains_the_diameter(name: str) -> None:
    """Replace-one for the unclipped mean: D = {a} vs {b} (opposite corners) gives
    u - u' = ±diam at θ = a and θ = b: Δu = diam and Δ_osc = 2 diam are both attained."""
    utility = CASES[name][0]("gradient_norm")
    a, b = np.array(utility.lower), np.array(utility.upper)
    sup_gap, osc_gap = _gaps(utility, a[None], b[None], np.vstack([a, b]))
    sens = utility.sensitivity("replace_one", 10)
    assert sens.delta_u == pytest.approx(utility.diameter, rel=1e-15)
    assert sup_gap == pytest.approx(sens.delta_u, rel=1e-12)
    assert osc_gap == pytest.approx(sens.delta_osc, rel=1e-12)


@pytest.mark.parametrize("name", ["mean_1d_clip", "kmeans_clip"])
def test_clipped_replace_one_attains_twice_the_clip(name: str) -> None:
    """With 2c <= diam, Δu = 2c: D = {a, a} vs {a, b} at θ = (a + b)/2 (every centre there):
    A(D) = 2c·e, A(D') = c·e - c·e = 0, so u' - u = 2c exactly."""
    utility = CASES[name][0]("gradient_norm")
    a, b = np.array(utility.lower), np.array(utility.upper)
    assert 2 * utility.clip <= utility.diameter
    k = utility.k if isinstance(utility, KMeans) else 1
    theta = np.tile((a + b) / 2, k)
    sup_gap, _ = _gaps(utility, np.vstack([a, a]), np.vstack([a, b]), theta[None])
    delta_u = utility.sensitivity("replace_one", 10).delta_u
    assert delta_u == pytest.approx(2 * utility.clip, rel=1e-15)
    assert sup_gap == pytest.approx(delta_u, rel=1e-12)


@pytest.mark.parametrize("name,form", FORM_CASES)
def test_range_bound_holds_at_the_size_bound(name: str, form: str) -> None:
    """U = sup_D osc_θ u for |D| <= n_max: with n_max records, u ∈ [-U, 0] at every θ (the
    gradient form's u = -|A| ∈ [-n G, 0]; the loss form's per-record osc o sums to U)."""
    rng = np.random.default_rng(30 + FORM_CASES.index((name, form)))
    utility, records = _case(name, form, rng)
    records = records[:50]
    thetas = np.vstack(
        [_points_in(utility.domain, rng, 200), _extreme_points(utility.domain, rng, 50)]
    )
    loss = _loss(utility, records, thetas)[0]
    big_u = utility.sensitivity("add_remove", len(records)).range_bound
    slack = 1e-12 * len(records) * _per_record_bound(utility)
    assert np.ptp(loss) <= big_u + slack
    if form == "gradient_norm":
        assert big_u == pytest.approx(len(records) * utility.gradient_bound, rel=1e-15)
        assert np.all((loss >= 0) & (loss <= big_u + slack))


SMOOTH_GRADIENT_CASES = [name for name in CASES if not name.startswith(("kmeans", "quantile"))]


@pytest.mark.parametrize("name", SMOOTH_GRADIENT_CASES)
def test_gradient_form_slope_bound_holds(name: str) -> None:
    """The slope bound n_max·H: |u(θ) - u(θ')| <= slope·|θ - θ'| for pairs of close and far θ
    (k-means is left out: g jumps across Voronoi faces, H holds only inside a cell), and the
    bound is attained by the unclipped mean far from its records."""
    rng = np.random.default_rng(40 + SMOOTH_GRADIENT_CASES.index(name))
    utility, records = _case(name, "gradient_norm", rng)
    slope = utility.sensitivity("add_remove", len(records)).slope_bound
    first = _points_in(utility.domain, rng, 300)
    step = rng.normal(size=first.shape) * rng.choice([1e-4, 1e-2, 0.3], size=(len(first), 1))
    second = _into(utility.domain, first + step)
    loss_a, loss_b = _loss(utility, records, first)[0], _loss(utility, records, second)[0]
    distance = np.linalg.norm(first - second, axis=1)
    assert np.all(np.abs(loss_a - loss_b) <= slope * distance * (1 + 1e-9) + 1e-9)
    if name == "mean_1d":
        ends = np.array([[utility.lower[0]], [utility.lower[0] + 1e-3]])
        lumped = np.full((len(records), 1), utility.upper[0])
        rise = np.ptp(_loss(utility, lumped, ends)[0]) / 1e-3
        assert rise == pytest.approx(slope, rel=1e-9)


@pytest.mark.parametrize("name", ["mean_1d", "mean_2d_clip", "linear", "kmeans_3d"])
def test_gradient_range_bound_is_attained(name: str) -> None:
    """n_max copies of the attaining record of Δu make u = -n_max·G = -U at that θ."""
    utility, _, x, theta = _attaining_add(name)
    n_max = 37
    loss = _loss(utility, np.tile(x, (n_max, 1)), theta[None])[0]
    assert loss[0] == pytest.approx(utility.sensitivity("add_remove", n_max).range_bound, rel=1e-12)


def test_quantile_range_bound_is_attained() -> None:
    """n_max records spread inside Θ attain the median's U = n_max/2 exactly (loss n/2 below
    every record, 0 at the median)."""
    utility = Quantile(0.5, 0.0, 1.0)
    n_max = 1000
    records = np.linspace(0.05, 0.95, n_max)
    thetas = np.array([[0.0], [0.5], [1.0]])
    loss = utility.loss(utility.prepare(records), np.ascontiguousarray(thetas))[0]
    assert np.ptp(loss) == utility.sensitivity("add_remove", n_max).range_bound


def test_forms_are_validated_and_described() -> None:
    for name in CASES:
        make = CASES[name][0]
        assert make("gradient_norm").describe()["form"] == "gradient_norm"
        with pytest.raises(InvalidParameter) as err:
            make("sum")
        assert err.value.field == "utility.form"
    assert ClippedMean((0.0,), (1.0,)).form == "gradient_norm"  # the default


def test_mode_counts_and_refusals() -> None:
    mode = Mode(("a", "b", "c"))
    assert mode.counts(["a", "c", "c", "b", "c"]) == [1, 1, 3]
    with pytest.raises(InvalidParameter) as err:
        mode.counts(["a", "z"])
    assert "z" not in str(err.value)  # never echo a record
    assert mode.sensitivity("replace_one", 10).delta_osc == 2.0


def test_invalid_parameters_name_their_field() -> None:
    with pytest.raises(InvalidParameter) as err:
        Quantile(1.5, 0.0, 1.0)
    assert err.value.field == "utility.q"
    with pytest.raises(InvalidParameter) as err:
        ClippedMean((0.0,), (1.0,), -1.0)
    assert err.value.field == "utility.clip"
    with pytest.raises(InvalidParameter) as err:
        LogisticRegression((0.0,), (1.0,), 1.0).prepare(np.array([[0.5, 0.3]]))
    assert err.value.field == "records"


def test_canonical_centres_are_label_invariant() -> None:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(5, 3, 2))
    permuted = centres[:, rng.permutation(3), :]
    a = canonical_centres(centres.reshape(5, -1), 3)
    b = canonical_centres(permuted.reshape(5, -1), 3)
    assert np.array_equal(a, b)
