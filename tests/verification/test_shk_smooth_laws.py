"""SHK releases of smooth utilities against the exact exponential-mechanism law.

Companion of :mod:`test_shk_median_law` for utilities with a continuous loss, in both forms
(accuracy note §3):

* loss form (``form="loss"``, the first landing's Gibbs posteriors): the clipped mean
  u(D, θ) = −Σ min(|θ − x|², c²) in 1-D and 2-D (a box), and logistic regression on a ball (MALA
  with a real gradient, proposals rejected outside the ball);
* gradient-norm form (the default, the K-norm gradient mechanism), u(D, θ) = −|Σ_x g(θ; x)|: the
  mean without a clip in 1-D and 2-D, where π ∝ exp(−λn|θ − x̄|) (a truncated Laplace law of
  scale 1/(λn) = 2.1e-4 in 1-D, a planar cone of scale 3.0e-4 in 2-D, n = 10^4, ε = 1), and
  linear regression on the unit disc, π ∝ exp(−λ|X'X(θ − θ_OLS)|) (marginal scales ≈ 3e-3); and
  the mean with a binding clip in 1-D and 2-D (finding 4).

The EM law π ∝ exp(−λL) is computed by midpoint quadrature on a grid of Θ — for the
gradient-norm laws, 600–5000 times narrower than Θ, on a window of Θ that a coarse pass locates
(:func:`_window`; 10^5 cells in 1-D, ≥ 8 per scale in 2-D) — and the closed forms check that
oracle: sup |F_quad − F| ≤ 1.5e-7 (1-D mean), 3.4e-4 (2-D mean), 1.0e-4 (regression), at λ and
2λ. The public seeded SHK sampler runs with the schedule ``ExponentialMechanism.plan`` fixes
(``SHKSchedule.run``), and the released particles are compared, marginal by marginal, with the
exact law at the reported λ.

Threshold: the i.i.d. Kolmogorov critical value at level 0.001, 1.949/√N, justified for these
exchangeable particles as in the median module (distinct positions at release). Loss form (before
the gradient-norm default; the same utilities): over 10 seeds the 1-D mean's distances had mean
0.0108 and maximum 0.0134, the 2-D mean's marginals mean 0.0140 and maximum 0.0268, with the 2λ
laws at KS ≥ 0.079; over 5 seeds the logistic marginals had mean 0.0147 and maximum 0.0179, the
2λ law at ≥ 0.136 (threshold 0.0308). Gradient-norm form (ε = 1, 10^4 records): the 1-D mean over
40 seeds mean 0.0136 (the i.i.d. expectation is 0.0137), maximum 0.0337 (seed 0, finding 3; the
next largest 0.0235); the 2-D mean's marginals over 10 seeds mean 0.0133, maximum 0.0224; the
regression's marginals over 10 seeds mean 0.0140, maximum 0.0221; the 2λ laws at KS ≥ 0.122
(four times the threshold; the test asks for twice).

Findings.

1. The loss-form laws are far narrower than the KDE bandwidth (1-D mean: sd 2.4e-3 against
   bandwidth 0.019; 2-D mean: sd ≈ 5e-3 against 0.025; logistic: sd 0.13 against 0.20). Without
   the relaxation phase the released particles were nowhere near them (KS 0.30–0.51 in 1-D,
   0.54–0.73 per marginal in 2-D, 0.37 / 0.45 for logistic): the finite-N KDE birth–death
   sharpens the law.
2. The gradient-norm laws are narrower still (1-D: scale 2.1e-4 against bandwidth 0.019), and
   without the relaxation phase the flow collapses: the 1-D mean's release sits on 1–3 distinct
   positions (KS 0.62–0.86, 4 seeds), the 2-D mean's and the regression's on a single one (KS
   1.0 and 0.96 / 0.998: outside the window, > 40 scales from the minimiser). The relaxation
   phase (180 moves here) restores the law (above).
3. Seed 0 of the 1-D gradient-norm mean fails the law test: KS 0.0337 > 0.0308 (i.i.d.
   p = 2.2e-4). The cloud sits 0.057 scales right of the mean (2.5 i.i.d. standard deviations;
   46.8% of the particles below it); with 360 relaxation moves the same seed gives 0.0124 (720:
   0.0150). Over 20 seeds the cloud's centre spreads 1.3 times the i.i.d. value: the default
   relaxation leaves a little of the flow's collapse, so the i.i.d. threshold is marginal here.
   Kept as a strict expected failure (:data:`KNOWN_FAILURES`).
4. The 1-D gradient-norm mean with a binding clip (c = 0.2 < diam Θ = 1) missed its law: KS
   0.13–0.50 over 10 seeds (mean 0.28), down to 762 distinct positions (3239 particles on one
   value). The relaxation's smallest proposal sd was scale(Θ)/(λU) = 2.1e-4 with U = n_max·c,
   which presumes the potential rises by at most λU over scale(Θ); the gradient-norm potential's
   slope is λ·#{|θ − x| < c}, up to λn, so the law's width 1/(λ·7945) = 5.3e-5 was 4 times below
   the smallest proposal. The 2-D mean with c = 0.3 likewise: KS 0.058 / 0.052 (seed 0). The fix:
   the gradient-norm utilities carry a public slope bound n_max·H (H the per-record gradient's
   Lipschitz constant) and the relaxation reaches down to 1/(λ n_max H) (``relaxation_schedule``;
   37 more moves in 1-D). After it, the 1-D clipped mean over 10 seeds: KS mean 0.0145, maximum
   0.0296 (seed 1); the 2-D one passes at seed 0, and seeds 1–2 give marginals 0.0088–0.0123
   (4 minutes per seed under the record passes on a loaded 2-core machine: `-m full` only).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import special, stats

from dp_core.engine.langevin import BOX
from dp_core.privacy.mechanism import ExponentialMechanism
from dp_core.privacy.utilities import LinearRegression, LogisticRegression, UtilityPotential
from dp_core.privacy.utilities.mean import ClippedMean

Utility = ClippedMean | LinearRegression | LogisticRegression
Cdf = Callable[[np.ndarray], np.ndarray]

N_PARTICLES = 4000
KS_CRITICAL = 1.949 / math.sqrt(N_PARTICLES)  # i.i.d. Kolmogorov, level 0.001: 0.0308
EPSILON = 1.0
GRID_1D = 400_000
GRID_2D = 1000
GRID_BALL = 400  # cells of 0.02 against a law of sd 0.13
WINDOW_COARSE = 400  # coarse cells per axis that locate a narrow law (Case.window)
WINDOW_CUT = 40.0  # the window keeps every coarse cell with λ(L − min L) <= 40, plus 2 cells
WINDOW_EDGE = 20.0  # ... and the fine grid checks λ(L − min L) >= 20 on its inner edges


def _release(utility: Utility, records: np.ndarray, seed: int, **overrides: int):
    """(particles (N, d), λ) of the public seeded run exactly as the mechanism plans it."""
    mechanism = ExponentialMechanism(
        utility, EPSILON, n_max=records.shape[0], particles=N_PARTICLES, **overrides
    )
    schedule = mechanism.plan(1).schedule
    assert schedule is not None
    lam = schedule.inverse_temperature
    potential = UtilityPotential(utility, utility.prepare(records), lam)
    return schedule.run(potential, utility.domain, private=False, seed=seed).particles, lam


def _plan_inverse_temperature(utility: Utility, records: np.ndarray) -> float:
    mechanism = ExponentialMechanism(
        utility, EPSILON, n_max=records.shape[0], particles=N_PARTICLES
    )
    schedule = mechanism.plan(1).schedule
    assert schedule is not None
    return schedule.inverse_temperature


# --------------------------------------------------------------------------- the oracle
def _bounding_box(utility: Utility) -> tuple[np.ndarray, np.ndarray]:
    kind, a, b = utility.domain.engine_arrays()
    return (a, b) if kind == BOX else (a - b, a + b)


def _cell_grid(
    lower: np.ndarray, upper: np.ndarray, cells: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Cell centres per axis and all of them as points, (cells^d, d)."""
    unit = (np.arange(cells) + 0.5) / cells
    axes = [lo + (hi - lo) * unit for lo, hi in zip(lower, upper, strict=True)]
    mesh = np.meshgrid(*axes, indexing="ij")
    return axes, np.column_stack([m.ravel() for m in mesh])


