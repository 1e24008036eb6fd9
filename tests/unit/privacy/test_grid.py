"""The exact grid path (:mod:`dp_core.privacy.grid`, :mod:`dp_core.engine.grid_scores`): each
record's integer contribution depends on that record and the grid point only (bit-identical
whatever the batch), the integer sensitivities hold, the integer scores track the float
utility to within the rounding, and the release finds the mean."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pytest

from dp_core.privacy import ExponentialMechanism
from dp_core.privacy.exact import grid_sensitivity
from dp_core.privacy.grid import (
    QUANTUM_DIVISIONS,
    _osc,
    _units,
    grid_inverse_temperature,
    grid_scores,
    public_grid,
)
from dp_core.privacy.utilities import ClippedMean, KMeans, LinearRegression, LogisticRegression

N = 500
FORMS = ("gradient_norm", "loss")
FAMILIES = {
    # G = 8, q = 2^-7, grid (i + 1/2)·2^-9: dyadic, so exact .5 roundings can be crafted
    "mean_1d": lambda f: ClippedMean((0.0,), (8.0,), form=f),
    "mean_1d_clip": lambda f: ClippedMean((0.0,), (8.0,), 2.0, form=f),
    "mean_2d_clip": lambda f: ClippedMean((-1.0, 0.0), (1.0, 2.0), 0.75, form=f),
    "mean_3d": lambda f: ClippedMean((0.0, 0.0, 0.0), (1.0, 2.0, 1.0), form=f),
    # θ = (c_0, c_1) on a 64 x 64 grid: the diagonal c_0 = c_1 ties for every record
    "kmeans_k2_clip": lambda f: KMeans((0.0,), (1.0,), 2, 0.5, form=f),
    "kmeans_k3": lambda f: KMeans((-1.0,), (2.0,), 3, form=f),
    # G = (4 + 1·2)·2 = 12, q = 3/256: dyadic, exact .5 roundings again
    "linear_1d": lambda f: LinearRegression((-1.0,), (2.0,), -4.0, 4.0, 1.0, form=f),
    "linear_2d": lambda f: LinearRegression((-1.0, -2.0), (1.0, 2.0), -3.0, 3.0, 2.0, form=f),
    "logistic_3d": lambda f: LogisticRegression((-1.0, 0.0, -1.0), (1.0, 1.0, 1.0), 2.0, form=f),
}
CASES = [(name, form) for name in FAMILIES for form in FORMS]


def _record_box(utility) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of a record's columns (features and target / label last for regressions)."""
    if isinstance(utility, (ClippedMean, KMeans)):
        return np.array(utility.lower), np.array(utility.upper)
    if isinstance(utility, LinearRegression):
        return (
            np.append(utility.feature_lower, utility.target_lower),
            np.append(utility.feature_upper, utility.target_upper),
        )
    return np.append(utility.feature_lower, 0.0), np.append(utility.feature_upper, 1.0)


def _random_records(utility, rng: np.random.Generator, n: int) -> np.ndarray:
    """Records spread over (and 20 % beyond) the bounds; logistic labels in {0, 1}."""
    lo, hi = _record_box(utility)
    width = hi - lo
    records = rng.uniform(lo - 0.2 * width, hi + 0.2 * width, size=(n, lo.size))
    if isinstance(utility, LogisticRegression):
        records[:, -1] = rng.integers(0, 2, n)
    return records


