"""Tests of the NumPy BDLS reference and its pairwise pieces (flows note §6, §9)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import dp_core.reference.bdls as bdls
from dp_core.errors import InvalidParameter
from dp_core.reference.bdls import (
    KernelKind,
    bdls_reference,
    birth_death_rates_reference,
    birth_death_sweep_reference,
    inside_domain_reference,
    kernel_grad_sum_reference,
    kernel_sum_reference,
    log_kde_reference,
    logsumexp_reference,
    mala_step_reference,
    softmax_barycentre_reference,
)
from dp_core.types import Domain

KINDS: tuple[KernelKind, ...] = ("gaussian", "imq", "laplace")


def standard_normal(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """V = |θ|²/2."""
    return 0.5 * np.sum(points**2, axis=1), points.copy()


def bimodal(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """V = −log(0.2 N(−2, 0.3²) + 0.8 N(2, 0.3²)) (flows note §6.3) and its derivative."""
    x = points[:, 0]
    means, sd = np.array([-2.0, 2.0]), 0.3
    log_terms = np.log([0.2, 0.8])[None, :] - 0.5 * ((x[:, None] - means) / sd) ** 2
    log_pi = logsumexp(log_terms, axis=1)
    resp = np.exp(log_terms - log_pi[:, None])
    dlog_pi = np.sum(resp * (-(x[:, None] - means) / sd**2), axis=1)
    return -log_pi, -dlog_pi[:, None]


def naive_kernel(kind: KernelKind, r: float, sigma: float) -> float:
    if kind == "gaussian":
        return float(np.exp(-(r**2) / (2 * sigma**2)))
    if kind == "imq":
        return float((1 + r**2 / sigma**2) ** -0.5)
    return float(np.exp(-r / sigma))


# --------------------------------------------------------------------------- pairwise pieces
@pytest.fixture
def small_sets() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(10)
    return rng.normal(size=(7, 3)), rng.normal(size=(11, 3)), rng.normal(size=11)


@pytest.mark.parametrize("kind", KINDS)
def test_kernel_sum_matches_double_loop(kind: KernelKind, small_sets) -> None:
    x, y, w = small_sets
    expected = [
        sum(w[j] * naive_kernel(kind, float(np.linalg.norm(x[i] - y[j])), 0.7) for j in range(11))
        for i in range(7)
    ]
    np.testing.assert_allclose(kernel_sum_reference(x, y, w, kind, 0.7), expected, rtol=1e-13)


@pytest.mark.parametrize("kind", KINDS)
def test_kernel_grad_sum_is_gradient_of_kernel_sum(kind: KernelKind, small_sets) -> None:
    """Central differences (step 1e-5, error O(1e-10)) of P1 in x_i reproduce P2."""
    x, y, w = small_sets
    grad = kernel_grad_sum_reference(x, y, w, kind, 0.7)
    step = 1e-5
    for k in range(3):
        e = np.zeros(3)
        e[k] = step
        fd = (
            kernel_sum_reference(x + e, y, w, kind, 0.7)
            - kernel_sum_reference(x - e, y, w, kind, 0.7)
        ) / (2 * step)
        np.testing.assert_allclose(grad[:, k], fd, rtol=1e-7, atol=1e-8)


def test_laplace_gradient_is_zero_at_coincident_points() -> None:
    x = np.array([[0.5, -1.0]])
    g = kernel_grad_sum_reference(x, x, np.ones(1), "laplace", 1.0)
    np.testing.assert_array_equal(g, 0.0)


def test_logsumexp_and_barycentre_match_direct_formula(small_sets) -> None:
    x, y, _ = small_sets
    rng = np.random.default_rng(11)
    log_w, pot, eps = rng.normal(size=11), rng.normal(size=11), 0.3
    d2 = np.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=2)
    scores = log_w + (pot - 0.5 * d2) / eps
    expected = np.log(np.sum(np.exp(scores), axis=1))
    np.testing.assert_allclose(logsumexp_reference(x, y, log_w, pot, eps), expected, rtol=1e-13)
    soft = np.exp(scores) / np.sum(np.exp(scores), axis=1, keepdims=True)
    bary = softmax_barycentre_reference(x, y, log_w, pot, eps)
    np.testing.assert_allclose(bary, soft @ y, rtol=1e-12, atol=1e-14)


def test_logsumexp_ignores_zero_weights_and_is_stable() -> None:
    x = np.array([[0.0], [100.0]])
    y = np.array([[0.0], [1.0], [2.0]])
    log_w = np.array([-np.inf, 0.0, 0.0])
    eps = 1e-3  # scores of order -5e6: a direct exp would underflow to 0
    lse = logsumexp_reference(x, y, log_w, np.zeros(3), eps)
    assert lse[0] == pytest.approx(-0.5 / eps + np.log1p(np.exp(-1.5 / eps)))
    assert lse[1] == pytest.approx(-0.5 * 98.0**2 / eps)
    bary = softmax_barycentre_reference(x, y, log_w, np.zeros(3), eps)
    np.testing.assert_allclose(bary, [[1.0], [2.0]])
    all_zero = logsumexp_reference(x, y, np.full(3, -np.inf), np.zeros(3), eps)
    assert np.all(all_zero == -np.inf)
    assert np.all(np.isnan(softmax_barycentre_reference(x, y, np.full(3, -np.inf), np.zeros(3), 1)))


def test_log_kde_matches_definition(small_sets) -> None:
    x, y, _ = small_sets
    h = 0.4
    d2 = np.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=2)
    expected = np.log(np.mean(np.exp(-d2 / (2 * h * h)), axis=1))
    np.testing.assert_allclose(log_kde_reference(x, y, h), expected, rtol=1e-12)


def test_chunking_does_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of one row (tiny chunk budget) give the same results as one block."""
    rng = np.random.default_rng(12)
    x, y, w = rng.normal(size=(9, 2)), rng.normal(size=(5, 2)), rng.normal(size=5)
    calls = {
        "sum": lambda: kernel_sum_reference(x, y, w, "imq", 0.5),
        "grad": lambda: kernel_grad_sum_reference(x, y, w, "gaussian", 0.5),
        "lse": lambda: logsumexp_reference(x, y, w, -w, 0.2),
        "bary": lambda: softmax_barycentre_reference(x, y, w, -w, 0.2),
    }
    whole = {name: f() for name, f in calls.items()}
    monkeypatch.setattr(bdls, "_CHUNK_ENTRIES", 7)
    for name, f in calls.items():
        np.testing.assert_allclose(f(), whole[name], rtol=1e-13, atol=1e-15, err_msg=name)


