"""Utility families: losses against direct NumPy sums, gradients against finite differences,
and the declared sensitivities against brute force over neighbouring datasets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _direct_loss(utility, records: np.ndarray, theta: np.ndarray) -> float:
    """-u(D, θ) straight from the API.md definitions, one record at a time (after clipping)."""
    if isinstance(utility, Quantile):
        x = np.clip(records.ravel(), utility.lower, utility.upper)
        return abs(np.sum(x <= theta[0]) - utility.q * x.size)
    if isinstance(utility, ClippedMean):
        x = np.clip(records, utility.lower, utility.upper)
        return float(np.sum(np.minimum(np.sum((theta - x) ** 2, axis=1), utility.clip**2)))
    if isinstance(utility, LinearRegression):
        x = np.clip(records[:, :-1], utility.feature_lower, utility.feature_upper)
        y = np.clip(records[:, -1], utility.target_lower, utility.target_upper)
        return float(np.sum((y - x @ theta) ** 2) / 2)
    if isinstance(utility, LogisticRegression):
        x = np.clip(records[:, :-1], utility.feature_lower, utility.feature_upper)
        y = 2 * records[:, -1] - 1
        return float(np.sum(np.logaddexp(0.0, -y * (x @ theta))))
    assert isinstance(utility, KMeans)
    x = np.clip(records, utility.lower, utility.upper)
    centres = theta.reshape(utility.k, -1)
    d2 = np.sum((x[:, None, :] - centres[None]) ** 2, axis=2).min(axis=1)
    return float(np.sum(np.minimum(d2, utility.clip**2)))


def _cases(rng: np.random.Generator):
    n = 600  # more than two tiles of records (the fused passes tile by 256)
    lab = rng.integers(0, 2, n).astype(float)
    return [
        (Quantile(0.3, -1.0, 2.0), rng.normal(size=n) * 1.5),
        (ClippedMean((-1.0,), (3.0,), 0.7), rng.normal(size=(n, 1)) * 2),
        (ClippedMean((-1.0, 0.0), (1.0, 2.0), 0.9), rng.normal(size=(n, 2))),
        (
            LinearRegression((-1.0, -2.0), (1.0, 2.0), -3.0, 3.0, 2.0),
            np.column_stack([rng.normal(size=(n, 2)) * 2, rng.normal(size=n) * 4]),
        ),
        (
            LogisticRegression((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0), 3.0),
            np.column_stack([rng.normal(size=(n, 3)), lab]),
        ),
        (KMeans((-2.0, -2.0), (2.0, 2.0), 3, 1.2), rng.normal(size=(n, 2)) * 1.5),
        # c >= diam(Θ) = √8: the clip cannot bind, the loss comes from centred sums
        (ClippedMean((-1.0, 0.0), (1.0, 2.0), 2.9), rng.normal(size=(n, 2)) * 3 + 1),
        # k-means in 3-D with a record count that is not a multiple of the tile
        (KMeans((-2.0, -1.0, 0.0), (2.0, 1.0, 3.0), 2, 2.0), rng.normal(size=(n + 77, 3))),
    ]


def _points_in(domain, rng: np.random.Generator, m: int) -> np.ndarray:
    if domain.kind == "box":
        return rng.uniform(domain.lower, domain.upper, size=(m, domain.dim))
    z = rng.normal(size=(m, domain.dim))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    return z * domain.radius * rng.uniform(0, 1, (m, 1)) ** (1 / domain.dim)


@pytest.mark.parametrize("case", range(8))
def test_loss_matches_direct_definition(case: int) -> None:
    rng = np.random.default_rng(case)
    utility, records = _cases(rng)[case]
    prepared = utility.prepare(records)
    points = np.ascontiguousarray(_points_in(utility.domain, rng, 40))
    loss, _ = utility.loss(prepared, points)
    direct = np.array([_direct_loss(utility, records, p) for p in points])
    assert np.allclose(loss, direct, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("case", [1, 2, 3, 4, 5, 6, 7])
def test_gradient_matches_finite_differences(case: int) -> None:
    """Central differences with step 1e-6: error O(h²·L''') + O(eps/h) ≈ 1e-8 relative; points
    within 1e-4 of a kink (clip sphere, Voronoi boundary) are skipped."""
    rng = np.random.default_rng(10 + case)
    utility, records = _cases(rng)[case]
    prepared = utility.prepare(records)
    points = np.ascontiguousarray(_points_in(utility.domain, rng, 10) * 0.9)
    _, grad = utility.loss(prepared, points)
    h = 1e-6
    for p, g in zip(points, grad, strict=True):
        for k in range(p.size):
            e = np.zeros_like(p)
            e[k] = h
            plus = utility.loss(prepared, np.ascontiguousarray([p + e]))[0][0]
            minus = utility.loss(prepared, np.ascontiguousarray([p - e]))[0][0]
            centre = utility.loss(prepared, np.ascontiguousarray([p]))[0][0]
            if abs(plus - 2 * centre + minus) > 1e-4:  # a kink inside [p - h, p + h]
                continue
            assert (plus - minus) / (2 * h) == pytest.approx(g[k], rel=1e-5, abs=1e-5)


def _neighbour_gaps(utility, records, neighbour, thetas):
    a = utility.loss(utility.prepare(records), thetas)[0]
    b = utility.loss(utility.prepare(neighbour), thetas)[0]
    diff = b - a  # u - u' = -(L - L')
    return float(np.max(np.abs(diff))), float(np.max(diff) - np.min(diff))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), case=st.integers(0, 7), replace=st.booleans())
def test_declared_sensitivities_bound_brute_force(seed: int, case: int, replace: bool) -> None:
    """For random neighbouring datasets (one record added, or replaced by an adversarial
    extreme record), sup|u - u'| and osc(u - u') over many θ never exceed Δu and Δ_osc."""
    rng = np.random.default_rng(seed)
    utility, records = _cases(rng)[case]
    records = records[:30]
    thetas = np.ascontiguousarray(_points_in(utility.domain, rng, 300))
    extreme = records[rng.integers(0, len(records))] * rng.choice([-10.0, 10.0])
    if isinstance(utility, LogisticRegression):
        extreme[-1] = float(rng.integers(0, 2))
    if replace:
        neighbour = records.copy()
        neighbour[0] = extreme
        sens = utility.sensitivity("replace_one", 10**6)
    else:
        neighbour = np.concatenate([records, extreme[None] if records.ndim > 1 else [extreme]])
        sens = utility.sensitivity("add_remove", 10**6)
    sup_gap, osc_gap = _neighbour_gaps(utility, records, neighbour, thetas)
    assert sup_gap <= sens.delta_u * (1 + 1e-12)
    assert osc_gap <= sens.delta_osc * (1 + 1e-12)


def test_range_bound_holds_at_the_size_bound() -> None:
    """U = sup_D osc_θ u for |D| <= n_max: n_max records spread inside Θ attain the median's
    U = n_max/2 exactly (loss n/2 below every record, 0 at the median)."""
    utility = Quantile(0.5, 0.0, 1.0)
    n_max = 1000
    records = np.linspace(0.05, 0.95, n_max)
    thetas = np.array([[0.0], [0.5], [1.0]])
    loss = utility.loss(utility.prepare(records), np.ascontiguousarray(thetas))[0]
    assert np.ptp(loss) == utility.sensitivity("add_remove", n_max).range_bound


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
