"""Birth–death rates and the jump sweep: reference agreement (with the stream replayed into the
reference sweep), conservation (T-BD-1), invariance to a constant in V (T-BD-2) and the event
law (T-BD-3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dp_core.engine import birth_death, kde
from dp_core.engine.potentials import GaussianMixturePotential
from dp_core.engine.rng import fill_uniforms, new_streams
from dp_core.reference.bdls import birth_death_rates_reference, birth_death_sweep_reference

_EPS = np.finfo(np.float64).eps


def _stream0_uniforms(state, count):
    """The next ``count`` uniforms of stream 0 (the sweep's stream), advancing it in place."""
    out = np.empty((1, count))
    fill_uniforms(state[:1], out)
    return out[0]


def _particles(n: int, d: int, seed: int):
    """Distinct particles with their V, ∇V and log-KDE (so every position identifies its
    particle, and V, ∇V can be traced through the sweep)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * 1.5
    target = GaussianMixturePotential([0.4, 0.6], np.array([[-1.0] * d, [1.0] * d]), [0.6, 0.9])
    v, g = target.value_and_grad(x)
    return x, v, g, kde.log_kde_self(x, 0.4)


def _rates(log_kde, v):
    beta = np.empty_like(v)
    birth_death.birth_death_rates(log_kde, v, beta)
    return beta


def _sweep(x, v, g, beta, dt, streams):
    """Run the engine sweep on copies; return (x, v, g, events)."""
    x, v, g = x.copy(), v.copy(), g.copy()
    events = birth_death.birth_death_sweep(
        x, v, g, beta, dt, streams, np.empty(x.shape[0], dtype=np.int64)
    )
    return x, v, g, events


def _rate_tolerance(lam: np.ndarray) -> float:
    """Rounding bound for β = Λ - mean Λ summed in two different orders: (N + 2) eps max|Λ|."""
    return (lam.size + 2) * _EPS * float(np.max(np.abs(lam)))


# --------------------------------------------------------------------------- rates
@pytest.mark.parametrize("n", [1, 2, 50, 1000])
def test_rates_match_reference_and_are_centred(n):
    _, v, _, lk = _particles(n, 2, seed=n)
    beta = _rates(lk, v)
    ref = birth_death_rates_reference(lk, v)
    tol = _rate_tolerance(lk + v)
    assert np.all(np.abs(beta - ref) <= tol)
    # in practice far inside that worst-case bound: 1e-14 relative to the size of Λ
    assert np.all(np.abs(beta - ref) <= 1e-14 * max(1.0, float(np.max(np.abs(lk + v)))))
    assert abs(beta.sum()) <= n * tol
    if n == 1:
        assert beta[0] == 0.0


# --------------------------------------------------------------------------- sweep
def _replay(beta: np.ndarray, dt: float, state: np.ndarray):
    """Turn the sweep's stream (one SplitMix64 state) into the reference's inputs: the
    Fisher–Yates order from N - 1 uniforms, then per visited particle its event uniform and,
    when the event fires, its partner uniform."""
    n = beta.size
    buf = _stream0_uniforms(state.copy(), 3 * n)
    pos = 0
    order = np.arange(n)
    for i in range(n - 1, 0, -1):
        j = int(buf[pos] * (i + 1))
        pos += 1
        order[i], order[j] = order[j], order[i]
    u_event = np.ones(n)
    u_partner = np.zeros(n)
    fire_prob = -np.expm1(-np.abs(beta) * dt)
    for i in order:
        u_event[i] = buf[pos]
        pos += 1
        # a uniform within rounding of the threshold would make the replay ambiguous
        assert abs(u_event[i] - fire_prob[i]) > 1e-12
        if beta[i] != 0.0 and u_event[i] < fire_prob[i]:
            u_partner[i] = buf[pos]
            pos += 1
    return order, u_event, u_partner, pos


@pytest.mark.parametrize(("n", "d", "dt"), [(2, 1, 3.0), (40, 2, 0.7), (500, 3, 0.2)])
def test_sweep_matches_reference_given_its_random_numbers(n, d, dt):
    x, v, g, lk = _particles(n, d, seed=1000 + n)
    beta = _rates(lk, v)
    streams = new_streams(77 + n, 1)
    start = streams.copy()
    order, u_event, u_partner, used = _replay(beta, dt, start)
    src, fired = birth_death_sweep_reference(beta, dt, order, u_event, u_partner)
    xe, ve, ge, events = _sweep(x, v, g, beta, dt, streams)
    assert events == int(fired.sum())
    assert events > 0
    assert np.array_equal(xe, x[src])
    assert np.array_equal(ve, v[src])
    assert np.array_equal(ge, g[src])
    # the sweep consumed exactly the replayed number of uniforms
    _stream0_uniforms(start, used)
    assert np.array_equal(start, streams)


def test_bd1_particles_are_conserved_and_carry_v_and_grad():
    n = 300
    x, v, g, lk = _particles(n, 2, seed=5)
    beta = _rates(lk, v)
    xe, ve, ge, events = _sweep(x, v, g, beta, 1.0, new_streams(5, 1))
    assert events > n // 10
    assert xe.shape == x.shape and ve.shape == v.shape and ge.shape == g.shape
    # every new position is an old one, and V, ∇V are those of that old particle
    index = {row.tobytes(): i for i, row in enumerate(x)}
    assert len(index) == n
    src = np.array([index.get(row.tobytes(), -1) for row in xe])
    assert np.all(src >= 0)
    assert np.array_equal(ve, v[src])
    assert np.array_equal(ge, g[src])
    assert np.unique(src).size < n  # some particles were copied over others


def test_bd2_a_constant_in_v_changes_no_rate_and_no_jump():
    n = 400
    x, v, g, lk = _particles(n, 2, seed=6)
    shift = 1234.5
    beta = _rates(lk, v)
    beta_shifted = _rates(lk, v + shift)
    lam_shifted = lk + v + shift
    assert np.all(np.abs(beta_shifted - beta) <= 2.0 * _rate_tolerance(lam_shifted))
    xa, va, ga, ea = _sweep(x, v, g, beta, 0.5, new_streams(66, 1))
    xb, vb, gb, eb = _sweep(x, v + shift, g, beta_shifted, 0.5, new_streams(66, 1))
    assert ea == eb > 0
    assert np.array_equal(xa, xb)
    assert np.array_equal(ga, gb)
    assert np.array_equal(va + shift, vb)


def test_bd3_event_count_has_the_right_mean():
    """Each particle's event fires independently with probability p_i = 1 - e^{-|β_i| dt}, so
    over R sweeps the mean count has mean Σ p_i and standard deviation sqrt(Σ p(1-p) / R)."""
    n = 60
    rng = np.random.default_rng(303)
    x = rng.normal(size=(n, 2))
    v = rng.normal(size=n)
    g = rng.normal(size=(n, 2))
    beta = np.linspace(-2.5, 2.5, n) + rng.normal(scale=0.3, size=n)
    beta -= beta.mean()
    beta[7] = 0.0  # a zero rate never fires
    dt = 0.25
    reps = 3000
    counts = np.array(
        [_sweep(x, v, g, beta, dt, new_streams(10_000 + r, 1))[3] for r in range(reps)]
    )
    p = -np.expm1(-np.abs(beta) * dt)
    sd = math.sqrt(float(np.sum(p * (1.0 - p))) / reps)
    assert abs(counts.mean() - p.sum()) <= 4.0 * sd
    # and the power of this check: halving the rates would move the mean by many sd
    p_half = -np.expm1(-np.abs(beta) * dt / 2.0)
    assert abs(p_half.sum() - p.sum()) > 20.0 * sd


def test_single_particle_has_no_events():
    x = np.array([[0.3, -0.2]])
    v = np.array([1.0])
    g = np.array([[0.5, 0.5]])
    beta = np.array([5.0])  # not centred on purpose: even a large rate cannot act alone
    xe, ve, ge, events = _sweep(x, v, g, beta, 10.0, new_streams(1, 1))
    assert events == 0
    assert np.array_equal(xe, x) and np.array_equal(ve, v) and np.array_equal(ge, g)


def test_zero_rates_have_no_events():
    x, v, g, _ = _particles(200, 2, seed=9)
    xe, ve, ge, events = _sweep(x, v, g, np.zeros(200), 50.0, new_streams(2, 1))
    assert events == 0
    assert np.array_equal(xe, x) and np.array_equal(ve, v) and np.array_equal(ge, g)


# --------------------------------------------------------------------------- the whole reaction
@pytest.mark.parametrize(("n", "d"), [(1, 1), (2, 1), (700, 1), (300, 2)])
def test_reaction_is_log_kde_then_rates_then_sweep(n, d):
    """``reaction`` (one compiled call in d = 1) does exactly what its three parts do."""
    x, v, g, _ = _particles(n, d, seed=40 + n)
    h, dt = 0.4, 0.3
    streams = new_streams(9, 1)
    xa, va, ga = x.copy(), v.copy(), g.copy()
    log_kde, beta = np.empty(n), np.empty(n)
    events = birth_death.reaction(
        xa, va, ga, h, dt, streams, log_kde, beta, np.empty(n, dtype=np.int64)
    )
    lk = kde.log_kde_self(x, h)
    assert np.array_equal(log_kde, lk)
    assert np.array_equal(beta, _rates(lk, v))
    xe, ve, ge, events_e = _sweep(x, v, g, _rates(lk, v), dt, new_streams(9, 1))
    assert events == events_e
    assert np.array_equal(xa, xe) and np.array_equal(va, ve) and np.array_equal(ga, ge)
    assert np.array_equal(streams, new_streams(9, 1)) == (n < 2)  # the sweep drew (n >= 2)
