"""The student–teacher task (flows note §2.4, §5.6): the Muon objective and its particle gradient,
the feature kernel of the MMD-type flows (witness, MMD² = 2·½MSE, first variation, Gram, DrMMD
against explicit features), the minibatch order, and one noisy SGD step written out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from dp_core.engine import rng
from dp_core.errors import InvalidParameter
from dp_core.flows.drmmd import DrMMDFlow
from dp_core.flows.mmd import MMDFlow, run_mmd_flow
from dp_core.flows.student_teacher import StudentTeacherTask
from dp_core.flows.witness import NoiseSchedule
from dp_core.reference.mmd import drmmd_features_reference
from dp_core.reference.muon import unit_output_reference

TASK = StudentTeacherTask(
    input_dim=5, hidden=3, teachers=2, n_train=40, n_valid=10, batch_size=16, data_seed=7
)


def _features(units: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ψ(x_n; Z_i) (N, n) and ∇_Z ψ (N, n, H, D+1) from the NumPy reference."""
    out = [unit_output_reference(u.reshape(TASK.shape), x, TASK.output, 2.0) for u in units]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


def test_objective_and_particle_gradient() -> None:
    """J = ½ mean_n (f_ν − f*)² and G_i = N ∂J/∂Z_i = mean_n r_n ∇ψ(x_n; Z_i) (F 25) against the
    NumPy reference, and G against central differences of J."""
    z = TASK.init_particles(7, seed=1)
    x, y = TASK.inputs("train")
    psi, dpsi = _features(z, x)
    r = psi.mean(axis=0) - y
    loss, grad = TASK.value_and_gradient(z)
    assert loss == pytest.approx(0.5 * np.mean(r**2), rel=1e-13)
    assert np.abs(grad - np.einsum("n,inhk->ihk", r, dpsi) / x.shape[0]).max() <= 1e-14
    assert loss == pytest.approx(TASK.half_mse(z), rel=1e-15)
    h = 1e-6
    for idx in [(0, 0, 0), (3, 2, 5), (6, 1, 2)]:
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        fd = (TASK.value_and_gradient(zp)[0] - TASK.value_and_gradient(zm)[0]) / (2 * h)
        assert 7 * fd == pytest.approx(grad[idx], abs=1e-8)


def test_feature_kernel_is_the_regression_error() -> None:
    """MMD²(ν, teacher) under k(z, z′) = mean_n ψψ′ is mean_n (f_ν − f*)² = 2·½MSE (§2.4), the
    Gram is ΨΨᵀ/n, and N·∂MMD²/∂z_l = 2∇φ(z_l) (T-MMD-1 for the feature kernel)."""
    kern = TASK.kernel(minibatch=False)
    z = TASK.init_particles(6, seed=2).reshape(6, TASK.dim)
    a = np.full(6, 1 / 6)
    y, b = TASK.targets, TASK.teacher_weights
    assert kern.mmd2(z, a, y, b) == pytest.approx(2 * TASK.half_mse(z), rel=1e-13)
    psi_y, _ = _features(y, TASK.inputs()[0])
    assert np.abs(kern.gram(y) - psi_y @ psi_y.T / 40).max() <= 1e-15
    grad = kern.witness_gradient(z, z, a, y, b, True)
    h = 1e-6
    for idx in [(0, 0), (2, 7), (5, 17)]:
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        fd = (kern.mmd2(zp, a, y, b) - kern.mmd2(zm, a, y, b)) / (2 * h)
        assert 6 * fd == pytest.approx(2 * grad[idx], abs=1e-8)


