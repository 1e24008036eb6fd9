"""MMD flow with noise injection (flows note §2): the witness against dense references and finite
differences (T-MMD-1), MMD² non-increasing for small steps (T-MMD-2), equivariance (T-MMD-3), the
fixed point (T-MMD-4), the injected gradient's mean against the smoothed kernel (T-MMD-5), the
whole noisy scheme against the NumPy reference, and the run contract (seeds, threads, trace)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dp_core.engine import rng
from dp_core.errors import Cancelled, InvalidParameter
from dp_core.flows.mmd import MMDFlow, run_mmd_flow
from dp_core.flows.witness import SELF_SUM_MIN, NoiseSchedule, PointKernel
from dp_core.reference.mmd import (
    mmd2_reference,
    mmd_flow_reference,
    three_ring,
    witness_gradient_numpy,
    witness_gradient_reference,
)

KINDS = ("gaussian", "imq", "laplace")


def _problem(n: int, m: int, d: int, seed: int):
    gen = np.random.default_rng(seed)
    z = gen.normal(size=(n, d))
    y = gen.normal(size=(m, d)) + 0.5
    a = gen.uniform(0.5, 1.5, n)
    b = gen.uniform(0.5, 1.5, m)
    return z, a / a.sum(), y, b / b.sum()


# --------------------------------------------------------------------------- the witness
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [40, SELF_SUM_MIN + 3])
def test_witness_gradient_and_mmd2_match_dense_references(kind: str, n: int) -> None:
    """Both paths of PointKernel (stacked cross sum; antisymmetric self sum for n >= 1024) and
    the noisy evaluation points against the dense NumPy references."""
    z, a, y, b = _problem(n, 70, 3, 1)
    k = PointKernel(kind, 0.8)
    scale = np.abs(witness_gradient_reference(z, z, a, y, b, kind, 0.8)).max()
    g = k.witness_gradient(z, z, a, y, b, True)
    assert np.abs(g - witness_gradient_reference(z, z, a, y, b, kind, 0.8)).max() <= 1e-12 * scale
    at = z + 0.1 * np.random.default_rng(2).normal(size=z.shape)
    g_at = k.witness_gradient(at, z, a, y, b, False)
    assert (
        np.abs(g_at - witness_gradient_reference(at, z, a, y, b, kind, 0.8)).max() <= 1e-12 * scale
    )
    if n < 100:
        assert k.mmd2(z, a, y, b) == pytest.approx(mmd2_reference(z, a, y, b, kind, 0.8), rel=1e-11)


def test_numpy_anchor_matches_the_reference() -> None:
    """The benchmark's vectorised NumPy witness gradient computes the same thing."""
    z, a, y, b = _problem(300, 200, 2, 3)
    ref = witness_gradient_reference(z, z, a, y, b, "gaussian", 0.5)
    got = witness_gradient_numpy(z, z, a, y, b, 0.5)
    assert np.abs(got - ref).max() <= 1e-12 * np.abs(ref).max()


@pytest.mark.parametrize("kind", KINDS)
def test_particle_gradient_of_mmd2_is_twice_the_witness_gradient(kind: str) -> None:
    """T-MMD-1 (flows §2.1): ``N·∂MMD²/∂z_l = 2∇φ(z_l)`` for uniform weights, by central
    differences with step 1e-5 (error O(h²)·|∂³MMD²| + rounding 1e-16/h: ~1e-10 here)."""
    z, _, y, b = _problem(12, 9, 2, 4)
    n = z.shape[0]
    a = np.full(n, 1.0 / n)
    k = PointKernel(kind, 0.9)
    grad = k.witness_gradient(z, z, a, y, b, True)
    h = 1e-5
    for idx in [(0, 0), (3, 1), (11, 0)]:
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        fd = (k.mmd2(zp, a, y, b) - k.mmd2(zm, a, y, b)) / (2 * h)
        assert n * fd == pytest.approx(2 * grad[idx], abs=1e-8)


def test_equal_particles_and_targets_are_a_fixed_point() -> None:
    """T-MMD-4: ν = π (same points, same weights) gives zero velocity at β = 0."""
    z, a, _, _ = _problem(50, 1, 2, 5)
    g = PointKernel("gaussian", 0.5).witness_gradient(z, z, a, z, a, True)
    assert np.abs(g).max() <= 1e-15


