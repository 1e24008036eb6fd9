"""Regularised Muon as a Hamiltonian particle flow (flows note §5): the dissipation identity (F 27)
to first order in h, with the order fitted on three step sizes (T-Mu-3); one standard Muon step
against the reference ``muon_update`` (F 23) (T-Mu-4); learning on the student–teacher task;
the run contract (initial law, seeds, threads, trace)."""

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
from dp_core.flows.muon import MuonFlow, default_eps, run_muon_flow
from dp_core.flows.student_teacher import StudentTeacherTask
from dp_core.reference.muon import muon_update_reference

SMALL_TASK = StudentTeacherTask(
    input_dim=6, hidden=4, teachers=2, n_train=64, n_valid=16, batch_size=16, data_seed=3
)


def hamiltonian_gap(
    task: StudentTeacherTask, h: float, gamma: float = 2.5, flow_time: float = 1.0
) -> tuple[float, bool]:
    """Relative gap ``|H(0) − H(T) − Σ_k h·D_k| / Σ_k h·D_k`` of (F 27) along the scheme with
    η = h and β = 1 − γh (no Nesterov), and whether H was monotone at every step."""
    flow = MuonFlow(task, eps=1e-2, lr=h, momentum=1.0 - gamma * h, nesterov=False)
    state = flow.init(task.init_particles(6, seed=1))
    step = flow.build_step()
    h_start = h_prev = flow.hamiltonian(state)
    dissipated, monotone = 0.0, True
    for _ in range(round(flow_time / h)):
        state, info = step(state)
        dissipated += h * info.dissipation
        h_now = flow.hamiltonian(state)
        monotone &= h_now <= h_prev
        h_prev = h_now
    return abs(h_start - h_prev - dissipated) / dissipated, monotone


def test_hamiltonian_identity_holds_to_first_order() -> None:
    """T-Mu-3: the relative gap shrinks linearly with h (fitted order in [0.85, 1.15] on
    h ∈ {0.04, 0.02, 0.01}), is below 1 % at h = 0.01, and H decreases at every step."""
    hs = np.array([0.04, 0.02, 0.01])
    gaps, monotone = zip(*(hamiltonian_gap(SMALL_TASK, h) for h in hs), strict=True)
    order = np.polyfit(np.log(hs), np.log(gaps), 1)[0]
    assert 0.85 <= order <= 1.15, (gaps, order)
    assert gaps[-1] < 1e-2
    assert all(monotone)


@pytest.mark.full
def test_hamiltonian_identity_over_three_decades() -> None:
    """The note's grid (§5.4 [num]: 2.5e-3 / 1.6e-4 / 1.5e-5 at h = 1e-2 / 1e-3 / 1e-4 on its own
    toy): each 10x smaller h shrinks the gap about 10x (order within [0.9, 1.1])."""
    hs = np.array([1e-2, 1e-3, 1e-4])
    gaps = np.array([hamiltonian_gap(SMALL_TASK, h, flow_time=2.0)[0] for h in hs])
    orders = np.diff(np.log(gaps)) / np.diff(np.log(hs))
    assert np.all((orders > 0.9) & (orders < 1.1)), gaps


@dataclass(frozen=True)
class ConstantGradient:
    """J = N⁻¹ Σ_i ⟨C, W_i⟩: every particle's gradient is C (for one-step checks)."""

    c: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.c.shape

    def init_particles(self, n_particles: int, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).normal(size=(n_particles, *self.c.shape))

    def value_and_gradient(self, units: np.ndarray) -> tuple[float, np.ndarray]:
        return float(np.einsum("ijk,jk->", units, self.c)) / units.shape[0], np.broadcast_to(
            self.c, units.shape
        ).copy()

    def describe(self) -> dict[str, Any]:
        return {"task": "constant_gradient"}