# --------------------------------------------------------------------------- birth–death
def test_t_bd_1_pure_reaction_conserves_n_and_copies_positions() -> None:
    """T-BD-1: N is conserved and every new position is an old one."""
    rng = np.random.default_rng(20)
    domain = Domain.box([-4.0], [4.0])
    x0 = rng.uniform(-4.0, 4.0, size=(300, 1))
    x1 = bdls_reference(bimodal, domain, x0, 0.5, 1, 0.1, rng, transport=False)
    assert x1.shape == x0.shape
    assert set(x1[:, 0].tolist()) <= set(x0[:, 0].tolist())
    assert np.count_nonzero(x1 != x0) > 30  # events did fire (dt = 0.5, |β| of order 1-10)


def test_t_bd_2_rates_invariant_under_constant_shifts() -> None:
    """T-BD-2: adding a constant to V, or scaling the KDE (a constant in logkde), changes no rate;
    the sampler then makes exactly the same moves."""
    rng = np.random.default_rng(21)
    logkde, v = rng.normal(size=50), rng.normal(size=50)
    beta = birth_death_rates_reference(logkde, v)
    assert abs(beta.mean()) < 1e-15
    np.testing.assert_allclose(birth_death_rates_reference(logkde, v + 7.0), beta, atol=1e-13)
    np.testing.assert_allclose(birth_death_rates_reference(logkde - 3.0, v), beta, atol=1e-13)

    def shifted(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        value, grad = bimodal(points)
        return value + 5.0, grad

    domain = Domain.box([-4.0], [4.0])
    x0 = np.random.default_rng(22).uniform(-4.0, 4.0, size=(200, 1))
    a = bdls_reference(bimodal, domain, x0, 0.1, 3, 0.1, np.random.default_rng(3), transport=False)
    b = bdls_reference(shifted, domain, x0, 0.1, 3, 0.1, np.random.default_rng(3), transport=False)
    np.testing.assert_array_equal(a, b)


def test_t_bd_3_event_counts_are_binomial() -> None:
    """T-BD-3: particle i fires with probability 1 − e^{−|β_i| dt}, independently.

    2000 sweeps of 100 particles: the total count is a sum of 2e5 Bernoullis, s.d. ≤ 224; the
    tolerance is 5 s.d. (two-sided probability 6e-7 for a fixed seed).
    """
    rng = np.random.default_rng(23)
    n, dt, sweeps = 100, 0.2, 2000
    beta = birth_death_rates_reference(np.zeros(n), rng.normal(scale=2.0, size=n))
    p = -np.expm1(-np.abs(beta) * dt)
    total = 0
    for _ in range(sweeps):
        _, fired = birth_death_sweep_reference(
            beta, dt, rng.permutation(n), rng.random(n), rng.random(n)
        )
        total += int(fired.sum())
    mean, sd = sweeps * p.sum(), np.sqrt(sweeps * np.sum(p * (1 - p)))
    assert abs(total - mean) < 5 * sd


def test_sweep_semantics_with_given_random_numbers() -> None:
    """Kill copies from the snapshot; duplication overwrites the partner; partners skip i."""
    beta = np.array([1.0, -1.0, 0.0, 0.5])
    u_event = np.array([0.0, 0.0, 0.0, 0.99])  # 0 and 1 fire; 2 has rate 0; 3 does not fire
    # partner draws: floor(u·3) = 2 for particle 0 -> j = 3 (skip i = 0 is 2 -> 3);
    # particle 1: floor(0.1·3) = 0 -> j = 0
    u_partner = np.array([0.9, 0.1, 0.5, 0.5])
    src, fired = birth_death_sweep_reference(beta, 1.0, [0, 1, 2, 3], u_event, u_partner)
    np.testing.assert_array_equal(fired, [True, True, False, False])
    np.testing.assert_array_equal(src, [1, 1, 2, 3])  # 0 killed by copy of 3, then 1 copied onto 0
    src2, _ = birth_death_sweep_reference(beta, 1.0, [1, 0, 2, 3], u_event, u_partner)
    np.testing.assert_array_equal(src2, [3, 1, 2, 3])  # other order: the kill is applied last
    one, fired_one = birth_death_sweep_reference([0.0], 1.0, [0], [0.0], [0.0])
    np.testing.assert_array_equal(one, [0])
    assert not fired_one[0]


# --------------------------------------------------------------------------- MALA
def test_mala_step_acceptance_formula_by_hand() -> None:
    """One particle, V = θ²/2, fixed ξ and u on both sides of the acceptance probability."""
    domain = Domain.box([-5.0], [5.0])
    x, dt, xi = np.array([[1.0]]), 0.3, np.array([[2.0]])
    y = 1.0 - dt * 1.0 + np.sqrt(2 * dt) * 2.0
    log_alpha = -(0.5 * y**2 - 0.5) - ((1.0 - y + dt * y) ** 2 - (y - 1.0 + dt) ** 2) / (4 * dt)
    alpha = min(1.0, np.exp(log_alpha))
    assert 0.05 < alpha < 0.95  # α ≈ 0.74: the test is informative on both sides
    v, g = np.array([0.5]), np.array([[1.0]])
    for u, accept in ((alpha * 0.99, True), (alpha * 1.01, False)):
        xn, vn, gn, acc = mala_step_reference(standard_normal, domain, x, v, g, dt, xi, [u])
        assert acc[0] == accept
        expected = y if accept else 1.0
        np.testing.assert_allclose(
            [xn[0, 0], vn[0], gn[0, 0]], [expected, expected**2 / 2, expected]
        )


@pytest.mark.parametrize(
    "domain", [Domain.box([-1.0, -1.0], [1.0, 1.0]), Domain.ball([0.0, 0.0], 1.0)]
)
def test_mala_rejects_proposals_outside_the_domain(domain: Domain) -> None:
    calls: list[np.ndarray] = []

    def recorded(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(points.copy())
        return standard_normal(points)

    x = np.array([[0.95, 0.0], [0.0, 0.0]])
    xi = np.array([[10.0, 0.0], [0.01, 0.0]])  # the first proposal leaves the domain
    v, g = standard_normal(x)
    xn, _, _, acc = mala_step_reference(recorded, domain, x, v, g, 0.01, xi, [0.0, 0.0])
    np.testing.assert_array_equal(acc, [False, True])
    np.testing.assert_array_equal(xn[0], x[0])
    assert len(calls) == 1 and calls[0].shape == (1, 2)  # V never evaluated outside
    assert np.all(inside_domain_reference(domain, xn))


def test_inside_domain() -> None:
    ball = Domain.ball([1.0, 0.0], 2.0)
    pts = np.array([[3.0, 0.0], [3.0, 0.1], [1.0, -2.0]])
    np.testing.assert_array_equal(inside_domain_reference(ball, pts), [True, False, True])
    box = Domain.box([0.0, 0.0], [1.0, 2.0])
    box_pts = np.array([[0.0, 2.0], [1.0, 2.1], [0.5, 1.0], [-1e-12, 1.0]])
    np.testing.assert_array_equal(inside_domain_reference(box, box_pts), [True, False, True, False])


def test_pure_mala_preserves_truncated_normal() -> None:
    """Started from exact i.i.d. samples of N(0, 1) truncated to [−2, 2], 20 MALA steps keep that
    law (MALA with rejection outside Θ is π-invariant; no reaction, so particles stay i.i.d.).

    KS test at α = 0.01: critical value 1.628/√N = 0.0257 for N = 4000 (fixed seed).
    """
    rng = np.random.default_rng(30)
    n = 4000
    law = stats.truncnorm(-2.0, 2.0)
    x0 = law.rvs(size=(n, 1), random_state=rng)
    x = bdls_reference(
        standard_normal, Domain.box([-2.0], [2.0]), x0, 0.1, 20, 0.1, rng, reaction=False
    )
    assert np.mean(x != x0) > 0.8  # the chain moves: the test is not passed by standing still
    ks = stats.kstest(x[:, 0], law.cdf).statistic
    assert ks < 1.628 / np.sqrt(n)


def test_bdls_bimodal_mode_mass_follows_mean_field_law() -> None:
    """T-BD-4 / flows note §6.3, with MALA transport on the box [−4, 4]: the fraction of particles
    with x > 0 at t = 3 follows (F 33), log r(t) = e^{−t} log r₀ + (1 − e^{−t}) log 4.

    N = 1000, dt = 0.02 (150 steps; the note's dt = 0.01 doubles the runtime, the F 33 limit is
    the same), h = 0.1. Tolerance 4·√(0.16/N) + 0.01 = 0.061: four binomial s.d. of a
    fraction near 0.8 plus 0.01 for the finite-N / KDE bias (the note measured ≤ 0.005).
    Plain MALA without reaction stays near its initial fraction (barrier ≈ 22, §6.2).
    """
    n, dt, t_end = 1000, 0.02, 3.0
    domain = Domain.box([-4.0], [4.0])
    x0 = np.random.default_rng(40).uniform(-4.0, 4.0, size=(n, 1))
    frac0 = float(np.mean(x0 > 0))
    steps = round(t_end / dt)
    x = bdls_reference(bimodal, domain, x0, dt, steps, 0.1, np.random.default_rng(41))
    log_r = np.exp(-t_end) * np.log(frac0 / (1 - frac0)) + (1 - np.exp(-t_end)) * np.log(4.0)
    expected = 1.0 / (1.0 + np.exp(-log_r))
    assert abs(float(np.mean(x > 0)) - expected) < 4 * np.sqrt(0.16 / n) + 0.01
    x_mala = bdls_reference(
        bimodal, domain, x0, dt, steps, 0.1, np.random.default_rng(42), reaction=False
    )
    assert abs(float(np.mean(x_mala > 0)) - frac0) < 0.02


def test_bdls_validates_inputs() -> None:
    domain = Domain.box([-1.0], [1.0])
    rng = np.random.default_rng(0)
    with pytest.raises(InvalidParameter):
        bdls_reference(standard_normal, domain, [[2.0]], 0.1, 1, 0.1, rng)
    with pytest.raises(InvalidParameter):
        bdls_reference(standard_normal, domain, [[0.0]], -0.1, 1, 0.1, rng)
    with pytest.raises(InvalidParameter):
        bdls_reference(standard_normal, domain, [[0.0]], 0.1, 1, 0.0, rng)
    single = bdls_reference(standard_normal, domain, [[0.0]], 0.1, 5, 0.1, rng)
    assert single.shape == (1, 1)
