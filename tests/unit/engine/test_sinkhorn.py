"""Batched log-domain Sinkhorn (flows note §4.1, (F 16), (F 19)) against the dense NumPy
reference, its invariants (T-SHK-3, T-SHK-4), both pass back-ends, batching and thread counts.

Tolerances come from the stopping rule. The soft c-transform is a contraction of the Hilbert
projective metric with rate κ = tanh(Δ/4)², Δ = max (C_il + C_kj − C_ij − C_kl)/ε ≤ 2 C_max/ε
(Birkhoff); stopping when the sup-change of the potentials is δ leaves them within
``2δ κ/(1 − κ)`` of the fixed point in oscillation, so every value built from the potentials
(weights summing to 1) is within ``_bound(δ)`` of the reference. Points lie in a box of diameter
1 (C_max ≤ ½) and ε = ¼, so Δ ≤ 4 and κ ≤ tanh(1)² = 0.58: the factor is finite and modest.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from dp_core.engine import sinkhorn_solve as sk
from dp_core.engine.divergence import barycentric_map, sinkhorn_divergence
from dp_core.reference.sinkhorn import (
    barycentric_map_reference,
    cost_matrix,
    sinkhorn_divergence_reference,
    sinkhorn_reference,
)

_KAPPA = math.tanh(1.0) ** 2
_ROUNDOFF = 1e-12


def _bound(delta: float) -> float:
    """Error of a potential (and of a weighted mean of potentials) after stopping at δ."""
    return 2.0 * delta * _KAPPA / (1.0 - _KAPPA) + _ROUNDOFF


def _case(n: int, m: int, d: int, seed: int, uniform: bool = False):
    """Points in [0, 1/√d]^d (so C_max ≤ ½) and positive weights summing to 1."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (n, d)) / math.sqrt(d)
    y = rng.uniform(0.0, 1.0, (m, d)) ** 2 / math.sqrt(d)
    if uniform:
        return x, np.full(n, 1.0 / n), y, np.full(m, 1.0 / m)
    a = rng.uniform(0.2, 1.0, n)
    b = rng.uniform(0.2, 1.0, m)
    return x, a / a.sum(), y, b / b.sum()


_BLUR = 0.5  # ε = 0.25 ≥ C_max/2


def _off(n: int) -> np.ndarray:
    return np.array([0, n], dtype=np.int64)


def _canonical(f: np.ndarray, g: np.ndarray, a: np.ndarray, b: np.ndarray):
    """Fix the gauge (f + c, g − c) by ⟨a, f⟩ = ⟨b, g⟩."""
    c = 0.5 * (a @ f - b @ g)
    return f - c, g + c


@pytest.mark.parametrize("path", ["dense", "tiled"])
@pytest.mark.parametrize(("n", "m", "d"), [(1, 5, 1), (37, 53, 2), (300, 260, 3), (70, 600, 2)])
def test_potentials_and_divergence_match_reference(path, n, m, d):
    x, a, y, b = _case(n, m, d, seed=n + 7 * m + d)
    eps = _BLUR**2
    tol = 1e-11
    got = sinkhorn_divergence(x, a, y, b, _BLUR, tol=tol, path=path)
    ref = sinkhorn_divergence_reference(x, a, y, b, eps)
    assert got.converged
    xy = sk.sinkhorn_pairs(x, _off(n), a, y, _off(m), b, _BLUR, tol=tol, path=path)
    bound = _bound(float(xy.residual[0]))
    f, g = _canonical(got.f, got.g, a, b)
    fr, gr = _canonical(ref.f, ref.g, a, b)
    assert np.abs(f - fr).max() <= 2 * bound
    assert np.abs(g - gr).max() <= 2 * bound
    assert np.abs(got.p - ref.p).max() <= 2 * bound
    assert np.abs(got.q - ref.q).max() <= 2 * bound
    # S and OT_ε are weighted means of potentials: within 4 bounds (two potentials, two sides)
    assert abs(got.value - ref.divergence) <= 4 * bound
    assert abs(got.ot_xy - ref.ot_xy) <= 2 * bound
    # the dual (potential) form agrees with the primal form of (F 16)
    assert abs(ref.divergence - ref.divergence_primal) <= 1e-10
    assert ref.ot_xy > 0 and eps > 0


