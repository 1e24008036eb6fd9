"""MALA moves with rejection outside the domain: the exact acceptance rule (replaying each
particle's stream into the NumPy reference), the bookkeeping invariants, and π-invariance
(with a power check showing the invariance test catches a wrong acceptance ratio)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dp_core.engine import langevin
from dp_core.engine.potentials import GaussianMixturePotential
from dp_core.engine.rng import fill_normals, fill_uniforms, new_streams
from dp_core.reference.bdls import inside_domain_reference, mala_step_reference
from dp_core.types import Domain

# Asymptotic Kolmogorov critical value at α = 0.01: sqrt(-ln(0.005) / 2) = 1.628.
_KS_01 = 1.628


def _replay_normals(state, d):
    """The d normals each particle's stream yields next (mala_propose's draws, in order)."""
    out = np.empty((state.shape[0], d))
    fill_normals(state, out)
    return out


def _replay_uniforms(state):
    out = np.empty((state.shape[0], 1))
    fill_uniforms(state, out)
    return out[:, 0]


class _Mover:
    """One engine MALA move = propose, evaluate V and ∇V at the proposals, accept (in place).

    ``step`` is a constant h, or a range (low, high) from which every particle draws its h
    log-uniformly before each move (the multiscale move); ``accept_step`` overrides the steps the
    acceptance is told (a deliberately wrong rule for power checks)."""

    def __init__(
        self,
        domain: Domain,
        step: float | tuple[float, float],
        proposal_target,
        acceptance_target=None,
        accept_step: float | None = None,
    ):
        self.kind, self.a, self.b = domain.engine_arrays()
        self.step = step
        self.accept_step = accept_step
        self.proposal_target = proposal_target
        self.acceptance_target = acceptance_target or proposal_target

    def state(self, x):
        v = self.acceptance_target.value_and_grad(x)[0]
        g = self.proposal_target.value_and_grad(x)[1]
        return v, g

    def move(self, x, v, g, streams):
        n = x.shape[0]
        prop = np.empty_like(x)
        inside = np.empty(n, dtype=np.uint8)
        accepted = np.empty(n, dtype=np.uint8)
        steps = np.empty(n)
        if isinstance(self.step, tuple):
            langevin.log_uniform_steps(streams, *self.step, steps)
        else:
            steps[:] = self.step
        told = steps if self.accept_step is None else np.full(n, self.accept_step)
        langevin.mala_propose(x, g, steps, streams, self.kind, self.a, self.b, prop, inside)
        vp, gp = self.state(prop)
        count = langevin.mala_accept(x, v, g, prop, vp, gp, inside, told, streams, accepted)
        assert count == int(accepted.sum())  # the returned count is the flags' sum
        return prop, vp, gp, inside, accepted


def _mixture(d: int) -> GaussianMixturePotential:
    means = np.zeros((2, d))
    means[0, 0], means[1, 0] = -0.6, 0.9
    return GaussianMixturePotential([0.3, 0.7], means, [0.5, 0.8])


_DOMAINS = {
    "box1": Domain.box([-1.0], [1.5]),
    "box2": Domain.box([-1.0, -0.5], [1.5, 0.7]),
    "ball2": Domain.ball([0.2, -0.1], 1.1),
    "ball3": Domain.ball([0.0, 0.0, 0.3], 0.9),
}


# --------------------------------------------------------------------------- exact rule
@pytest.mark.parametrize("name", list(_DOMAINS))
def test_moves_equal_the_reference_given_the_same_random_numbers(name):
    """Each particle's stream is replayed to recover the ξ and u the engine used; the NumPy
    reference with those numbers must give the same proposals, decisions, x, V and ∇V."""
    domain = _DOMAINS[name]
    d = domain.dim
    n = 3000
    step = 0.15
    target = _mixture(d)
    mover = _Mover(domain, step, target)
    streams = new_streams(17 + d, n)
    x = np.empty((n, d))
    langevin.uniform_in_domain(streams, mover.kind, mover.a, mover.b, x)
    v, g = mover.state(x)
    n_accepted = n_outside = 0
    for _ in range(4):
        x0, v0, g0 = x.copy(), v.copy(), g.copy()
        before = streams.copy()
        xi = _replay_normals(before, d)  # advances `before` as the proposal does
        u = 1.0 - _replay_uniforms(before.copy())  # the acceptance uniform, as in the engine
        prop, _, _, inside, accepted = mover.move(x, v, g, streams)
        # one move consumes 2d + 1 uniforms per stream, no more, no less
        _replay_uniforms(before)
        assert np.array_equal(before, streams)
        y = x0 - step * g0 + math.sqrt(2.0 * step) * xi
        in_ref = inside_domain_reference(domain, y)
        assert np.array_equal(inside.astype(bool), in_ref)
        assert np.array_equal(prop[in_ref], y[in_ref])
        assert np.array_equal(prop[~in_ref], x0[~in_ref])
        xr, vr, gr, acc_ref = mala_step_reference(
            target.value_and_grad, domain, x0, v0, g0, step, xi, u
        )
        # The reference accepts on log u < log α, the engine on <=, and they round the ratio
        # differently by an ulp: only particles with log u within 1e-12 of log α may differ.
        vy, gy = target.value_and_grad(np.ascontiguousarray(y))
        fwd = np.sum((y - x0 + step * g0) ** 2, axis=1)
        bwd = np.sum((x0 - y + step * gy) ** 2, axis=1)
        log_alpha = -(vy - v0) - (bwd - fwd) / (4.0 * step)
        borderline = in_ref & (np.abs(np.log(u) - log_alpha) <= 1e-12 * (1.0 + np.abs(log_alpha)))
        same = ~borderline
        assert borderline.sum() <= 1
        assert np.array_equal(accepted.astype(bool)[same], acc_ref[same])
        assert np.array_equal(x[same], xr[same])
        assert np.array_equal(v[same], vr[same])
        assert np.array_equal(g[same], gr[same])
        n_accepted += int(acc_ref.sum())
        n_outside += int((~in_ref).sum())
    # the comparison exercised accepts, in-domain rejects and out-of-domain rejects
    assert n_accepted > 0.2 * 4 * n
    assert n_outside > 0
    assert n_accepted + n_outside < 4 * n


# --------------------------------------------------------------------------- invariants
@pytest.mark.parametrize(
    "domain",
    [Domain.box([0.0, -0.1], [0.3, 0.2]), Domain.ball([1.0, 1.0], 0.2)],
    ids=["box", "ball"],
)
def test_bookkeeping_and_domain_invariants(domain):
    """Small domain, so most proposals leave it: rejected particles keep x, V and ∇V exactly,
    accepted ones take their proposal and its V, ∇V, and nobody ever leaves the domain."""
    n = 500
    mover = _Mover(domain, 0.2, _mixture(2))
    streams = new_streams(2024, n)
    x = np.empty((n, 2))
    langevin.uniform_in_domain(streams, mover.kind, mover.a, mover.b, x)
    v, g = mover.state(x)
    totals = {"accepted": 0, "outside": 0, "rejected_inside": 0}
    for _ in range(100):
        x0, v0, g0 = x.copy(), v.copy(), g.copy()
        prop, vp, gp, inside, accepted = mover.move(x, v, g, streams)
        acc = accepted.astype(bool)
        assert np.all(acc <= inside.astype(bool))  # an outside proposal is never accepted
        assert np.array_equal(x[~acc], x0[~acc])
        assert np.array_equal(v[~acc], v0[~acc])
        assert np.array_equal(g[~acc], g0[~acc])
        assert np.array_equal(x[acc], prop[acc])
        assert np.array_equal(v[acc], vp[acc])
        assert np.array_equal(g[acc], gp[acc])
        assert np.all(inside_domain_reference(domain, x))
        totals["accepted"] += int(acc.sum())
        totals["outside"] += int((inside == 0).sum())
        totals["rejected_inside"] += int(((inside == 1) & ~acc).sum())
    assert totals["outside"] > 0.5 * 100 * n
    assert totals["accepted"] > 0


# --------------------------------------------------------------------------- π-invariance
_LO, _HI = -1.5, 2.0


def _run_1d(
    acceptance_sd: float,
    seed: int,
    n: int = 4000,
    steps: int = 30,
    step: float | tuple[float, float] = 0.2,
    accept_step: float | None = None,
):
    """Start from exact i.i.d. draws of N(0, 1) truncated to [-1.5, 2] and make `steps` MALA
    moves (h = ``step``) whose proposals use ∇V of N(0, 1) and whose acceptance uses V of
    N(0, acceptance_sd²): a Metropolis–Hastings chain for N(0, acceptance_sd²) on the box."""
    sampler = np.random.default_rng(seed)
    law = stats.truncnorm(_LO, _HI)
    x = np.ascontiguousarray(law.ppf(sampler.uniform(size=n))[:, None])
    proposal = GaussianMixturePotential([1.0], [[0.0]], [1.0])
    acceptance = GaussianMixturePotential([1.0], [[0.0]], [acceptance_sd])
    mover = _Mover(Domain.box([_LO], [_HI]), step, proposal, acceptance, accept_step)
    v, g = mover.state(x)
    streams = new_streams(seed, n)  # one stream per particle: the particles stay independent
    accepted = 0
    for _ in range(steps):
        accepted += int(mover.move(x, v, g, streams)[4].sum())
    assert accepted > 0.4 * steps * n  # the chain moved
    return x[:, 0]


def test_truncated_normal_is_invariant():
    n = 4000
    x = _run_1d(1.0, seed=8101, n=n)
    law = stats.truncnorm(_LO, _HI)
    assert np.all((x >= _LO) & (x <= _HI))
    assert stats.kstest(x, law.cdf).statistic <= _KS_01 / math.sqrt(n)


def test_invariance_check_detects_a_wrong_acceptance_ratio():
    """Power: with V of sd 1.3 in the acceptance (proposals unchanged) the chain targets the
    wrong law, and the same KS check must reject N(0, 1); it must accept N(0, 1.3²), the law
    this Metropolis–Hastings chain does leave invariant."""
    n = 4000
    x = _run_1d(1.3, seed=8101, n=n)
    crit = _KS_01 / math.sqrt(n)
    assert stats.kstest(x, stats.truncnorm(_LO, _HI).cdf).statistic > crit
    wide = stats.truncnorm(_LO / 1.3, _HI / 1.3, scale=1.3)
    assert stats.kstest(x, wide.cdf).statistic <= crit


# Log-uniform steps over 14 octaves: from moves far below the law's scale to moves that mostly
# leave the box (h = 2: proposal sd 2 on a box of width 3.5).
_MULTISCALE = (2.0**-12, 2.0)


def test_log_uniform_steps_replay_the_streams():
    """Each step is low·(high/low)^U with U the particle's next uniform, and log h is uniform."""
    n = 4000
    streams = new_streams(77, n)
    u = _replay_uniforms(streams.copy())
    steps = np.empty(n)
    langevin.log_uniform_steps(streams, *_MULTISCALE, steps)
    low, high = _MULTISCALE
    np.testing.assert_allclose(steps, low * np.exp(math.log(high / low) * u), rtol=1e-15)
    assert np.all((steps >= low) & (steps <= high))
    unit = np.log(steps / low) / math.log(high / low)
    assert stats.kstest(unit, "uniform").statistic <= _KS_01 / math.sqrt(n)