@pytest.mark.parametrize("nesterov", [True, False])
def test_standard_muon_steps_match_the_reference_update(nesterov: bool) -> None:
    """T-Mu-4 (F 23): three steps of ``update="newton_schulz"`` (tall 6×3 particles, so the
    scale s = √2 matters) against the reference ``muon_update`` and ``p ← p(1 − lr·wd) − lr·u``."""
    c = np.random.default_rng(1).normal(size=(6, 3))
    task = ConstantGradient(c)
    flow = MuonFlow(
        task,
        eps=1e-3,
        lr=0.02,
        momentum=0.95,
        nesterov=nesterov,
        update="newton_schulz",
        weight_decay=0.1,
    )
    w0 = task.init_particles(2, seed=2)
    state = flow.init(w0)
    step = flow.build_step()
    w, m = w0.copy(), np.zeros_like(w0)
    for _ in range(3):
        state, _ = step(state)
        for i in range(2):
            u, m[i] = muon_update_reference(c, m[i], beta=0.95, nesterov=nesterov)
            w[i] = w[i] * (1 - 0.02 * 0.1) - 0.02 * u
    assert np.abs(state.particles - w).max() <= 1e-14
    assert np.abs(state.momentum - m).max() <= 1e-15


def test_both_updates_learn_the_student_teacher_task() -> None:
    """Regularised and standard Muon both lower J on the task, and report loss and H."""
    for update in ("regularized", "newton_schulz"):
        run = run_muon_flow(
            SMALL_TASK, n_particles=20, n_steps=60, lr=0.05, seed=4, update=update, trace_every=30
        )
        assert run.trace[-1]["loss"] < 0.5 * run.trace[0]["loss"]
        assert {"loss", "hamiltonian", "dissipation"} <= set(run.trace[-1])
        assert run.particles.shape == (20, *SMALL_TASK.shape)


def test_initial_law_and_seeds() -> None:
    """The initial particles depend only on (task, N, seed) — particle i on (task, seed, i) — and
    seeded runs are bit-for-bit reproducible."""
    a = SMALL_TASK.init_particles(5, seed=9)
    assert np.array_equal(a[:3], SMALL_TASK.init_particles(3, seed=9))
    assert not np.array_equal(a, SMALL_TASK.init_particles(5, seed=10))
    kwargs = dict(n_particles=8, n_steps=10, seed=9)
    r1, r2 = run_muon_flow(SMALL_TASK, **kwargs), run_muon_flow(SMALL_TASK, **kwargs)
    assert np.array_equal(r1.particles.view(np.uint64), r2.particles.view(np.uint64))
    assert r1.description.seed == 9 and r1.description.flow == "muon"
    g0 = SMALL_TASK.value_and_gradient(SMALL_TASK.init_particles(8, seed=9))[1]
    assert r1.description.parameters["eps"] == default_eps(g0) > 0  # 1e-3·median ‖G_i‖²_op


def test_validation() -> None:
    with pytest.raises(InvalidParameter) as err:
        MuonFlow(SMALL_TASK, eps=1e-3, momentum=1.0)
    assert err.value.field == "momentum"
    with pytest.raises(InvalidParameter) as err:
        MuonFlow(SMALL_TASK, eps=0.0)
    assert err.value.field == "eps"
    with pytest.raises(InvalidParameter) as err:
        MuonFlow(SMALL_TASK, eps=1e-3, update="adam")
    assert err.value.field == "update"
    with pytest.raises(InvalidParameter) as err:
        MuonFlow(SMALL_TASK, eps=1e-3).init(np.zeros((2, 3, 3)))
    assert err.value.field == "particles"
    with pytest.raises(InvalidParameter) as err:  # γ = (1 − β)/η = 0.05 / 5e-324 overflows
        MuonFlow(SMALL_TASK, eps=1e-3, lr=5e-324)
    assert err.value.field == "lr"


_THREAD_SCRIPT = textwrap.dedent(
    """
    from dp_core.flows.muon import run_muon_flow
    from dp_core.flows.student_teacher import StudentTeacherTask
    task = StudentTeacherTask(input_dim=8, hidden=3, n_train=100, n_valid=10, data_seed=1)
    for update in ("regularized", "newton_schulz"):
        r = run_muon_flow(task, n_particles=40, n_steps=4, seed=2, update=update)
        print(r.particles.tobytes().hex())
    """
)


def test_results_do_not_depend_on_thread_count() -> None:
    outs = []
    for threads in ("1", "2"):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads}
        done = subprocess.run(
            [sys.executable, "-c", _THREAD_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        outs.append(done.stdout)
    assert outs[0] == outs[1]
