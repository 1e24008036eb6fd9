"""Sinkhorn-memory retrieval returns converged divergences or says it did not (flows note §4;
issue "Trust hardening", item 9).

The issue's set-up: 10 patterns of 40 points of N(0, 4 I₃), blur 1, a permuted noisy copy of
one of them as the query (σ = 0.5), β = 20. Near the end of a retrieval the query sits almost on
its pattern, the plan is close to a permutation and plain Sinkhorn stalls at its cap: the old
flow returned S_ε 14% off after 5 steps (24% after 10) with no sign of it. The oracle is the
NumPy/SciPy Newton-polished reference with a certified marginal error of 1e-13.
"""

from __future__ import annotations

import numpy as np
import pytest

from dp_core.errors import InvalidParameter
from dp_core.flows.sinkhorn_memory import SinkhornMemory
from dp_core.reference.sinkhorn import sinkhorn_divergence_newton_reference

K, M, D = 10, 40, 3


def _issue_setup(seed: int = 2):
    rng = np.random.default_rng(seed)
    patterns = rng.normal(scale=2.0, size=(K, M, D))
    k = int(rng.integers(K))
    query = patterns[k] + 0.5 * rng.normal(size=(M, D))
    return patterns, query[rng.permutation(M)], k


def test_retrieval_divergences_match_the_high_precision_reference():
    patterns, query, k = _issue_setup()
    memory = SinkhornMemory.store([(p, None) for p in patterns], blur=1.0, beta=20.0)
    res = memory.retrieve(query, steps=5)
    assert res.nearest_pattern == k
    assert res.divergences[k] < 0.05  # the query did move onto its pattern: the hard case
    w = np.full(M, 1.0 / M)
    for j in range(K):
        ref, marginal_error = sinkhorn_divergence_newton_reference(
            res.points, res.weights, patterns[j], w, 1.0
        )
        assert marginal_error <= 1e-13
        assert abs(res.divergences[j] / ref.divergence - 1.0) <= 1e-6, j
    assert res.converged.shape == (K,) and res.converged.all()
    assert res.warnings == []
    assert all(row["converged"] for row in res.trace[1:])


def test_a_tiny_iteration_cap_is_reported_per_pattern_and_in_words():
    patterns, query, _ = _issue_setup()
    memory = SinkhornMemory.store(
        [(p, None) for p in patterns], blur=1.0, beta=20.0, max_iter=1, newton_steps=0
    )
    assert not memory.q_converged.all()
    state = memory.solve(query, np.full(M, 1.0 / M))
    assert not state.converged.any() and (state.residual > memory.tol).all()
    res = memory.retrieve(query, steps=2)
    assert res.converged.shape == (K,) and not res.converged.any()
    assert np.isfinite(res.divergences).all()
    text = " ".join(res.warnings)
    assert "did not converge for 10 of 10 patterns at the final state" in text
    assert "stored self-potentials" in text
    assert "did not converge at 3 of 3 states" in text
    assert not any(row["converged"] for row in res.trace[1:])
    assert res.description.parameters["sinkhorn_max_iter"] == 1


def test_warm_starts_only_where_the_state_moved_little():
    patterns, query, _ = _issue_setup()
    memory = SinkhornMemory.store([(p, None) for p in patterns], blur=1.0, beta=20.0)
    a = np.full(M, 1.0 / M)
    state = memory.solve(query, a)
    both = np.concatenate([query, memory.points])
    diameter = float(np.linalg.norm(both.max(axis=0) - both.min(axis=0)))
    unit = np.zeros_like(query)
    unit[0, 0] = 1.0
    small = 0.9 * memory.blur**2 / diameter  # moves the potentials by at most about 0.9 ε
    assert memory.close_enough(state, query + small * unit, a)
    assert not memory.close_enough(state, query + 2 * small * unit, a)
    tilted = a * np.exp(np.linspace(-0.5, 0.5, M))
    assert memory.close_enough(state, query, tilted / tilted.sum())
    tilted = a * np.exp(np.linspace(-2.0, 2.0, M))
    assert not memory.close_enough(state, query, tilted / tilted.sum())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"tol": 0.0}, "tol"), ({"max_iter": 0}, "max_iter"), ({"newton_steps": -1}, "newton_steps")],
)
def test_solver_settings_are_validated(kwargs, field):
    patterns, _, _ = _issue_setup()
    with pytest.raises(InvalidParameter) as err:
        SinkhornMemory.store([(patterns[0], None)], blur=1.0, beta=1.0, **kwargs)
    assert err.value.field == field
