"""The SHK release of a 1-D median against the exact exponential-mechanism law.

The rank utility u(D, θ) = −|N_D(θ) − q·n| (certificates note §9.1) is piecewise constant in θ,
so π_D(θ) ∝ exp(−λ·L(θ)), L = −u, is piecewise constant between the sorted records and its CDF is
computed exactly (:func:`em_cdf`). The public (seeded) SHK sampler is run with the schedule that
``ExponentialMechanism.plan`` fixes from public parameters, and the particle law at t_cert is
compared with the exact EM law at the *reported* inverse temperature by the Kolmogorov–Smirnov
statistic, with a power check against the EM law at 2λ (a factor-2 temperature bug).

Threshold. 1.949/√N is the i.i.d. Kolmogorov critical value at level 0.001. The N = 4000
particles are exchangeable but not independent (birth–death copies particles). We keep all
particles and justify the threshold empirically, in the regime of :data:`BROAD_EPSILON`:
at t_cert ≥ 99% of the particle positions are distinct, and over 30 seeds (data seed 1) the KS
distance to the exact law had mean 0.0131 (i.i.d. expectation 0.87/√N = 0.0137) and maximum
0.0236, below 0.0308; data seed 2, 10 seeds: mean 0.0157, max 0.0192. The same runs are at KS
≥ 0.199 from the 2λ law and ≥ 0.117 from the λ/2 law.

Finding (ε = 1, see :func:`test_shk_release_matches_em_law_at_epsilon_1`). With the default
schedule (step 0.05, i.e. RW-Metropolis proposal sd √(2·0.05) = 0.32, since ∇u = 0 a.e.; KDE
bandwidth 0.1·N^{−1/5} = 0.019) the particle law is much *sharper* than the EM law, whose central
90% interval is only [0.2404, 0.2495] for this data: KS ≈ 0.21 from the λ law over seeds (closer
to the 2λ law, KS ≈ 0.06–0.08), with 55% distinct positions. Measured causes (3 seeds each):
pure birth–death (no transport) collapses onto a few data gaps (KS 0.25–0.34, 14–16 distinct
positions); pure MALA for the same 165 steps has not mixed (KS 0.11–0.12), while pure MALA for
t = 50 has (KS ≤ 0.016); SHK with step 0.001 (8243 steps) reaches KS 0.016–0.021, step 0.005 with
bandwidth 0.002 reaches 0.021–0.027, bandwidth 0.002 alone 0.11–0.12. The mean-field law itself is
the EM law at t_cert (PDE: sup|F − F_EM| = 0.004 on 4000 cells), so the discrepancy is the
finite-N KDE/MALA implementation (note §7.1, not covered by any certificate), not the schedule's
λ or t_cert. It appears once the EM law is not broad compared with the bandwidth: n = 200,
ε = 0.1 already gives KS 0.05–0.075; n = 20, ε = 1 gives KS ≈ 0.3.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from dp_core.flows import sample_shk
from dp_core.privacy.mechanism import ExponentialMechanism
from dp_core.privacy.schedule import SHKSchedule
from dp_core.privacy.utilities import UtilityPotential
from dp_core.privacy.utilities.quantile import Quantile
from dp_core.reference.pde1d import Grid1D, solve_shk_1d

N_PARTICLES = 4000
N_MAX = 200  # t_cert = log(2·0.95·100/0.05) = 8.24: 165 steps of the default size
KS_CRITICAL = 1.949 / math.sqrt(N_PARTICLES)  # i.i.d. Kolmogorov, level 0.001: 0.0308
UTILITY = Quantile(0.5, 0.0, 1.0)
DATA = np.random.default_rng(1).beta(2.0, 5.0, 200)
BROAD_EPSILON = 0.02  # λ = 0.019: the EM law spreads over the data (sd ≈ 0.1 ≫ bandwidth 0.019)
SEEDS = (0, 1, 2)

Cdf = Callable[[np.ndarray], np.ndarray]


def em_cdf(records: np.ndarray, utility: Quantile, lam: float) -> Cdf:
    """Exact CDF of π(θ) ∝ exp(−λ|N(θ) − q·n|) on [lower, upper], N(θ) = #{x ≤ θ}.

    With the clipped records sorted, x₍₁₎ ≤ … ≤ x₍ₙ₎, and edges e₀ = lower, e_k = x₍ₖ₎,
    e_{n+1} = upper, N = k on [e_k, e_{k+1}), so the density is d_k = exp(−λ|k − qn|)/Z there and
    F(θ) = (Σ_{j<k} d_j (e_{j+1} − e_j) + d_k (θ − e_k))/Z with Z = Σ_k d_k (e_{k+1} − e_k).
    """
    xs = np.sort(np.clip(np.asarray(records, dtype=np.float64), utility.lower, utility.upper))
    n = xs.size
    edges = np.concatenate([[utility.lower], xs, [utility.upper]])
    log_d = -lam * np.abs(np.arange(n + 1) - utility.q * n)
    dens = np.exp(log_d - log_d.max())
    mass = dens * np.diff(edges)
    z = mass.sum()
    cum = np.concatenate([[0.0], np.cumsum(mass)])

    def cdf(theta: np.ndarray) -> np.ndarray:
        t = np.clip(np.asarray(theta, dtype=np.float64), utility.lower, utility.upper)
        k = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n)
        return np.clip((cum[k] + dens[k] * (t - edges[k])) / z, 0.0, 1.0)

    return cdf


def schedule_for(epsilon: float) -> tuple[SHKSchedule, float]:
    """The plan's schedule for one sample at ε, and the certificate's inverse temperature."""
    plan = ExponentialMechanism(UTILITY, epsilon, n_max=N_MAX, particles=N_PARTICLES).plan(1)
    assert plan.schedule is not None
    return plan.schedule, plan.certificate.inverse_temperature


def run_shk(schedule: SHKSchedule, seed: int) -> np.ndarray:
    """Particles (N,) at t_cert of the public seeded SHK run, exactly as the mechanism runs it."""
    potential = UtilityPotential(UTILITY, UTILITY.prepare(DATA), schedule.inverse_temperature)
    run = sample_shk(
        potential,
        UTILITY.domain,
        n_particles=schedule.particles,
        flow_time=schedule.flow_time,
        step_size=schedule.step_size,
        bandwidth=schedule.bandwidth,
        private=False,
        seed=seed,
    )
    return run.particles[:, 0]


def ks(particles: np.ndarray, cdf: Cdf) -> float:
    return float(stats.kstest(particles, cdf).statistic)


# --------------------------------------------------------------------------- the oracle
@pytest.mark.parametrize("lam", [0.019, 0.95, 1.9])
def test_exact_em_cdf_integrates_the_utility(lam):
    """:func:`em_cdf` equals the integral of exp(−V), V = the sampler's potential λ·L."""
    theta = (np.arange(200_000) + 0.5) / 200_000  # midpoints on [0, 1]
    potential = UtilityPotential(UTILITY, UTILITY.prepare(DATA), lam)
    V, grad = potential.value_and_grad(theta[:, None])
    loss, _ = UTILITY.loss(UTILITY.prepare(DATA), theta[:, None])
    np.testing.assert_allclose(V, lam * loss)
    assert not np.any(grad)
    weights = np.exp(-(V - V.min()))
    numeric = np.cumsum(weights) / weights.sum()  # F at the right end of each cell
    exact = em_cdf(DATA, UTILITY, lam)(theta + 0.5 / 200_000)
    assert np.max(np.abs(numeric - exact)) < 2e-3
    assert em_cdf(DATA, UTILITY, lam)(np.array([0.0, 1.0])) == pytest.approx([0.0, 1.0])