def test_divergence_properties():
    """T-SHK-3: S_ε(α, α) = 0, S_ε ≥ 0, symmetry; plan marginals match a and b."""
    x, a, y, b = _case(40, 31, 2, seed=3)
    tol = 1e-12
    s_ab = sinkhorn_divergence(x, a, y, b, _BLUR, tol=tol)
    s_ba = sinkhorn_divergence(y, b, x, a, _BLUR, tol=tol)
    s_aa = sinkhorn_divergence(x, a, x, a, _BLUR, tol=tol)
    bound = 4 * _bound(tol)
    assert abs(s_aa.value) <= bound
    assert s_ab.value > 1e3 * bound
    assert abs(s_ab.value - s_ba.value) <= bound
    for seed in range(5):
        x2, a2, y2, b2 = _case(12, 9, 3, seed=100 + seed)
        assert sinkhorn_divergence(x2, a2, y2, b2, 0.7, tol=tol).value >= -bound
    # marginals of P_ij = a_i b_j exp((f_i + g_j − C_ij)/ε): rows exact (f is the last
    # half-step), columns within the stopping rule
    eps = _BLUR**2
    P = np.exp((s_ab.f[:, None] + s_ab.g[None, :] - cost_matrix(x, y)) / eps) * np.outer(a, b)
    assert np.abs(P.sum(axis=1) - a).max() <= 1e-13
    assert np.abs(P.sum(axis=0) - b).max() <= 2 * tol / eps * b.max() + 1e-13


@pytest.mark.parametrize("d", [2, 5])
def test_dense_and_tiled_paths_agree(d):
    x, a, y, b = _case(300, 700, d, seed=d)
    tol = 1e-10
    dense = sinkhorn_divergence(x, a, y, b, _BLUR, tol=tol, path="dense")
    tiled = sinkhorn_divergence(x, a, y, b, _BLUR, tol=tol, path="tiled")
    bound = _bound(tol)
    assert abs(dense.value - tiled.value) <= 8 * bound
    f1, g1 = _canonical(dense.f, dense.g, a, b)
    f2, g2 = _canonical(tiled.f, tiled.g, a, b)
    assert np.abs(f1 - f2).max() <= 4 * bound
    assert np.abs(g1 - g2).max() <= 4 * bound
    assert np.abs(dense.grad_x - tiled.grad_x).max() <= 1e-8


def test_barycentre_is_the_gradient_of_the_divergence():
    """T-SHK-4 and (F 19): the solver's barycentres equal the reference map at the points, and
    ∂S/∂x_i = a_i (T_p(x_i) − T_g(x_i)) matches central differences of S."""
    x, a, y, b = _case(9, 11, 2, seed=21)
    tol = 1e-13
    s = sinkhorn_divergence(x, a, y, b, _BLUR, tol=tol)
    eps = _BLUR**2
    f_ref, t_ref = barycentric_map_reference(x, y, b, s.g, eps)
    f_eng, t_eng = barycentric_map(x, y, b, s.g, _BLUR)
    assert np.abs(f_eng - f_ref).max() <= 1e-12
    assert np.abs(t_eng - t_ref).max() <= 1e-12
    assert np.abs(s.f - f_ref).max() <= 1e-12  # the last half-step is the extended potential
    h = 1e-5
    fd = np.empty_like(x)
    for i in range(x.shape[0]):
        for k in range(x.shape[1]):
            xp, xm = x.copy(), x.copy()
            xp[i, k] += h
            xm[i, k] -= h
            sp = sinkhorn_divergence(xp, a, y, b, _BLUR, tol=tol).value
            sm = sinkhorn_divergence(xm, a, y, b, _BLUR, tol=tol).value
            fd[i, k] = (sp - sm) / (2 * h)
    # truncation O(h²) with second derivatives O(1/ε); rounding 4·bound/(2h)
    assert np.abs(fd - s.grad_x).max() <= 1e-8 + 4 * _bound(tol) / h
    assert np.abs(s.grad_x).max() > 1e-3


