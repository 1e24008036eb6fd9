"""Per-particle SplitMix64 streams: reproducibility, distribution of the draws, uniform initial
laws on box and ball domains, and the seeding policy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dp_core.engine import langevin
from dp_core.engine.rng import fill_normals, fill_uniforms, new_streams, resolve_seed
from dp_core.errors import InvalidParameter
from dp_core.reference.bdls import inside_domain_reference
from dp_core.types import Domain

_ALPHA = 0.001


def _uniforms(state, per_stream):
    out = np.empty((state.shape[0], per_stream))
    fill_uniforms(state, out)
    return out


def _normals(state, per_stream):
    out = np.empty((state.shape[0], per_stream))
    fill_normals(state, out)
    return out


# --------------------------------------------------------------------------- reproducibility
def test_same_seed_gives_identical_streams():
    a = new_streams(123456789, 1000)
    b = new_streams(123456789, 1000)
    assert a.dtype == np.uint64
    assert a.shape == (1000,)
    assert np.array_equal(a, b)
    assert np.array_equal(_uniforms(a, 5), _uniforms(b, 5))
    assert np.array_equal(a, b)  # both advanced identically


def test_stream_i_depends_only_on_seed_and_i():
    """Stream i is a hash of (seed, i): a longer run does not change the first streams."""
    assert np.array_equal(new_streams(99, 10), new_streams(99, 1000)[:10])


@pytest.mark.parametrize(("s1", "s2"), [(0, 1), (1, 2), (12345, 12346), (0, 2**64 - 1)])
def test_different_seeds_give_different_streams(s1, s2):
    a = new_streams(s1, 5000)
    b = new_streams(s2, 5000)
    assert np.intersect1d(a, b).size == 0
    assert np.unique(a).size == a.size  # streams within one seed are distinct too
    ua, ub = _uniforms(a, 1)[:, 0], _uniforms(b, 1)[:, 0]
    assert not np.any(ua == ub)


# --------------------------------------------------------------------------- distributions
def test_first_draws_across_streams_are_uniform(ks_critical):
    n = 200_000
    u = _uniforms(new_streams(2718, n), 1)[:, 0]
    assert np.all((u >= 0.0) & (u < 1.0))
    crit = ks_critical(n, _ALPHA)  # ≈ 1.949 / sqrt(n) = 0.00436
    assert stats.kstest(u, "uniform").statistic <= crit


def test_long_run_of_one_stream_is_uniform(ks_critical):
    n = 200_000
    u = _uniforms(new_streams(31415, 1), n)[0]
    assert stats.kstest(u, "uniform").statistic <= ks_critical(n, _ALPHA)


def test_neighbouring_streams_and_seeds_are_independent():
    """(u_i, u_{i+1}) for adjacent streams, and stream 0 under seeds s and s + 1, fill a 10×10
    grid evenly: chi-square with 99 degrees of freedom at α = 0.001."""
    n = 100_000
    u = _uniforms(new_streams(161803, n + 1), 1)[:, 0]
    crit = stats.chi2.isf(_ALPHA, 99)
    counts = np.histogram2d(u[:-1], u[1:], bins=10, range=[[0, 1], [0, 1]])[0]
    assert stats.chisquare(counts.ravel()).statistic <= crit
    first = np.array([_uniforms(new_streams(s, 1), 1)[0, 0] for s in range(20_001)])
    counts = np.histogram2d(first[:-1], first[1:], bins=10, range=[[0, 1], [0, 1]])[0]
    assert stats.chisquare(counts.ravel()).statistic <= crit


def test_normals_are_standard_normal(ks_critical):
    n = 200_000
    z = _normals(new_streams(577, n // 4), 4).ravel()
    assert np.all(np.isfinite(z))
    assert stats.kstest(z, "norm").statistic <= ks_critical(n, _ALPHA)


# --------------------------------------------------------------------------- initial laws
def test_uniform_in_box(ks_critical):
    n = 50_000
    domain = Domain.box([-1.0, 0.0, 10.0], [2.0, 0.001, 17.5])
    kind, a, b = domain.engine_arrays()
    out = np.empty((n, 3))
    langevin.uniform_in_domain(new_streams(1, n), kind, a, b, out)
    assert np.all(inside_domain_reference(domain, out))
    crit = ks_critical(n, _ALPHA)
    for k in range(3):
        assert stats.kstest((out[:, k] - a[k]) / (b[k] - a[k]), "uniform").statistic <= crit


@pytest.mark.parametrize(("center", "radius"), [([0.0, 0.0, 0.0], 1.0), ([3.0, -1.0, 0.5], 2.5)])
def test_uniform_in_ball(ks_critical, center, radius):
    n = 50_000
    domain = Domain.ball(center, radius)
    kind, a, b = domain.engine_arrays()
    out = np.empty((n, 3))
    langevin.uniform_in_domain(new_streams(2, n), kind, a, b, out)
    assert np.all(inside_domain_reference(domain, out))
    offset = out - np.asarray(center)
    r = np.linalg.norm(offset, axis=1)
    crit = ks_critical(n, _ALPHA)
    # uniform in a 3-ball: (r/R)^3 ~ U(0, 1), and (Archimedes) each coordinate of the direction
    # is U(-1, 1)
    assert stats.kstest((r / radius) ** 3, "uniform").statistic <= crit
    for k in range(3):
        cos_k = offset[:, k] / r
        assert stats.kstest(cos_k, "uniform", args=(-1.0, 2.0)).statistic <= crit


# --------------------------------------------------------------------------- seeding policy
@pytest.mark.parametrize("seed", [0, 987654321, 2**64 - 1])
def test_private_runs_refuse_an_explicit_seed(seed):
    with pytest.raises(InvalidParameter) as err:
        resolve_seed(seed, private=True)  # 0 is falsy and must be refused all the same
    assert err.value.field == "seed"
    assert str(seed) not in str(err.value)  # the seed is not echoed


def test_private_runs_get_a_fresh_seed_each_call():
    seeds = {resolve_seed(None, private=True) for _ in range(50)}
    assert len(seeds) == 50
    assert all(isinstance(s, int) and 0 <= s < 2**64 for s in seeds)


def test_public_runs_keep_the_given_seed():
    for seed in (0, 1, 42, 2**64 - 1):
        assert resolve_seed(seed, private=False) == seed
    fresh = {resolve_seed(None, private=False) for _ in range(20)}
    assert len(fresh) == 20


@pytest.mark.parametrize("seed", [-1, 2**64, True, 1.5, "3"])
def test_public_runs_reject_a_malformed_seed(seed):
    with pytest.raises(InvalidParameter) as err:
        resolve_seed(seed, private=False)
    assert err.value.field == "seed"
