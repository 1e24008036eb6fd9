"""Sinkhorn where it stalls, Newton polishing, and honest convergence flags (flows note §4.1).

The set-up of the "Trust hardening" issue, item 9: patterns of 40 points of N(0, 4 I₃), blur 1
(ε = 1), and a query that is one of them plus N(0, ¼ I₃) noise. The plan of (query, its pattern)
is close to a permutation, the second singular value of the normalised plan is 1 − 6·10⁻⁷,
and alternating Sinkhorn stalls at a sup-change of 10⁻³ after 1000 iterations (the old engine
then returned S_ε 10⁻⁴ off and said nothing to its callers). The oracle is
:func:`dp_core.reference.sinkhorn.sinkhorn_newton_reference`: plain NumPy/SciPy log-domain
Sinkhorn, then Newton on the *joint* dual, with its marginal error (≤ 1e-13) measured on the
returned plan, so the test checks a certificate rather than trusting a loop.
"""

from __future__ import annotations

import numpy as np
import pytest

from dp_core.engine import sinkhorn_solve as sk
from dp_core.engine.divergence import sinkhorn_divergence
from dp_core.reference.sinkhorn import (
    barycentric_map_reference,
    sinkhorn_divergence_newton_reference,
    sinkhorn_newton_reference,
    sinkhorn_self_newton_reference,
)

K, M, D = 10, 40, 3


def _issue_setup():
    rng = np.random.default_rng(0)
    patterns = rng.normal(scale=2.0, size=(K, M, D))
    query = patterns[3] + 0.5 * rng.normal(size=(M, D))
    return patterns, query


def _batch(patterns, query):
    """The memory's batch: the query against every pattern (K problems of 40 × 40)."""
    off = np.arange(K + 1, dtype=np.int64) * M
    xs = np.ascontiguousarray(np.tile(query, (K, 1)))
    ys = np.ascontiguousarray(patterns.reshape(-1, patterns.shape[2]))
    w = np.full(K * M, 1.0 / M)
    return xs, off, w, ys, off, w


def test_plain_sinkhorn_stalls_here_and_says_so():
    patterns, query = _issue_setup()
    batch = sk.sinkhorn_pairs(*_batch(patterns, query), 1.0, newton_steps=0)
    assert not batch.converged[3]
    assert batch.iterations[3] == 1000 and batch.residual[3] > 1e-4
    assert (batch.newton_steps == 0).all()


def test_divergence_agrees_with_the_high_precision_reference():
    """S_ε(query, pattern 3) within 1e-6 relative (the old engine: 1.0e-4 off, unconverged)."""
    patterns, query = _issue_setup()
    w = np.full(M, 1.0 / M)
    ref, marginal_error = sinkhorn_divergence_newton_reference(query, w, patterns[3], w, 1.0)
    assert marginal_error <= 1e-13
    assert abs(ref.divergence - ref.divergence_primal) <= 1e-12
    got = sinkhorn_divergence(query, None, patterns[3], None, 1.0)
    assert got.converged
    assert abs(got.value / ref.divergence - 1.0) <= 1e-6


def test_newton_polishing_converges_every_problem_of_the_batch():
    patterns, query = _issue_setup()
    batch = sk.sinkhorn_pairs(*_batch(patterns, query), 1.0, max_iter=50)
    assert batch.converged.all() and (batch.residual <= 1e-9).all()
    assert batch.newton_steps[3] > 0
    w = np.full(M, 1.0 / M)
    for k in range(K):
        f_ref, g_ref, marginal_error = sinkhorn_newton_reference(query, w, patterns[k], w, 1.0)
        assert marginal_error <= 1e-13
        f, g = batch.f[k * M : (k + 1) * M], batch.g[k * M : (k + 1) * M]
        assert abs((w @ f + w @ g) / (w @ f_ref + w @ g_ref) - 1.0) <= 1e-10
        # the barycentric map (F 19) from the polished potentials
        _, t_ref = barycentric_map_reference(query, patterns[k], w, g_ref, 1.0)
        assert np.abs(batch.barycentre[k * M : (k + 1) * M] - t_ref).max() <= 1e-7


@pytest.mark.parametrize("path", ["dense", "tiled"])
def test_polishing_after_a_tiny_cap_matches_the_reference(path):
    """Newton from 3 iterations, on both back-ends, with a zero weight on each side (Newton
    runs on the support; the last passes give those points their potentials)."""
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(30, 2)), rng.normal(size=(25, 2)) + 0.3
    a, b = rng.uniform(0.5, 1.0, 30), rng.uniform(0.5, 1.0, 25)
    a[4], b[7] = 0.0, 0.0
    a, b = a / a.sum(), b / b.sum()
    off = lambda n: np.array([0, n], dtype=np.int64)  # noqa: E731
    pair = sk.sinkhorn_pairs(x, off(30), a, y, off(25), b, 0.5, max_iter=3, tol=1e-11, path=path)
    assert pair.converged[0] and pair.newton_steps[0] > 0
    s, r = a > 0, b > 0
    f_ref, g_ref, err = sinkhorn_newton_reference(x[s], a[s], y[r], b[r], 0.25)
    assert err <= 1e-13
    ot, ot_ref = a @ pair.f + b @ pair.g, a[s] @ f_ref + b[r] @ g_ref
    assert abs(ot - ot_ref) <= 1e-10
    selfs = sk.sinkhorn_self(x, off(30), a, 0.5, max_iter=3, tol=1e-11, path=path)
    assert selfs.converged[0] and selfs.newton_steps[0] > 0
    p_ref, err = sinkhorn_self_newton_reference(x[s], a[s], 0.25)
    assert err <= 1e-13
    assert np.abs(selfs.f[s] - p_ref).max() <= 1e-10


def test_polishing_leaves_converged_problems_bit_for_bit_alone():
    patterns, query = _issue_setup()
    args = _batch(patterns[:, :, :2].copy() * 0.2, query[:, :2] * 0.2)  # well-conditioned
    with_newton = sk.sinkhorn_pairs(*args, 1.0)
    without = sk.sinkhorn_pairs(*args, 1.0, newton_steps=0)
    assert with_newton.converged.all() and (with_newton.newton_steps == 0).all()
    for name in ("f", "g", "barycentre", "iterations", "residual"):
        assert np.array_equal(getattr(with_newton, name), getattr(without, name)), name


def test_a_tiny_cap_without_newton_is_reported_not_hidden():
    patterns, query = _issue_setup()
    batch = sk.sinkhorn_pairs(*_batch(patterns, query), 1.0, max_iter=2, newton_steps=0)
    assert not batch.converged.any()
    assert (batch.iterations == 2).all() and (batch.residual > 1e-9).all()
    selfs = sk.sinkhorn_self(query, np.array([0, M]), np.full(M, 1 / M), 1.0, max_iter=1,
                             newton_steps=0)  # fmt: skip
    assert not selfs.converged[0]