def test_batch_equals_single_problems_bit_for_bit():
    """Problems stop independently: a problem's result does not depend on its batch."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8, 3))
    a = np.full(8, 1 / 8)
    ys = [rng.normal(size=(m, 3)) + k for k, m in enumerate((5, 9, 13))]
    bs = [np.full(y.shape[0], 1.0 / y.shape[0]) for y in ys]
    K = len(ys)
    xs = np.tile(x, (K, 1))
    x_off = np.arange(K + 1, dtype=np.int64) * 8
    y_off = np.array([0, 5, 14, 27], dtype=np.int64)
    batch = sk.sinkhorn_pairs(
        xs, x_off, np.tile(a, K), np.concatenate(ys), y_off, np.concatenate(bs), 0.8
    )
    for k in range(K):
        one = sk.sinkhorn_pairs(x, _off(8), a, ys[k], _off(ys[k].shape[0]), bs[k], 0.8)
        assert np.array_equal(batch.f[8 * k : 8 * (k + 1)], one.f)
        assert np.array_equal(batch.g[y_off[k] : y_off[k + 1]], one.g)
        assert batch.iterations[k] == one.iterations[0]
    selfs = sk.sinkhorn_self(np.concatenate(ys), y_off, np.concatenate(bs), 0.8)
    one = sk.sinkhorn_self(ys[1], _off(9), bs[1], 0.8)
    assert np.array_equal(selfs.f[5:14], one.f)


def test_warm_start_and_schedule():
    x, a, y, b = _case(30, 20, 2, seed=9)
    cold = sk.sinkhorn_pairs(x, _off(30), a, y, _off(20), b, _BLUR, tol=1e-12)
    warm = sk.sinkhorn_pairs(x, _off(30), a, y, _off(20), b, _BLUR, tol=1e-12, f0=cold.f, g0=cold.g)
    assert warm.iterations[0] <= 2
    assert np.abs(warm.f - cold.f).max() <= 1e-11
    sched = sk.eps_schedule(4.0, 0.1, 0.5)
    assert sched[0] == pytest.approx(16.0) and sched[-1] == pytest.approx(0.01)
    assert np.all(np.diff(sched) < 0)
    assert np.allclose(sched[1:-1] / sched[:-2], 0.25)
    assert sk.eps_schedule(0.05, 0.1, 0.5).tolist() == [pytest.approx(0.01)]
    ref_f, ref_g, _ = sinkhorn_reference(x, a, y, b, _BLUR**2)
    f, _ = _canonical(cold.f, cold.g, a, b)
    assert np.abs(f - _canonical(ref_f, ref_g, a, b)[0]).max() <= 2 * _bound(1e-12)


def test_far_apart_clouds_do_not_underflow():
    """Cost/ε far beyond exp's range (C/ε ~ 1e5): potentials stay finite and exact."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20, 2))
    y = rng.normal(size=(25, 2)) + 60.0
    a, b = np.full(20, 0.05), np.full(25, 0.04)
    s = sinkhorn_divergence(x, a, y, b, 0.2, tol=1e-9)
    ref = sinkhorn_divergence_reference(x, a, y, b, 0.04, tol=1e-9)
    assert np.isfinite(s.value)
    assert abs(s.value - ref.divergence) <= 1e-6 * abs(ref.divergence)


_THREAD_SCRIPT = """
import numpy as np, numba
from dp_core.engine import sinkhorn_solve as sk
assert numba.get_num_threads() == THREADS
rng = np.random.default_rng(77)
x = rng.normal(size=(600, 2)); y = rng.normal(size=(550, 2)) + 0.3
a = np.full(600, 1 / 600); b = np.full(550, 1 / 550)
o = lambda n: np.array([0, n], dtype=np.int64)
out = []
for path in ("tiled", "dense"):  # dense: 330k pairs, the row-parallel pass
    r = sk.sinkhorn_pairs(x, o(600), a, y, o(550), b, 0.3, tol=1e-8, path=path)
    s = sk.sinkhorn_self(x, o(600), a, 0.3, tol=1e-8, path=path)
    out += [r.f, r.g, r.barycentre.ravel(), s.f]
xs = np.tile(x[:16], (30, 1)); xo = np.arange(31, dtype=np.int64) * 16
r = sk.sinkhorn_pairs(xs, xo, np.full(480, 1 / 16), y[:480], xo, np.full(480, 1 / 16), 0.5)
out += [r.f, r.g]
print(np.concatenate(out).tobytes().hex())
"""


def test_results_do_not_depend_on_thread_count(run_python):
    assert numba.config.NUMBA_NUM_THREADS >= 2, "this machine gives Numba a single thread"
    outs = [
        run_python(_THREAD_SCRIPT.replace("THREADS", t), {"NUMBA_NUM_THREADS": t}, 600)
        for t in ("1", "2")
    ]
    assert outs[0] == outs[1]
    assert len(outs[0]) > 1000
