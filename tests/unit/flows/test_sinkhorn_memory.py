"""Sinkhorn associative memory (flows note §4): the invariants of §4.7 on a small memory,
retrieval of permuted noisy queries, determinism, and the run contract."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dp_core.engine.divergence import sinkhorn_divergence
from dp_core.errors import Cancelled, InvalidParameter
from dp_core.flows.sinkhorn_memory import SinkhornMemory, reweight

K, M, D = 6, 8, 4
BLUR = 0.5**0.5  # ε = 0.5 as in flows note §4.5 (data of unit scale)
BETA = 20.0


def _patterns(seed: int = 0, weighted: bool = False):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(K):
        w = rng.uniform(0.5, 1.5, M) if weighted else None
        out.append((rng.normal(size=(M, D)), None if w is None else w / w.sum()))
    return out


def _query(pats, k: int, sigma: float, seed: int):
    rng = np.random.default_rng(seed)
    q = pats[k][0] + sigma * rng.normal(size=(M, D))
    return q[rng.permutation(M)]


@pytest.fixture(scope="module")
def memory() -> SinkhornMemory:
    return SinkhornMemory.store(_patterns(), BLUR, BETA)


@pytest.fixture(scope="module")
def weighted_memory() -> SinkhornMemory:
    return SinkhornMemory.store(_patterns(weighted=True), BLUR, BETA)


def test_stored_divergences_match_the_engine(memory):
    """S_ε(ν, μ_k) of the memory equals the engine's standalone divergence (F 16)."""
    pats = _patterns()
    q = _query(pats, 2, 0.5, 1)
    state = memory.solve(q, np.full(M, 1 / M))
    for k, (y, _) in enumerate(pats):
        ref = sinkhorn_divergence(q, None, y, None, BLUR, tol=1e-12)
        assert abs(state.divergences[k] - ref.value) <= 1e-6
    s = state.divergences
    # bounds of (F 17)
    assert s.min() - np.log(K) / BETA - 1e-12 <= state.energy <= s.min() + 1e-12


@pytest.mark.parametrize("sigma", [0.3, 0.7])
def test_retrieval_of_permuted_noisy_queries(memory, sigma):
    """T-SHK-1 and T-SHK-6: weights on the simplex, energy non-increasing with backtracking;
    the query is retrieved (it starts in the basin of its pattern at these noise levels)."""
    pats = _patterns()
    for k in (0, 3):
        q = _query(pats, k, sigma, seed=10 * k + int(10 * sigma))
        res = memory.retrieve(q, steps=10)
        assert res.nearest_pattern == k
        assert np.all(res.weights > 0)
        assert abs(res.weights.sum() - 1.0) <= 1e-12
        energy = np.array(res.energy_trace)
        assert len(energy) == 11
        assert np.all(np.diff(energy) <= 0.0)
        assert energy[-1] < 0.5 * energy[0]
        assert res.divergences.shape == (K,)


def test_weighted_patterns_and_fixed_weight_step(weighted_memory):
    pats = _patterns(weighted=True)
    q = _query(pats, 4, 0.3, seed=7)
    res = weighted_memory.retrieve(q, steps=8, weight_step=0.003)
    assert res.nearest_pattern == 4
    assert abs(res.weights.sum() - 1.0) <= 1e-12 and np.all(res.weights > 0)
    assert not np.allclose(res.weights, 1 / M)  # the reweighting moved the weights
    assert res.energy_trace[-1] < res.energy_trace[0]
    assert all(row["weight_step"] == 0.003 for row in res.trace[1:])


def test_transport_only_is_monotone_for_eta_up_to_one(memory):
    """T-SHK-6 (measured form): with τ = 0, E does not increase beyond round-off for η ≤ 1."""
    pats = _patterns()
    q = _query(pats, 1, 0.5, seed=3)
    for eta in (0.5, 1.0):
        energy = np.array(memory.retrieve(q, steps=6, step_size=eta, weight_step=0.0).energy_trace)
        assert np.diff(energy).max() <= 1e-7