def _losses(utility: Utility, prepared, points: np.ndarray) -> np.ndarray:
    """L = −u at the points, +inf outside Θ (a ball's corners weigh nothing)."""
    kind, a, b = utility.domain.engine_arrays()
    inside = (
        np.ones(points.shape[0], dtype=bool)
        if kind == BOX
        else np.linalg.norm(points - a, axis=1) <= b[0]
    )
    loss = np.full(points.shape[0], np.inf)
    loss[inside] = utility.loss(prepared, np.ascontiguousarray(points[inside]))[0]
    return loss


def _window(utility: Utility, prepared, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """The sub-box of Θ's bounding box where π ∝ exp(−λL) lives: the coarse cells with
    λ(L − min L) <= WINDOW_CUT, widened by two coarse cells on each side (clipped to the box)."""
    lower, upper = _bounding_box(utility)
    axes, points = _cell_grid(lower, upper, WINDOW_COARSE)
    loss = _losses(utility, prepared, points)
    keep = (lam * (loss - loss.min()) <= WINDOW_CUT).reshape((WINDOW_COARSE,) * len(axes))
    lo, hi = [], []
    for axis, centres in enumerate(axes):
        others = tuple(k for k in range(len(axes)) if k != axis)
        kept = np.flatnonzero(keep.any(axis=others) if others else keep)
        step = centres[1] - centres[0]
        lo.append(max(lower[axis], centres[kept[0]] - 2.5 * step))
        hi.append(min(upper[axis], centres[kept[-1]] + 2.5 * step))
    return np.array(lo), np.array(hi)


def _marginal_cdfs(
    utility: Utility,
    records: np.ndarray,
    lams: tuple[float, ...],
    cells: int,
    window: bool = False,
) -> list[list[Cdf]]:
    """Exact (to quadrature) marginal CDFs of π ∝ exp(−λL) on Θ, per λ and axis: midpoint rule
    on a grid of the bounding box, cells outside Θ (a ball's corners) weigh nothing. The loss is
    evaluated once for all λ.

    ``window``: the grid covers only :func:`_window` at the smallest λ (the widest law), for
    laws far narrower than Θ (the gradient-norm laws, width ~ 1/(λn)). The fine grid checks
    λ(L − min L) >= WINDOW_EDGE on every edge of the window inside Θ's box; beyond it L keeps
    growing (convex L for the unclipped mean and the regression, |A| with A monotone for the
    1-D clipped mean), so the mass left out is of order e^{−20} of the law's. The closed forms
    check the whole oracle (:func:`test_quadrature_matches_the_closed_form_law`)."""
    prepared = utility.prepare(records)
    lower, upper = _bounding_box(utility)
    box_lower, box_upper = lower, upper
    if window:
        lower, upper = _window(utility, prepared, min(lams))
    axes, points = _cell_grid(lower, upper, cells)
    loss = _losses(utility, prepared, points)
    loss = (loss - loss[np.isfinite(loss)].min()).reshape((cells,) * len(axes))
    if window:
        for axis in range(len(axes)):
            for end, inner in (
                (0, lower[axis] > box_lower[axis]),
                (-1, upper[axis] < box_upper[axis]),
            ):
                if inner:
                    edge = np.take(loss, end, axis=axis)
                    assert min(lams) * edge.min() >= WINDOW_EDGE, (axis, end)
    out = []
    for lam in lams:
        weights = np.exp(-lam * loss)
        cdfs = []
        for axis, centres in enumerate(axes):
            others = tuple(k for k in range(len(axes)) if k != axis)
            mass = np.cumsum(weights.sum(axis=others) if others else weights)
            faces = centres + 0.5 * (centres[1] - centres[0])
            cdfs.append(
                lambda t, f=mass / mass[-1], x=faces: np.interp(t, x, f, left=0.0, right=1.0)
            )
        out.append(cdfs)
    return out


# --------------------------------------------------------------------------- closed forms
def _truncated_laplace_cdf(centre: float, scale: float, lower: float, upper: float) -> Cdf:
    """CDF of the law ∝ exp(−|θ − centre|/scale) on [lower, upper]."""

    def untruncated(x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, dtype=np.float64) - centre) / scale
        return np.where(
            z < 0, 0.5 * np.exp(np.minimum(z, 0.0)), 1 - 0.5 * np.exp(-np.maximum(z, 0.0))
        )

    lo, hi = untruncated(lower), untruncated(upper)
    return lambda t: (untruncated(np.clip(t, lower, upper)) - lo) / (hi - lo)


