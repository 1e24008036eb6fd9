"""DrMMD flow (flows note §3): the closed form (F 11) against the explicit de-regularised kernel
(F 10) and against explicit features (F 9) (T-Dr-1), the λ → ∞ limit (T-Dr-2), the first
variation (F 12) against finite differences (T-Dr-3), the fixed point (T-Dr-4), the objective
decreasing (T-Dr-5), the solves (T-Dr-6), the adaptive schedule (F 14) step by step (T-Dr-7),
the three-ring reference run, and the run contract."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from dp_core.errors import InvalidParameter
from dp_core.flows.drmmd import DrMMDFlow, TargetSolver, run_drmmd_flow
from dp_core.flows.mmd import run_mmd_flow
from dp_core.flows.witness import NoiseSchedule, PointKernel
from dp_core.reference.mmd import (
    drmmd_features_reference,
    drmmd_reference,
    kernel_matrix_reference,
    mmd2_reference,
    three_ring,
    witness_gradient_reference,
)

KINDS = ("gaussian", "imq", "laplace")


def _problem(n: int, m: int, d: int, seed: int, uniform: bool = False):
    gen = np.random.default_rng(seed)
    z = gen.normal(size=(n, d))
    y = gen.normal(size=(m, d)) * 0.8 + 0.4
    a = np.ones(n) if uniform else gen.uniform(0.5, 1.5, n)
    b = np.ones(m) if uniform else gen.uniform(0.5, 1.5, m)
    return z, a / a.sum(), y, b / b.sum()


def _flow(kind: str, y, b, lmbda: float, sigma: float = 0.9, **kw) -> DrMMDFlow:
    return DrMMDFlow(PointKernel(kind, sigma), y, b, lmbda, 0.1, **kw)


# --------------------------------------------------------------------------- the closed form
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lmbda", [1e-3, 0.5])
def test_closed_form_matches_the_explicit_deregularised_kernel(kind: str, lmbda: float) -> None:
    """T-Dr-1: (F 11) against wᵀK̃w with the dense k̃ of (F 10), non-uniform weights."""
    z, a, y, b = _problem(25, 30, 3, 1)
    for adaptive in (False, True):  # Cholesky and eigen paths
        value = _flow(kind, y, b, lmbda, adaptive=adaptive).evaluate(z, a, lmbda)
        expected = drmmd_reference(z, a, y, b, kind, 0.9, lmbda)
        assert value.drmmd == pytest.approx(expected, rel=1e-9)
        assert value.drmmd >= 0.0
        assert value.mmd2 == pytest.approx(mmd2_reference(z, a, y, b, kind, 0.9), rel=1e-11)


@dataclass(frozen=True)
class CosineFeatures:
    """A FlowKernel with explicit features φ(x) = √(2/F)·cos(Wx + c): k(x, x′) = φ(x)·φ(x′)."""

    w: np.ndarray
    c: np.ndarray

    def phi(self, x):
        return np.sqrt(2.0 / self.c.size) * np.cos(x @ self.w.T + self.c)

    def _u(self, z, a, y, b):
        return a @ self.phi(z) - b @ self.phi(y)

    def witness(self, at, z, a, y, b):
        return self.phi(at) @ self._u(z, a, y, b)

    def witness_gradient(self, at, z, a, y, b, at_particles):
        dphi = -np.sqrt(2.0 / self.c.size) * np.sin(at @ self.w.T + self.c)  # (L, F)
        return (dphi * self._u(z, a, y, b)) @ self.w

    def mmd2(self, z, a, y, b):
        u = self._u(z, a, y, b)
        return float(u @ u)

    def gram(self, y):
        p = self.phi(y)
        return p @ p.T

    def for_step(self, step: int):
        return self

    def describe(self) -> dict[str, Any]:
        return {"kernel": "cosine_features"}


def test_closed_form_matches_explicit_features() -> None:
    """T-Dr-1 (flows §3.2 [num]): with F = 12 explicit features, (F 11) through the flow equals
    (1+λ)uᵀ(Σ_π + λI)⁻¹u computed in feature space (M = 20 > F: Σ_π is singular-ish)."""
    gen = np.random.default_rng(2)
    kern = CosineFeatures(gen.normal(size=(12, 2)), gen.uniform(0, 2 * np.pi, 12))
    z, a, y, b = _problem(15, 20, 2, 3)
    for lmbda in (1e-2, 1.0):
        value = DrMMDFlow(kern, y, b, lmbda, 0.1).evaluate(z, a, lmbda)
        expected = drmmd_features_reference(kern.phi(z), a, kern.phi(y), b, lmbda)
        assert value.drmmd == pytest.approx(expected, rel=1e-10)


def test_large_lambda_limit_is_mmd2() -> None:
    """T-Dr-2: |DrMMD/MMD² − 1| = O(1/λ): the gap shrinks about 100x from λ = 1e4 to 1e6."""
    z, a, y, b = _problem(30, 40, 2, 4, uniform=True)
    gaps = []
    for lmbda in (1e4, 1e6):
        value = _flow("gaussian", y, b, lmbda).evaluate(z, a, lmbda)
        gaps.append(abs(value.drmmd / value.mmd2 - 1.0))
    assert gaps[0] < 1e-2
    assert 50 < gaps[0] / gaps[1] < 200


@pytest.mark.parametrize("kind", ["gaussian", "imq"])
def test_velocity_is_the_first_variation(kind: str) -> None:
    """T-Dr-3 (F 12): ``N·∂DrMMD/∂z_l = ∇φ(z_l)`` with
    ``∇φ = (2(1+λ)/λ)[Σ_j a_j∇k(z, z_j) − Σ_m (b_m + α_m)∇k(z, y_m)]``, by central differences
    (h = 1e-5; the note measured an error of 1.9e-9 on scale 2.5)."""
    z, _, y, b = _problem(10, 12, 2, 5)
    n, lmbda = z.shape[0], 0.05
    a = np.full(n, 1.0 / n)
    flow = _flow(kind, y, b, lmbda)
    value = flow.evaluate(z, a, lmbda)
    grad = (2 * (1 + lmbda) / lmbda) * witness_gradient_reference(
        z, z, a, y, b + value.alpha, kind, 0.9
    )
    h = 1e-5
    for idx in [(0, 0), (4, 1), (9, 1)]:
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        fd = (flow.evaluate(zp, a, lmbda).drmmd - flow.evaluate(zm, a, lmbda).drmmd) / (2 * h)
        assert n * fd == pytest.approx(grad[idx], rel=1e-6, abs=1e-7 * np.abs(grad).max())


def test_equal_measures_are_a_fixed_point() -> None:
    """T-Dr-4: ν = π (same points, same weights): DrMMD = 0 and zero velocity."""
    _, _, y, b = _problem(1, 25, 2, 6)
    flow = _flow("gaussian", y, b, 1e-2)
    value = flow.evaluate(y, b, 1e-2)
    assert abs(value.drmmd) <= 1e-13
    state = flow.init(y, seed=0, weights=b)
    state, _ = flow.build_step()(state)
    assert np.abs(state.particles - y).max() <= 1e-13


def test_solver_residual_and_paths_agree() -> None:
    """T-Dr-6: relative residual of (K_YY + λB⁻¹)α = d below 1e-10 at λ = 1e-3 (cond ≈ 1e3·M),
    and the Cholesky and eigendecomposition solvers agree."""
    _, _, y, b = _problem(1, 200, 2, 7)
    k = kernel_matrix_reference(y, y, "gaussian", 0.3)
    d = np.random.default_rng(8).normal(size=200)
    chol = TargetSolver.build(k, b, 1e-3)
    eig = TargetSolver.build(k, b, None)
    alpha_c, da_c = chol.solve(d, 1e-3)
    alpha_e, da_e = eig.solve(d, 1e-3)
    residual = (k + 1e-3 * np.diag(1 / b)) @ alpha_c - d
    assert np.linalg.norm(residual) <= 1e-10 * np.linalg.norm(d)
    assert np.abs(alpha_e - alpha_c).max() <= 1e-8 * np.abs(alpha_c).max()
    assert da_e == pytest.approx(da_c, rel=1e-9)
    with pytest.raises(InvalidParameter):
        chol.solve(d, 1e-2)


# --------------------------------------------------------------------------- the flow
def test_adaptive_schedule_step_by_step() -> None:
    """T-Dr-7 (F 14) on a 5-particle toy, against a NumPy loop over the dense references:
    ``λ_{n+1} = λ₀√(DrMMD_{λ_n}(ν_{n+1})/DrMMD_{λ₀}(ν₀))``, step ``max(λ_n s, 1e-4)``."""
    z0, a, y, b = _problem(5, 6, 2, 9, uniform=True)
    lam0, s, sigma = 0.05, 0.2, 0.8
    run = run_drmmd_flow(
        z0,
        y,
        lmbda=lam0,
        step_size=s,
        n_steps=8,
        bandwidth=sigma,
        adaptive=True,
        seed=0,
        trace_every=1,
    )
    z, lam = z0.copy(), lam0
    dr0 = drmmd_reference(z, a, y, b, "gaussian", sigma, lam0)
    lambdas = [lam0]
    k_yy = kernel_matrix_reference(y, y, "gaussian", sigma)
    for _ in range(8):
        d = kernel_matrix_reference(y, z, "gaussian", sigma) @ a - k_yy @ b
        alpha = np.linalg.solve(k_yy + lam * np.diag(1 / b), d)
        grad = witness_gradient_reference(z, z, a, y, b + alpha, "gaussian", sigma)
        z = z - max(lam * s, 1e-4) * (2 * (1 + lam) / lam) * grad
        lam = lam0 * np.sqrt(drmmd_reference(z, a, y, b, "gaussian", sigma, lam) / dr0)
        lambdas.append(lam)
    assert np.abs(run.particles - z).max() <= 1e-10
    assert [row["lambda"] for row in run.trace] == pytest.approx(lambdas, rel=1e-9)


def test_drmmd_is_non_increasing_for_small_steps() -> None:
    """T-Dr-5 on the three-ring case: fixed λ, DrMMD_λ recorded every step."""
    z0, y = three_ring()
    for lmbda, s in ((1e-3, 0.01), (0.1, 0.1)):
        run = run_drmmd_flow(
            z0, y, lmbda=lmbda, step_size=s, n_steps=100, bandwidth=0.15, seed=0, trace_every=1
        )
        values = np.array([row["drmmd"] for row in run.trace])
        assert np.all(np.diff(values) <= 0.0)
        assert values[-1] < values[0]
        assert all(row["lambda"] == lmbda for row in run.trace)


def test_three_ring_first_thousand_steps_match_the_note() -> None:
    """§2.6 [num]: DrMMD λ = 1e-3, s = 0.1, σ = 0.15: MMD² 3.3e-2 after 1k steps (2 %)."""
    z0, y = three_ring()
    run = run_drmmd_flow(
        z0, y, lmbda=1e-3, step_size=0.1, n_steps=1000, bandwidth=0.15, seed=0, trace_every=1000
    )
    assert run.trace[-1]["mmd2"] == pytest.approx(3.3e-2, rel=0.02)
    assert run.trace[-1]["drmmd"] < run.trace[0]["drmmd"]


_THREAD_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from dp_core.flows.drmmd import run_drmmd_flow
    from dp_core.flows.witness import NoiseSchedule
    gen = np.random.default_rng(12)
    z, y = gen.normal(size=(1100, 2)), gen.normal(size=(300, 2)) + 1.0
    for adaptive, noise in ((False, None), (True, NoiseSchedule(level=0.1))):
        r = run_drmmd_flow(z, y, lmbda=0.01, step_size=0.1, n_steps=3, bandwidth=0.5, seed=1,
                           adaptive=adaptive, noise=noise)
        print(r.particles.tobytes().hex(), r.state.lmbda.hex())
    """
)