def test_permutation_invariance(memory):
    """T-SHK-2: permuting the query permutes the trajectory; S and E are unchanged."""
    pats = _patterns()
    q = _query(pats, 5, 0.4, seed=11)
    perm = np.random.default_rng(0).permutation(M)
    w = np.random.default_rng(1).uniform(0.5, 1.5, M)
    w /= w.sum()
    a = memory.retrieve(q, w, steps=5)
    b = memory.retrieve(q[perm], w[perm], steps=5)
    assert np.abs(a.points[perm] - b.points).max() <= 1e-7
    assert np.abs(a.weights[perm] - b.weights).max() <= 1e-9
    assert np.abs(a.divergences - b.divergences).max() <= 1e-8
    assert np.abs(np.subtract(a.energy_trace, b.energy_trace)).max() <= 1e-8


def test_fixed_point_at_a_stored_pattern(memory):
    """T-SHK-5: at ν = μ_k with the other patterns far (S gap Δ), the step barely moves."""
    pats = _patterns()
    state = memory.solve(pats[2][0], np.full(M, 1 / M))
    gap = np.sort(state.divergences)[1] - state.divergences.min()
    assert state.divergences.argmin() == 2 and abs(state.divergences[2]) < 1e-8
    res = memory.retrieve(pats[2][0], steps=1)
    assert np.abs(res.points - pats[2][0]).max() <= 1e-6 + np.exp(-BETA * gap)
    assert np.abs(res.weights - 1 / M).max() <= 1e-6 + np.exp(-BETA * gap)


def test_reweight_is_gauge_invariant_and_on_the_simplex():
    """T-SHK-7: φ + c gives the same weights; weights stay positive and sum to 1."""
    rng = np.random.default_rng(2)
    a = rng.uniform(0.1, 1.0, 50)
    a /= a.sum()
    phi = rng.normal(size=50) * 3
    for tau in (1e-3, 0.1, 1.0):
        w = reweight(a, phi, tau)
        assert np.allclose(w, reweight(a, phi + 123.456, tau), rtol=1e-12, atol=0)
        assert np.all(w > 0) and abs(w.sum() - 1) <= 1e-14
        expected = a * np.exp(-tau * (phi - phi.min()) / 1.0)
        assert np.allclose(w, expected / expected.sum(), rtol=1e-9)


def test_reproducible_and_thread_independent(memory):
    pats = _patterns()
    q = _query(pats, 0, 0.5, seed=5)
    r1 = memory.retrieve(q, steps=4)
    r2 = memory.retrieve(q, steps=4)
    assert np.array_equal(r1.points, r2.points) and np.array_equal(r1.weights, r2.weights)
    code = textwrap.dedent(
        """
        import numpy as np
        from dp_core.flows.sinkhorn_memory import SinkhornMemory
        rng = np.random.default_rng(3)
        pats = [(rng.normal(size=(12, 3)), None) for _ in range(20)]
        mem = SinkhornMemory.store(pats, 0.7, 20.0)
        q = pats[4][0] + 0.5 * rng.normal(size=(12, 3))
        r = mem.retrieve(q, steps=4)
        print(r.points.tobytes().hex(), r.weights.tobytes().hex(), r.energy_trace)
        """
    )
    outs = []
    for threads in ("1", "2"):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads}
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        outs.append(done.stdout.strip())
    assert outs[0] == outs[1]


def test_run_contract_and_validation(memory):
    pats = _patterns()
    q = _query(pats, 0, 0.5, seed=5)
    seen: list[tuple[int, int]] = []
    res = memory.retrieve(q, steps=3, progress=lambda k, n: seen.append((k, n)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert res.description.flow == "sinkhorn_memory"
    assert [row["step"] for row in res.trace] == [0, 1, 2, 3]
    with pytest.raises(Cancelled):
        memory.retrieve(q, steps=3, cancel=lambda: True)
    bad = [
        (lambda: memory.retrieve(q[:, :2]), "query"),
        (lambda: memory.retrieve(q, step_size=0.0), "step_size"),
        (lambda: memory.retrieve(q, weight_step=-1.0), "weight_step"),
        (lambda: memory.retrieve(q, np.full(M, 0.5)), "query"),
        (lambda: SinkhornMemory.store(pats, -1.0, BETA), "blur"),
        (lambda: SinkhornMemory.store(pats, BLUR, 0.0), "beta"),
        (lambda: SinkhornMemory.store([], BLUR, BETA), "patterns"),
        (lambda: memory.retrieve(q, steps=-1), "steps"),
    ]
    for call, field in bad:
        with pytest.raises(InvalidParameter) as err:
            call()
        assert err.value.field == field