# --------------------------------------------------------------------------- the flow
def test_mmd2_is_non_increasing_for_small_steps() -> None:
    """T-MMD-2 on the three-ring case: β = 0, γ ∈ {0.01, 0.2}, MMD² recorded every step."""
    z0, y = three_ring()
    for gamma in (0.01, 0.2):
        run = run_mmd_flow(
            z0, y, step_size=gamma, n_steps=150, bandwidth=0.15, seed=0, trace_every=1
        )
        mmd2 = np.array([row["mmd2"] for row in run.trace])
        assert np.all(np.diff(mmd2) <= 0.0)
        assert mmd2[-1] < 0.1 * mmd2[0]


def test_three_ring_first_thousand_steps_match_the_note() -> None:
    """§2.6 [num]: plain MMD flow, γ = 0.2, σ = 0.15: MMD² 4.6e-4 after 1k steps (the note's
    acceptance rule: same seed, within 2 %); start 0.864."""
    z0, y = three_ring()
    run = run_mmd_flow(z0, y, step_size=0.2, n_steps=1000, bandwidth=0.15, seed=0, trace_every=1000)
    assert run.trace[0]["mmd2"] == pytest.approx(0.8639, abs=5e-4)
    assert run.trace[-1]["mmd2"] == pytest.approx(4.6e-4, rel=0.02)


def test_noisy_scheme_matches_the_numpy_reference() -> None:
    """(F 7) with the engine's noise draws replayed into the NumPy reference scheme."""
    z, _, y, b = _problem(30, 25, 2, 6)
    a = np.full(30, 1 / 30)
    noise = NoiseSchedule(level=0.3, decay=0.5, interval=4)
    run = run_mmd_flow(
        z,
        y,
        step_size=0.3,
        n_steps=10,
        kernel="imq",
        bandwidth=0.7,
        target_weights=b,
        noise=noise,
        seed=11,
    )
    streams = rng.new_streams(11, 30)

    def shift(t: int) -> np.ndarray:
        u = np.empty((30, 2))
        rng.fill_normals(streams, u)
        return noise.at(t) * u

    ref = mmd_flow_reference(z, a, y, b, "imq", 0.7, 0.3, shift, 10)
    assert np.abs(run.particles - ref).max() <= 1e-12


def test_injected_gradient_has_the_smoothed_kernel_mean() -> None:
    """T-MMD-5: over the noise, the mean of the step's gradient g_i is the gradient of the witness
    built with ``E_u k_σ(z + βu, ·) = (σ²/(σ²+β²))^{d/2} k_{√(σ²+β²)}(z, ·)`` (flows §2.2).
    g_i is read off one step, ``(z − z′)/γ``, for R = 400 seeds; tolerance 4·sd/√R."""
    z, a, y, b = _problem(4, 6, 2, 7)
    sigma, beta, gamma, draws = 0.8, 0.5, 1e-3, 400
    flow = MMDFlow(PointKernel("gaussian", sigma), y, b, gamma, NoiseSchedule(level=beta))
    step = flow.build_step()
    grads = np.empty((draws, *z.shape))
    for r in range(draws):
        state = flow.init(z, seed=1000 + r, weights=a)
        state, _ = step(state)
        grads[r] = (z - state.particles) / gamma
    s2 = sigma**2 + beta**2
    expected = (sigma**2 / s2) * witness_gradient_reference(z, z, a, y, b, "gaussian", s2**0.5)
    # ∇ of c·k_{σ'}: the reference's ∇k_{σ'} already carries 1/σ'²; c = (σ²/σ'²)^{d/2}, d = 2
    sd = grads.std(axis=0, ddof=1)
    assert np.all(np.abs(grads.mean(axis=0) - expected) <= 4 * sd / np.sqrt(draws))


def test_translation_and_rotation_equivariance() -> None:
    """T-MMD-3: moving particles and targets together moves the trajectory (β = 0: any rigid
    motion; β > 0: translations, which leave the noise draws unchanged)."""
    z, _, y, _ = _problem(40, 30, 2, 8)
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    shift = np.array([3.0, -1.0])
    kwargs = dict(step_size=0.5, n_steps=20, bandwidth=0.6, seed=3)
    base = run_mmd_flow(z, y, **kwargs).particles
    moved = run_mmd_flow(z @ rot.T + shift, y @ rot.T + shift, **kwargs).particles
    assert np.abs(moved - (base @ rot.T + shift)).max() <= 1e-12
    noise = NoiseSchedule(level=0.2)
    base = run_mmd_flow(z, y, noise=noise, **kwargs).particles
    moved = run_mmd_flow(z + shift, y + shift, noise=noise, **kwargs).particles
    assert np.abs(moved - (base + shift)).max() <= 1e-12