def test_multiscale_moves_leave_the_truncated_normal_invariant():
    """A mixture of MALA kernels over state-independent steps is π-reversible (module doc)."""
    n = 4000
    x = _run_1d(1.0, seed=8102, n=n, step=_MULTISCALE)
    assert stats.kstest(x, stats.truncnorm(_LO, _HI).cdf).statistic <= _KS_01 / math.sqrt(n)


def test_invariance_check_detects_steps_that_differ_from_the_proposals():
    """Power: proposals drawn at the particles' own steps but accepted as if every step were the
    range's top (a step-bookkeeping bug) no longer leave N(0, 1) invariant."""
    n = 4000
    x = _run_1d(1.0, seed=8102, n=n, step=_MULTISCALE, accept_step=_MULTISCALE[1])
    assert stats.kstest(x, stats.truncnorm(_LO, _HI).cdf).statistic > _KS_01 / math.sqrt(n)


def _radius_cdf(r):
    """|X| for X ~ N(0, I_2) restricted to the unit disc: P(|X| <= r) ∝ 1 - e^{-r²/2}."""
    return -np.expm1(-0.5 * np.asarray(r) ** 2) / -math.expm1(-0.5)


def test_standard_normal_on_the_unit_disc_is_invariant():
    n = 4000
    sampler = np.random.default_rng(9202)
    # inverse-CDF radius and a uniform angle: exact i.i.d. draws of the restricted law
    r = np.sqrt(-2.0 * np.log1p(-sampler.uniform(size=n) * -math.expm1(-0.5)))
    theta = sampler.uniform(0.0, 2.0 * math.pi, n)
    x = np.ascontiguousarray(np.column_stack([r * np.cos(theta), r * np.sin(theta)]))
    assert stats.kstest(r, _radius_cdf).statistic <= _KS_01 / math.sqrt(n)
    target = GaussianMixturePotential([1.0], [[0.0, 0.0]], [1.0])
    domain = Domain.ball([0.0, 0.0], 1.0)
    mover = _Mover(domain, 0.2, target)
    v, g = mover.state(x)
    streams = new_streams(9202, n)
    x_start = x.copy()
    for _ in range(30):
        mover.move(x, v, g, streams)
    assert np.all(inside_domain_reference(domain, x))
    assert np.mean(np.any(x != x_start, axis=1)) > 0.9  # nearly every particle moved
    radii = np.linalg.norm(x, axis=1)
    crit = _KS_01 / math.sqrt(n)
    assert stats.kstest(radii, _radius_cdf).statistic <= crit
    angles = np.arctan2(x[:, 1], x[:, 0])
    assert stats.kstest(angles, "uniform", args=(-math.pi, 2.0 * math.pi)).statistic <= crit