def _cone_marginal_cdf(centre: float, scale: float) -> Cdf:
    """Marginal CDF of the planar law ∝ exp(−|v|/scale) (v ∈ ℝ², centred): the density of one
    coordinate x is ∝ |x| K₁(|x|/scale), so F(x) = ½ + sign(x)/π ∫₀^{|x|/s} z K₁(z) dz, with
    ∫₀^a z K₁ = ∫₀^a K₀ − a K₀(a) (integration by parts, K₁ = −K₀′) and ∫₀^∞ z K₁ = π/2."""

    def cdf(t: np.ndarray) -> np.ndarray:
        z = (np.asarray(t, dtype=np.float64) - centre) / scale
        a = np.abs(z)
        with np.errstate(invalid="ignore"):  # a·K₀(a) at a = 0
            part = special.iti0k0(a)[1] - np.where(a > 0, a * special.k0(a), 0.0)
        return 0.5 + np.sign(z) * part / math.pi

    return cdf


# --------------------------------------------------------------------------- cases
def _beta_records(shape: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(3).beta(2.0, 5.0, shape)


def _labelled_records(n: int) -> np.ndarray:
    """Features uniform on [0, 1]², label 1 above the line x₂ = 0.3 + 0.4 x₁."""
    x = np.random.default_rng(1).uniform(0.0, 1.0, (n, 2))
    return np.c_[x, (x[:, 1] > 0.3 + 0.4 * x[:, 0]).astype(np.float64)]


def _regression_records(n: int) -> np.ndarray:
    """Features uniform on [−1, 1]², target x·(0.5, −0.3) + N(0, 0.2²) (accuracy note §3)."""
    rng = np.random.default_rng(4)
    x = rng.uniform(-1.0, 1.0, (n, 2))
    return np.c_[x, x @ np.array([0.5, -0.3]) + 0.2 * rng.standard_normal(n)]


@dataclass(frozen=True)
class Case:
    utility: Utility
    records: Callable[[], np.ndarray]
    cells: int  # quadrature cells per axis
    seeds: tuple[int, ...]  # the default run's seeds
    full_seeds: tuple[int, ...] = ()  # the further seeds of `-m full`
    window: bool = False  # quadrature on the window where a narrow law lives


CASES: dict[str, Case] = {
    # ---- loss form (the first landing's Gibbs posteriors): form="loss" explicitly
    # 1-D mean: prefix-sum path, 10^4 records; law sd 2.4e-3
    "mean_1d": Case(
        ClippedMean((0.0,), (1.0,), 0.2, form="loss"),
        lambda: _beta_records((10_000, 1)),
        GRID_1D,
        (0, 1, 2),
        tuple(range(3, 10)),
    ),
    # 2-D mean: clip below the diameter, so the fused pass over 2000 records
    "mean_2d": Case(
        ClippedMean((0.0, 0.0), (1.0, 1.0), 0.3, form="loss"),
        lambda: _beta_records((2_000, 2)),
        GRID_2D,
        (0, 1),
        tuple(range(2, 10)),
    ),
    # logistic regression on the ball of radius 4 (MALA with a gradient, ball rejection)
    "logistic_2d": Case(
        LogisticRegression((0.0, 0.0), (1.0, 1.0), 4.0, form="loss"),
        lambda: _labelled_records(2_000),
        GRID_BALL,
        (0,),
        (1, 2, 3, 4),
    ),
    # ---- gradient-norm form (the default): u = −|Σ g(θ; x)|, a cone point at the minimiser
    # 1-D mean, no clip: π ∝ exp(−λn|θ − mean|) on [0, 1], λ = 0.475, scale 1/(λn) = 2.1e-4;
    # window 0.0275 wide, cells of 2.8e-7. Seed 0 is a known failure (KNOWN_FAILURES).
    "gn_mean_1d": Case(
        ClippedMean((0.0,), (1.0,)),
        lambda: _beta_records((10_000, 1)),
        100_000,
        (1, 2, 3),
        tuple(range(4, 10)),
        window=True,
    ),
    # 1-D mean with a binding clip c = 0.2: λ = 0.95/(2c) = 2.375, slope λ·#{|θ − x| < c} ≈
    # 18900, scale 5.3e-5 (finding 4: the relaxation reaches down to 1/(λ n_max))
    "gn_mean_1d_clip": Case(
        ClippedMean((0.0,), (1.0,), 0.2),
        lambda: _beta_records((10_000, 1)),
        100_000,
        (0, 1, 2),
        tuple(range(3, 10)),
        window=True,
    ),
    # 2-D mean with a binding clip c = 0.3: the record passes over 2000 records (minutes per
    # seed: `-m full` only); λ = 0.95/0.6, scale ≈ 1/(λ·1800) = 3.5e-4
    "gn_mean_2d_clip": Case(
        ClippedMean((0.0, 0.0), (1.0, 1.0), 0.3),
        lambda: _beta_records((2_000, 2)),
        GRID_2D,
        (),
        (0, 1, 2, 3),
        window=True,
    ),
    # 2-D mean, no clip: count and centred sum; π ∝ exp(−λn|θ − mean|), λ = 0.95/(2√2) = 0.336,
    # scale 3.0e-4 (marginal sd 5.2e-4); window ≈ 0.037 wide, cells of 3.7e-5
    "gn_mean_2d": Case(
        ClippedMean((0.0, 0.0), (1.0, 1.0)),
        lambda: _beta_records((10_000, 2)),
        GRID_2D,
        (0,),
        tuple(range(1, 10)),
        window=True,
    ),
    # linear regression on the unit ball: X'X, X'y; π ∝ exp(−λ|X'X(θ − θ_OLS)|), λ = 0.0984
    # (G = (2 + √2)√2), marginal scales ≈ 3/(λn) = 3.0e-3; window ≈ 0.27 wide, cells of 2.7e-4
    "gn_linear_2d": Case(
        LinearRegression((-1.0, -1.0), (1.0, 1.0), -2.0, 2.0, 1.0),
        lambda: _regression_records(10_000),
        GRID_2D,
        (0,),
        tuple(range(1, 10)),
        window=True,
    ),
}
LAW_CASES = [name for name, case in CASES.items() if case.seeds]
FULL_LAW_CASES = [name for name, case in CASES.items() if case.full_seeds]

KNOWN_FAILURES: dict[tuple[str, int], str] = {
    # (case, seed): the finding (module docstring)
    ("gn_mean_1d", 0): "KS 0.0337 > 0.0308 with the default 180 relaxation moves (0.0124 with "
    "360): the particles keep a little of the flow's collapse",
}


def _check_release(name: str, seeds: tuple[int, ...]) -> None:
    """Each marginal within the KS threshold of the λ law for every seed; the 2λ law rejected."""
    case = CASES[name]
    records = case.records()
    for seed in seeds:
        particles, lam = _release(case.utility, records, seed)
        exact, hot = _marginal_cdfs(case.utility, records, (lam, 2 * lam), case.cells, case.window)
        assert np.unique(particles, axis=0).shape[0] >= 0.95 * N_PARTICLES
        for axis in range(particles.shape[1]):
            column = particles[:, axis]
            assert stats.kstest(column, exact[axis]).statistic < KS_CRITICAL, (seed, axis)
            assert stats.kstest(column, hot[axis]).statistic > 2 * KS_CRITICAL, (seed, axis)


# --------------------------------------------------------------------------- the oracle's check
def _closed_form_marginals(name: str, lam: float) -> list[Cdf]:
    """The gradient-norm laws in closed form (module docstring), Θ's edges far away."""
    case = CASES[name]
    records = case.records()
    if name == "gn_mean_1d":
        scale = 1.0 / (lam * records.shape[0])
        return [_truncated_laplace_cdf(float(records.mean()), scale, 0.0, 1.0)]
    if name == "gn_mean_2d":
        scale = 1.0 / (lam * records.shape[0])
        return [_cone_marginal_cdf(float(c), scale) for c in records.mean(axis=0)]
    # exp(−λ|H(θ − θ̂)|): θ = θ̂ + H⁻¹v with v ∝ exp(−λ|v|), so θ_k − θ̂_k is a cone marginal of
    # scale |row k of H⁻¹|/λ
    assert name == "gn_linear_2d"
    stats_ = case.utility.prepare(records)
    inverse = np.linalg.inv(stats_.xtx)
    centre = inverse @ stats_.xty
    assert np.linalg.norm(centre) < 0.9  # the ball's edge is > 30 scales away
    return [
        _cone_marginal_cdf(float(centre[k]), float(np.linalg.norm(inverse[k])) / lam)
        for k in range(2)
    ]


@pytest.mark.parametrize("name", ["gn_mean_1d", "gn_mean_2d", "gn_linear_2d"])
def test_quadrature_matches_the_closed_form_law(name):
    """The windowed quadrature of the test's oracle against the closed-form gradient-norm laws
    at λ and 2λ: sup |F_quad − F| over the window is far below the KS threshold."""
    case = CASES[name]
    records = case.records()
    lam = _plan_inverse_temperature(case.utility, records)
    for factor in (1.0, 2.0):
        (quad,) = _marginal_cdfs(case.utility, records, (factor * lam,), case.cells, True)
        lower, upper = _window(case.utility, case.utility.prepare(records), factor * lam)
        for axis, exact in enumerate(_closed_form_marginals(name, factor * lam)):
            t = np.linspace(lower[axis], upper[axis], 100_001)
            error = np.max(np.abs(quad[axis](t) - exact(t)))
            assert error < 1e-3, (factor, axis, error)


# --------------------------------------------------------------------------- the sampler
@pytest.mark.parametrize("name", LAW_CASES)
def test_shk_release_matches_em_law(name):
    """Each marginal within the KS threshold of the λ law for every seed; the 2λ law rejected."""
    _check_release(name, CASES[name].seeds)


@pytest.mark.full
@pytest.mark.parametrize("name", FULL_LAW_CASES)
def test_shk_release_matches_em_law_over_more_seeds(name):
    """The same over the further seeds of the module docstring's measurements."""
    _check_release(name, CASES[name].full_seeds)


@pytest.mark.parametrize(
    ("name", "seed"),
    [
        pytest.param(
            name,
            seed,
            marks=pytest.mark.xfail(strict=True, reason=reason),
        )
        for (name, seed), reason in KNOWN_FAILURES.items()
    ],
)
def test_known_failures_of_the_law_test(name, seed):
    """The law test where the sampler fails it (module docstring, "Findings"); strict, so a
    sampler change that fixes one shows up as XPASS."""
    _check_release(name, (seed,))


@pytest.mark.parametrize("name", ["mean_1d", "mean_2d", "gn_mean_1d"])
def test_without_relaxation_the_release_misses_the_em_law(name):
    """The finding (module docstring): ``relaxation_moves=0`` leaves the particles far away."""
    case = CASES[name]
    records = case.records()
    particles, lam = _release(case.utility, records, 0, relaxation_moves=0)
    (exact,) = _marginal_cdfs(case.utility, records, (lam,), case.cells, case.window)
    assert stats.kstest(particles[:, 0], exact[0]).statistic > 5 * KS_CRITICAL