def test_mean_field_law_at_t_cert_is_the_em_law():
    """The 1-D SHK PDE from uniform ρ₀ at the plan's t_cert is the EM law at the plan's λ (to
    the grid's resolution of the records) and is far from the law at 2λ."""
    schedule, lam = schedule_for(BROAD_EPSILON)
    grid = Grid1D(0.0, 1.0, 4000)
    loss, _ = UTILITY.loss(UTILITY.prepare(DATA), grid.centres[:, None])
    sol = solve_shk_1d(lam * loss, grid, [schedule.flow_time], 0.05)
    cdf = sol.cdf_faces(0)
    assert np.max(np.abs(cdf - em_cdf(DATA, UTILITY, lam)(grid.faces))) < 1e-3  # measured 4e-5
    assert np.max(np.abs(cdf - em_cdf(DATA, UTILITY, 2 * lam)(grid.faces))) > 0.2


# --------------------------------------------------------------------------- the sampler
def test_shk_release_matches_em_law_at_reported_temperature():
    """KS(particles, EM at λ) < 1.949/√N for each seed, while the 2λ and λ/2 laws are rejected."""
    schedule, lam = schedule_for(BROAD_EPSILON)
    assert lam == schedule.inverse_temperature == pytest.approx(0.95 * BROAD_EPSILON)
    assert schedule.flow_time == pytest.approx(math.log(3800.0))
    exact = em_cdf(DATA, UTILITY, lam)
    hot, cold = em_cdf(DATA, UTILITY, 2 * lam), em_cdf(DATA, UTILITY, lam / 2)
    for seed in SEEDS:
        particles = run_shk(schedule, seed)
        # the empirical threshold (module docstring) assumes few birth–death duplicates
        assert np.unique(particles).size >= 0.95 * N_PARTICLES
        assert ks(particles, exact) < KS_CRITICAL, seed
        assert ks(particles, hot) > 3 * KS_CRITICAL, seed  # power: factor-2 temperature bug
        assert ks(particles, cold) > 3 * KS_CRITICAL, seed


@pytest.mark.xfail(
    strict=True,
    reason=(
        "finding: at eps = 1 (n = 200, n_max = 200) the default SHK schedule (step 0.05, KDE "
        "bandwidth 0.019) gives a particle law much sharper than the EM law: KS ≈ 0.21 > 0.031 "
        "(see the module docstring)"
    ),
)
def test_shk_release_matches_em_law_at_epsilon_1():
    schedule, lam = schedule_for(1.0)
    assert lam == pytest.approx(0.95)
    particles = run_shk(schedule, SEEDS[0])
    assert ks(particles, em_cdf(DATA, UTILITY, lam)) < KS_CRITICAL