def _run_with_threads(code: str, threads: str) -> str:
    env = {**os.environ, "NUMBA_NUM_THREADS": threads}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_results_do_not_depend_on_thread_count() -> None:
    assert _run_with_threads(_THREAD_SCRIPT, "1") == _run_with_threads(_THREAD_SCRIPT, "2")


def test_seeds_description_and_validation() -> None:
    z, _, y, _ = _problem(40, 30, 2, 10)
    kwargs = dict(lmbda=0.1, step_size=0.1, n_steps=5, bandwidth=0.6, trace_every=5)
    noisy = dict(noise=NoiseSchedule(level=0.2), **kwargs)
    a, b = run_drmmd_flow(z, y, seed=3, **noisy), run_drmmd_flow(z, y, seed=3, **noisy)
    assert np.array_equal(a.particles.view(np.uint64), b.particles.view(np.uint64))
    assert not np.array_equal(a.particles, run_drmmd_flow(z, y, seed=4, **noisy).particles)
    assert set(a.trace[-1]) >= {"step", "drmmd", "mmd2", "lambda", "gamma"}
    assert a.description.flow == "drmmd" and a.description.parameters["lambda"] == 0.1
    with pytest.raises(InvalidParameter) as err:
        run_drmmd_flow(z, y, seed=0, **{**kwargs, "lmbda": 0.0})
    assert err.value.field == "lmbda"
    with pytest.raises(InvalidParameter) as err:
        run_drmmd_flow(z, y, seed=0, target_weights=np.r_[0.0, np.ones(29)], **kwargs)
    assert err.value.field == "target_weights"


@pytest.mark.full
def test_three_ring_acceptance_rule_at_20k_steps() -> None:
    """§2.6 acceptance: same seed, DrMMD within 2 % (MMD²) and 0.002 (W₁) of the note's
    4.2e-5 / 0.022 after 20k steps, and W₁(DrMMD) < 0.5·W₁(MMD γ = 0.2) on three source seeds."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    def w1(z, y):
        cost = cdist(z, y)
        rows, cols = linear_sum_assignment(cost)
        return cost[rows, cols].mean()

    for seed in (0, 1, 2):
        z0, y = three_ring(seed)
        dr = run_drmmd_flow(
            z0,
            y,
            lmbda=1e-3,
            step_size=0.1,
            n_steps=20000,
            bandwidth=0.15,
            seed=0,
            trace_every=20000,
        )
        mmd = run_mmd_flow(z0, y, step_size=0.2, n_steps=20000, bandwidth=0.15, seed=0)
        if seed == 0:
            assert dr.trace[-1]["mmd2"] == pytest.approx(4.2e-5, rel=0.02)
            assert w1(dr.particles, y) == pytest.approx(0.022, abs=0.002)
        assert w1(dr.particles, y) < 0.5 * w1(mmd.particles, y)