def test_drmmd_on_the_feature_kernel_matches_explicit_features() -> None:
    """The feature kernel has the explicit features φ(z) = (ψ(x_n; z)/√n)_n: (F 11) through the
    DrMMD flow against (F 9) in feature space (the student–teacher DrMMD of §3.5: K_YY is K×K)."""
    kern = TASK.kernel(minibatch=False)
    z = TASK.init_particles(9, seed=3).reshape(9, TASK.dim)
    a = np.full(9, 1 / 9)
    x = TASK.inputs()[0]
    phi_z, phi_y = (_features(p, x)[0] / np.sqrt(40) for p in (z, TASK.targets))
    for lmbda in (0.03, 1.0):
        flow = DrMMDFlow(kern, TASK.targets, TASK.teacher_weights, lmbda, 0.1)
        value = flow.evaluate(z, a, lmbda)
        expected = drmmd_features_reference(phi_z, a, phi_y, TASK.teacher_weights, lmbda)
        assert value.drmmd == pytest.approx(expected, rel=1e-10)


def test_minibatches_cover_each_epoch_once_and_are_reproducible() -> None:
    kern = TASK.kernel()
    x = TASK.inputs()[0]
    assert TASK.steps_per_epoch == 3
    for epoch in (0, 1):
        rows = np.concatenate([kern.for_step(3 * epoch + j).x for j in range(3)])
        assert sorted(map(tuple, rows)) == sorted(map(tuple, x))
    assert np.array_equal(kern.for_step(4).x, TASK.kernel().for_step(4).x)
    assert not np.array_equal(kern.for_step(0).x, kern.for_step(3).x)
    assert kern.for_step(0).x.shape == (16, 5) and kern.for_step(2).x.shape == (8, 5)


def test_one_noisy_step_is_the_codes_sgd_step() -> None:
    """§2.4: the flow's step on the task is ``z_i ← z_i − γ·b⁻¹Σ_n (f_ν − f*)(x_n)∇ψ(x_n; z̃_i)``
    over the step's batch, with z̃ = z + βu (u from particle i's stream) and the sum in f_ν over
    the clean particles — written out here with the NumPy reference."""
    z0 = TASK.init_particles(5, seed=4).reshape(5, TASK.dim)
    gamma, beta = 0.05, 0.3
    flow = MMDFlow(TASK.kernel(), TASK.targets, TASK.teacher_weights, gamma, NoiseSchedule(beta))
    state = flow.init(z0, seed=5)
    state, _ = flow.build_step()(state)
    u = np.empty_like(z0)
    rng.fill_normals(rng.new_streams(5, 5), u)
    xb = TASK.kernel().for_step(0).x
    psi, _ = _features(z0, xb)
    psi_t, _ = _features(TASK.targets, xb)
    r = psi.mean(axis=0) - TASK.teacher_weights @ psi_t
    _, dpsi_noisy = _features(z0 + beta * u, xb)
    expected = z0 - gamma * np.einsum("n,inhk->ihk", r, dpsi_noisy).reshape(5, -1) / xb.shape[0]
    assert np.abs(state.particles - expected).max() <= 1e-14


def test_noisy_mmd_flow_learns_and_is_reproducible() -> None:
    kwargs = dict(
        kernel=TASK.kernel(),
        step_size=0.5,
        n_steps=60,
        noise=NoiseSchedule(0.2, 0.5, 30),
        seed=6,
        trace_every=60,
    )
    z0 = TASK.init_particles(30, seed=6).reshape(30, TASK.dim)
    run = run_mmd_flow(z0, TASK.targets, **kwargs)
    again = run_mmd_flow(z0, TASK.targets, **kwargs)
    assert np.array_equal(run.particles.view(np.uint64), again.particles.view(np.uint64))
    assert run.trace[-1]["mmd2"] < 0.5 * run.trace[0]["mmd2"]
    assert run.description.parameters["kernel"] == "student_teacher_features"


def test_task_validation() -> None:
    with pytest.raises(InvalidParameter) as err:
        StudentTeacherTask(hidden=0)
    assert err.value.field == "hidden"
    with pytest.raises(InvalidParameter) as err:
        StudentTeacherTask(output="tanh")
    assert err.value.field == "output"
    with pytest.raises(InvalidParameter) as err:
        TASK.inputs("test")
    assert err.value.field == "split"