def _crafted(utility, grid: np.ndarray) -> np.ndarray:
    """Records at every corner of the record box and beyond it, the centre, and per family
    records on a tie between two centres or with an exact .5 rounding at some grid point."""
    lo, hi = _record_box(utility)
    rows = [*_corners(lo, hi), lo - 1.0, hi + 1.0, (lo + hi) / 2]
    _, quantum, _ = _units(utility)
    if utility.form == "gradient_norm" and utility.domain.dim == 1:
        theta = grid[len(grid) // 3, 0]
        if isinstance(utility, ClippedMean):  # (θ - x)/q = 3.5 at θ (and at every 4th point)
            rows.append(np.array([theta - 3.5 * quantum]))
        else:  # x = 1: (θ·1 - y)·1/q = 5.5
            rows.append(np.array([1.0, theta - 5.5 * quantum]))
    if isinstance(utility, KMeans):
        axis = np.unique(grid[:, 0])
        rows += [np.array([(axis[5] + axis[9]) / 2]), np.array([(axis[10] + axis[11]) / 2])]
        if utility.form == "gradient_norm" and utility.k == 2:
            rows.append(np.array([axis[30] - 5.5 * quantum]))  # (c - x)/q = 5.5 at c = axis[30]
    if isinstance(utility, LogisticRegression):
        rows = [np.append(r[:-1], float(r[-1] > 0.5)) for r in rows]  # labels stay 0 or 1
    return np.array(rows)


def _corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """All 2^d corners of the box [lo, hi], (2^d, d)."""
    axes = np.meshgrid(*zip(lo, hi, strict=True), indexing="ij")
    return np.array(axes).reshape(lo.size, -1).T


def _extreme_thetas(utility) -> np.ndarray:
    """θ ∈ Θ off the public grid where one record's contribution peaks: the box's corners, or
    points of the ball's sphere along the axes and towards the feature box's corners."""
    domain = utility.domain
    if domain.kind == "box":
        return _corners(np.array(domain.lower), np.array(domain.upper))
    corners = _corners(np.array(utility.feature_lower), np.array(utility.feature_upper))
    directions = np.vstack([np.eye(domain.dim), -np.eye(domain.dim), corners, -corners])
    return directions / np.linalg.norm(directions, axis=1, keepdims=True) * domain.radius


def _sums(utility, records: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Σ_x of the per-record integer contributions at every grid point, (g, width) int64."""
    gradient, quantum, unit = _units(utility)
    clipped = np.ascontiguousarray(utility.clip_records(records))
    out = np.empty((grid.shape[0], grid.shape[1] if gradient else 1), dtype=np.int64)
    utility.grid_sums(clipped, grid, quantum, unit if gradient else 0, out)
    return out


def _scores(utility, sums: np.ndarray) -> np.ndarray:
    """ũ from the sums, independently of grid.py: -⌈|Σĝ|⌉ (the float root is exact enough
    while |Σĝ|² < 2^50: √(r² + 1) - r > r·2^-52) or -Σ round(ℓ/q)."""
    if utility.form == "loss":
        return -sums[:, 0]
    square = np.sum(sums * sums, axis=1)
    assert square.max() < 2**50
    return -np.ceil(np.sqrt(square.astype(float))).astype(np.int64)


@dataclass(frozen=True)
class GridCase:
    utility: object
    grid: np.ndarray
    records: np.ndarray  # D, N random records
    crafted: np.ndarray  # adversarial records, one per row
    base: np.ndarray  # sums over D
    singles: np.ndarray  # sums over {x} for each crafted x, (m, g, width)


@functools.cache
def _case(name: str, form: str) -> GridCase:
    utility = FAMILIES[name](form)
    grid = np.ascontiguousarray(public_grid(utility.domain))
    rng = np.random.default_rng(CASES.index((name, form)))
    records = _random_records(utility, rng, N)
    crafted = _crafted(utility, grid)
    singles = np.array([_sums(utility, x[None], grid) for x in crafted])
    return GridCase(utility, grid, records, crafted, _sums(utility, records, grid), singles)


@pytest.mark.parametrize("name,form", CASES)
def test_a_record_contribution_does_not_depend_on_the_batch(name: str, form: str) -> None:
    """grid_sums(D ∪ X) - grid_sums(D) == Σ_{x ∈ X} grid_sums({x}) exactly (int64) at every grid
    point, with the crafted records X placed first, in the middle and last (every record of D
    moves within the batch), and removing records of D (first, middle, last) takes away exactly
    their own contributions; grid_scores equals -⌈|Σĝ|⌉ (or -Σ) of those sums."""
    case = _case(name, form)
    utility, grid, records, crafted = case.utility, case.grid, case.records, case.crafted
    thirds = np.array_split(crafted, 3)
    batch = np.vstack([thirds[0], records[: N // 2], thirds[1], records[N // 2 :], thirds[2]])
    assert np.array_equal(_sums(utility, batch, grid) - case.base, case.singles.sum(axis=0))
    removed = [0, N // 2, N - 1]
    rest = np.delete(records, removed, axis=0)
    own = sum(_sums(utility, records[i][None], grid) for i in removed)
    assert np.array_equal(case.base - _sums(utility, rest, grid), own)
    assert grid_scores(utility, records, grid) == _scores(utility, case.base).tolist()


def _reference_contribution(utility, x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """One clipped record's integer contribution at every grid point from grid_scores.py's
    docstring, in NumPy with the kernels' order of float operations (sums over coordinates left
    to right; no FMA): loss round(min(max(ℓ, 0), B)/q); gradient g clipped to norm G, then
    floor(g_a/q + 1/2) per coordinate. Nearest centre: the first minimum (ties to the lowest
    index). Logistic uses math.exp / math.log1p element by element (the kernels' libm)."""
    gradient, quantum, unit = _units(utility)
    theta = grid
    if isinstance(utility, (ClippedMean, KMeans)):
        k = utility.k if isinstance(utility, KMeans) else 1
        d = x.size
        dists = []
        for j in range(k):
            s = np.zeros(len(theta))
            for a in range(d):
                diff = theta[:, j * d + a] - x[a]
                s = s + diff * diff
            dists.append(s)
        dists = np.array(dists)
        nearest = np.argmin(dists, axis=0)
        if not gradient:
            c = math.inf if utility.clip is None else utility.clip
            loss = np.minimum(dists.min(axis=0), min(c, utility.diameter) ** 2)
        else:
            g = np.zeros_like(theta)
            for a in range(d):
                cols = nearest * d + a
                g[np.arange(len(theta)), cols] = theta[np.arange(len(theta)), cols] - x[a]
    else:
        dot = np.zeros(len(theta))
        for a in range(x.size - 1):
            dot = dot + theta[:, a] * x[a]
        y = x[-1]
        if isinstance(utility, LinearRegression):
            residual = dot - y
            loss = 0.5 * residual * residual
            g = residual[:, None] * x[None, :-1]
        else:
            m = y * dot
            e = np.array([math.exp(-abs(v)) for v in m])
            loss = np.maximum(-m, 0.0) + np.array([math.log1p(v) for v in e])
            sig = np.where(m >= 0.0, e, 1.0) / (1.0 + e)
            g = (-y * x[None, :-1]) * sig[:, None]
    if not gradient:
        bound = utility.loss_bound
        return np.floor(np.minimum(np.maximum(loss, 0.0), bound) / quantum + 0.5)[:, None]
    big_g = utility.gradient_bound
    sq = np.zeros(len(theta))
    for a in range(g.shape[1]):
        sq = sq + g[:, a] * g[:, a]
    scale = np.ones(len(theta))
    over = sq > big_g * big_g
    scale[over] = big_g / np.sqrt(sq[over])
    rounded = np.floor(g * scale[:, None] / quantum + 0.5)
    keep = np.sum(rounded * rounded, axis=1) <= unit * unit
    assert keep.all()  # |ĝ| <= K: the limit never binds
    return rounded


@pytest.mark.parametrize("name,form", CASES)
def test_contributions_follow_the_documented_rounding(name: str, form: str) -> None:
    """The kernels' per-record integers equal the docstring's formula evaluated in NumPy, bit
    for bit, for the crafted records (corners, ties, exact .5 roundings) and 5 random ones."""
    case = _case(name, form)
    utility, grid = case.utility, case.grid
    for x, single in zip(case.crafted, case.singles, strict=True):
        clipped = utility.clip_records(x[None])[0]
        assert np.array_equal(_reference_contribution(utility, clipped, grid), single)
    for x in case.records[:5]:
        clipped = utility.clip_records(x[None])[0]
        single = _sums(utility, x[None], grid)
        assert np.array_equal(_reference_contribution(utility, clipped, grid), single)


def _peak_units(utility) -> float:
    """The largest single contribution in units of q over Θ and the records: G/q, except the
    logistic gradient |g| <= X·σ(RX) < G (loss forms: B/q, attained at Θ's extremes)."""
    _, quantum, _ = _units(utility)
    if utility.form == "gradient_norm" and isinstance(utility, LogisticRegression):
        rx = utility.radius * utility.gradient_bound
        return utility.gradient_bound / (1 + math.exp(-rx)) / quantum
    return QUANTUM_DIVISIONS


@pytest.mark.parametrize("name,form", CASES)
def test_integer_sensitivities_hold(name: str, form: str) -> None:
    """On the public grid and at Θ's extremes (box corners, sphere points): gradient form,
    every record's rounded vector has |ĝ| <= K (the ``limit`` unit), so |ũ(D + x) - ũ(D)| <= K,
    osc <= 2K = Δ̃_osc(add/remove), and replace-one moves ũ by <= 2K with osc <= 4K; loss
    form, each contribution lies in [0, ⌈B/q⌉] = [0, Δ̃_osc]. At the extremes the crafted
    records reach the peak (G/q - √d/2 after rounding; B/q rounds to 1024), so neither the
    units nor this check are loose."""
    case = _case(name, form)
    utility = case.utility
    gradient, quantum, unit = _units(utility)
    add, replace = _osc(utility, "add_remove"), _osc(utility, "replace_one")
    dim = utility.domain.dim
    if gradient:
        assert unit == math.ceil(QUANTUM_DIVISIONS + math.sqrt(dim) / 2)
        assert (add, replace) == (2 * unit, 4 * unit)
    else:
        assert unit == grid_sensitivity(utility.loss_bound, quantum)
        assert (add, replace) == (unit, 2 * unit)
    thetas = np.ascontiguousarray(_extreme_thetas(utility))
    extreme = np.array([_sums(utility, x[None], thetas) for x in case.crafted])
    peak = np.sqrt(np.sum(extreme.astype(float) ** 2, axis=2)).max()
    assert peak >= _peak_units(utility) - (math.sqrt(dim) / 2 if gradient else 0.5)
    points = [
        (case.grid, case.base, case.singles),
        (thetas, _sums(utility, case.records, thetas), extreme),
    ]
    for grid, base_sums, singles in points:
        if gradient:
            assert np.sum(singles * singles, axis=2).max() <= unit**2
        else:
            assert singles.min() >= 0 and singles.max() <= unit
        base = _scores(utility, base_sums)
        victim = _sums(utility, case.records[7][None], grid)
        for single in singles:
            diff = _scores(utility, base_sums + single) - base
            assert np.max(np.abs(diff)) <= unit and np.ptp(diff) <= add
            diff = _scores(utility, base_sums - victim + single) - base
            assert np.max(np.abs(diff)) <= replace // 2 and np.ptp(diff) <= replace


@pytest.mark.parametrize("name,form", CASES)
def test_integer_scores_track_the_float_utility(name: str, form: str) -> None:
    """ũ(θ_g)·q = u(D, θ_g) up to the rounding: per record at most √d/2 units of q for the
    gradient vector (d = dim θ) plus one unit for the ceiling, or 1/2 unit for the loss; the
    float utility's own error (1e-12·n·bound) is negligible beside it."""
    case = _case(name, form)
    utility, grid = case.utility, case.grid
    gradient, quantum, _ = _units(utility)
    u = -utility.loss(utility.prepare(case.records), grid)[0]
    scaled = _scores(utility, case.base) * quantum
    if gradient:
        tolerance = N * quantum * math.sqrt(grid.shape[1]) / 2 + quantum
    else:
        tolerance = N * quantum / 2
    assert np.max(np.abs(scaled - u)) <= tolerance * (1 + 1e-9)
    # and the rounding is not the whole story: the scores vary by far more than the tolerance
    assert np.ptp(u) > 20 * tolerance


@pytest.mark.parametrize(
    "lower,upper,epsilon,meshes",
    [((0.0,), (100.0,), 50.0, 6), ((0.0, 0.0), (100.0, 100.0), 10.0, 1)],
    ids=["1d", "2d"],
)
def test_exact_mean_release_finds_the_mean(lower, upper, epsilon, meshes) -> None:
    """Gradient form, n = 5000 records in [20, 60]^d: the release lies within ``meshes`` mesh
    widths h of the sample mean m per axis. With E = n q √d/2 + q the worst-case rounding of a
    score, a grid point with |θ - m| > |θ_b - m| + 2E/n + t (θ_b the nearest grid point,
    |θ_b - m| <= h√d/2) has relative weight < e^{-λnt}; t = (log 4096 + 30)/(λn) leaves all
    of them together below e^{-30}. 1-D (ε = 50): h = 0.0244, q = 0.0977, λn = 1249,
    h/2 + 2E/n + t = 0.0122 + 0.0977 + 0.0307 = 0.141 < 6h = 0.146. 2-D (ε = 10):
    h = 1.5625, λn = 177; a point with |δ|_∞ > h has |δ| > h, and h/√2 + 2E/n + t =
    1.105 + 0.195 + 0.217 = 1.517 < h."""
    rng = np.random.default_rng(40)
    n = 5000
    utility = ClippedMean(lower, upper)
    records = rng.uniform(20.0, 60.0, size=(n, len(lower)))
    mean = records.mean(axis=0)
    h = (upper[0] - lower[0]) / round(4096 ** (1 / len(lower)))
    _, quantum, _ = _units(utility)
    lam = grid_inverse_temperature(utility, epsilon, "add_remove")
    t = (math.log(4096) + 30) / (lam * n)
    slack = 2 * (quantum * math.sqrt(len(lower)) / 2 + quantum / n) + t
    assert h * math.sqrt(len(lower)) / 2 + slack <= meshes * h  # the docstring's arithmetic
    release = ExponentialMechanism(utility, epsilon, n_max=n, method="exact").sample(records, 1)
    assert np.all(np.abs(release.samples[0] - mean) <= meshes * h)