def test_noise_schedules() -> None:
    """(F 8): β_t = β₀ρ^{⌊t/T⌋}; the authors' default halves 1.0 every 1000 epochs of 10 steps."""
    authors = NoiseSchedule.authors()
    assert [authors.at(t) for t in (0, 9999, 10000, 25000)] == [1.0, 1.0, 0.5, 0.25]
    assert NoiseSchedule(0.1, 0.5, 2000).at(4000) == pytest.approx(0.025)
    assert NoiseSchedule().at(123) == 0.0
    with pytest.raises(InvalidParameter):
        NoiseSchedule(level=-1.0)


# --------------------------------------------------------------------------- run contract
def test_seeded_runs_are_reproducible_bit_for_bit() -> None:
    z, _, y, _ = _problem(60, 40, 3, 9)
    kwargs = dict(step_size=0.2, n_steps=15, bandwidth=0.7, noise=NoiseSchedule(level=0.3))
    a = run_mmd_flow(z, y, seed=5, **kwargs)
    b = run_mmd_flow(z, y, seed=5, **kwargs)
    c = run_mmd_flow(z, y, seed=6, **kwargs)
    assert np.array_equal(a.particles.view(np.uint64), b.particles.view(np.uint64))
    assert not np.array_equal(a.particles, c.particles)
    assert a.description.seed == 5 and a.description.flow == "mmd"
    assert a.description.parameters["noise"]["level"] == 0.3


_THREAD_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from dp_core.flows.mmd import run_mmd_flow
    from dp_core.flows.witness import NoiseSchedule
    gen = np.random.default_rng(12)
    z, y = gen.normal(size=(1100, 2)), gen.normal(size=(500, 2)) + 1.0
    plain = run_mmd_flow(z, y, step_size=0.5, n_steps=3, bandwidth=0.5, seed=1)
    noisy = run_mmd_flow(z, y, step_size=0.5, n_steps=3, bandwidth=0.5, seed=1,
                         noise=NoiseSchedule(level=0.2))
    print(plain.particles.tobytes().hex() + noisy.particles.tobytes().hex())
    """
)


def run_with_threads(code: str, threads: str) -> str:
    """stdout of ``code`` in a fresh interpreter with ``NUMBA_NUM_THREADS=threads``."""
    env = {**os.environ, "NUMBA_NUM_THREADS": threads}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_results_do_not_depend_on_thread_count() -> None:
    """One thread and two give the same bits (N = 1100: the antisymmetric self-sum path too)."""
    assert run_with_threads(_THREAD_SCRIPT, "1") == run_with_threads(_THREAD_SCRIPT, "2")


def test_trace_progress_cancel_and_validation() -> None:
    z, _, y, _ = _problem(20, 20, 2, 10)
    seen: list[tuple[int, int]] = []
    run = run_mmd_flow(
        z,
        y,
        step_size=0.1,
        n_steps=5,
        bandwidth=0.5,
        seed=0,
        trace_every=2,
        progress=lambda k, n: seen.append((k, n)),
    )
    assert [row["step"] for row in run.trace] == [0, 2, 4, 5]
    assert seen == [(k, 5) for k in range(1, 6)]
    assert run.description.flow_time == pytest.approx(0.5)
    with pytest.raises(Cancelled):
        run_mmd_flow(z, y, step_size=0.1, n_steps=5, bandwidth=0.5, seed=0, cancel=lambda: True)
    with pytest.raises(InvalidParameter) as err:
        run_mmd_flow(z, y, step_size=0.1, n_steps=5, kernel="gaussian")
    assert err.value.field == "bandwidth"
    with pytest.raises(InvalidParameter) as err:
        run_mmd_flow(z, y[:, :1], step_size=0.1, n_steps=5, bandwidth=0.5)
    assert err.value.field == "particles"
    with pytest.raises(InvalidParameter) as err:
        run_mmd_flow(z, y, step_size=0.1, n_steps=5, bandwidth=0.5, target_weights=-np.ones(20))
    assert err.value.field == "target_weights"
    with pytest.raises(InvalidParameter) as err:
        run_mmd_flow(z, y, step_size=0.1, n_steps=5, kernel="cosine", bandwidth=0.5)
    assert err.value.field == "kernel"
