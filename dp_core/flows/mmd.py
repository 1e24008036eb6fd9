"""Wasserstein gradient flow of MMD² with Arbel et al.'s noise injection (flows note §2).

The flow descends ``𝓕(ν) = ½ MMD²(ν, π)`` (F 6), whose first variation is the witness
``φ(z) = m_ν(z) − m_π(z)``, ``m_ν(z) = Σ_j a_j k(z, z_j)`` (F 2). One step of the noisy Euler
scheme (F 7), with fresh ``u_i ~ N(0, I_d)`` from particle i's own random stream:

    z̃_i = z_i + β_t u_i,
    g_i = Σ_j a_j ∇_1 k(z̃_i, z_j) − Σ_m b_m ∇_1 k(z̃_i, y_m),
    z_i ← z_i − γ g_i.

The noise only moves the point where the witness gradient is evaluated; the sum over j uses the
clean particles, and particles are not diffused. β_t = 0 is the plain MMD flow, and then the self
term is the antisymmetric self-gradient sum (each pair once, flows note §2.3). The schedule is
(F 8): :class:`NoiseSchedule` ``β_t = β₀ ρ^{⌊t/T_β⌋}``, with :meth:`NoiseSchedule.authors` the
authors' default (β₀ = 1, halved every 1000 epochs of 10 steps).

The kernel enters through the ``FlowKernel`` protocol of ``dp_core.flows.witness``: the engine's
point kernels (Gaussian, IMQ, Laplace with a bandwidth), where the witness gradient is one fused
engine kernel-gradient sum over particles and targets (P2, no N×N or N×M matrix), or the feature
kernel of the student–teacher task, whose minibatch kernel changes with the step. The trace
metric ``mmd2`` is the V-statistic (F 3) ``aᵀK_ZZ a − 2aᵀK_ZY b + bᵀK_YY b``.

Public runs take a seed (``engine.rng`` streams, one per particle): equal seeds give bit-identical
particles on any number of threads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from dp_core.engine import rng
from dp_core.errors import InvalidParameter, NumericalFailure
from dp_core.flows.base import CancelFn, ProgressFn, RunDescription, RunResult, run_steps
from dp_core.flows.witness import FlowKernel, NoiseSchedule, probability_weights, resolve_target
from dp_core.types import FloatArray, as_particles

__all__ = ["MMDFlow", "MMDInfo", "MMDState", "run_mmd_flow"]


class MMDState(NamedTuple):
    """Particles (N, d), their fixed weights (N,), one random stream per particle, steps done."""

    particles: FloatArray
    weights: FloatArray
    streams: np.ndarray
    steps_done: int


class MMDInfo(NamedTuple):
    """Per-step diagnostics: the noise level β_t the step used."""

    noise_level: float


@dataclass(frozen=True)
class MMDFlow:
    """The noisy MMD flow (F 7) towards a fixed weighted target (module docstring)."""

    kernel: FlowKernel
    targets: FloatArray
    target_weights: FloatArray
    step_size: float
    noise: NoiseSchedule = field(default_factory=NoiseSchedule)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.step_size) and self.step_size > 0):
            raise InvalidParameter("step_size", "must be finite and positive")
        if self.target_weights.shape != (self.targets.shape[0],):
            raise InvalidParameter("target_weights", "one weight per target point")

    def init(
        self, particles: npt.ArrayLike, seed: int, weights: npt.ArrayLike | None = None
    ) -> MMDState:
        """Initial state from given positions (N, d), optional weights, and a seed."""
        z = as_particles(particles, "particles").copy()
        if z.shape[1] != self.targets.shape[1]:
            raise InvalidParameter("particles", "particles and targets must have the same dim")
        a = probability_weights(weights, z.shape[0], "particle_weights")
        return MMDState(z, a, rng.new_streams(seed, z.shape[0]), 0)

    def mmd2(self, state: MMDState) -> float:
        """MMD²(ν, π) (F 3) of the state's particles, under the full (not minibatch) kernel."""
        return self.kernel.mmd2(state.particles, state.weights, self.targets, self.target_weights)

    def build_step(self) -> Callable[[MMDState], tuple[MMDState, MMDInfo]]:
        """Return ``step(state) -> (state, info)``; the particles are updated in place."""
        y, b, gamma = self.targets, self.target_weights, self.step_size
        noise_buffer: list[FloatArray] = []

        def step(state: MMDState) -> tuple[MMDState, MMDInfo]:
            z, a = state.particles, state.weights
            kernel = self.kernel.for_step(state.steps_done)
            beta = self.noise.at(state.steps_done)
            if beta > 0.0:
                if not noise_buffer:
                    noise_buffer.append(np.empty_like(z))
                u = noise_buffer[0]
                rng.fill_normals(state.streams, u)
                u *= beta
                u += z
                g = kernel.witness_gradient(u, z, a, y, b, False)
            else:
                g = kernel.witness_gradient(z, z, a, y, b, True)
            z -= gamma * g
            if not np.all(np.isfinite(z)):
                raise NumericalFailure("the MMD flow produced a non-finite particle")
            return state._replace(steps_done=state.steps_done + 1), MMDInfo(beta)

        return step


def run_mmd_flow(
    particles: npt.ArrayLike,
    targets: npt.ArrayLike,
    *,
    step_size: float,
    n_steps: int,
    kernel: str | FlowKernel = "gaussian",
    bandwidth: float | None = None,
    particle_weights: npt.ArrayLike | None = None,
    target_weights: npt.ArrayLike | None = None,
    noise: NoiseSchedule | None = None,
    seed: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    trace_every: int = 0,
) -> RunResult[MMDState]:
    """Run the MMD flow (F 7) from ``particles`` (N, d) towards ``targets`` (M, d).

    Parameters
    ----------
    particles, targets : initial particle positions and target samples (public data).
    step_size : γ > 0; n_steps : number of steps (>= 0).
    kernel : ``"gaussian"``, ``"imq"``, ``"laplace"`` (with ``bandwidth`` σ > 0), or a
        :class:`FlowKernel` (e.g. the student–teacher feature kernel; ``bandwidth`` unused).
    particle_weights, target_weights : optional non-negative weights (normalised); uniform if
        omitted. Particle weights stay fixed (pure Wasserstein flow).
    noise : the β_t schedule (F 8); None is the plain flow (β = 0).
    seed : the run's seed (a fresh one from ``secrets`` when None, returned in the description);
        equal seeds give bit-identical results.
    progress, cancel, trace_every : as in :func:`dp_core.flows.base.run_steps`; trace rows hold
        ``mmd2`` (F 3) and ``noise_level``.

    Returns
    -------
    RunResult with the final particles (N, d), the state, a public description and the trace.
    """
    flow_kernel, y, b = resolve_target(kernel, bandwidth, targets, target_weights)
    run_seed = rng.resolve_seed(seed, private=False)
    flow = MMDFlow(flow_kernel, y, b, float(step_size), noise or NoiseSchedule())
    state = flow.init(particles, run_seed, particle_weights)
    state, trace = run_steps(
        flow.build_step(),
        state,
        n_steps,
        private=False,
        progress=progress,
        cancel=cancel,
        trace_every=trace_every,
        trace_fn=lambda s: {"mmd2": flow.mmd2(s)},
    )
    description = RunDescription(
        flow="mmd",
        n_particles=state.particles.shape[0],
        dim=state.particles.shape[1],
        n_steps=n_steps,
        step_size=flow.step_size,
        flow_time=n_steps * flow.step_size,
        initialization="given",
        parameters={
            **flow_kernel.describe(),
            "targets": y.shape[0],
            "noise": flow.noise.describe(),
        },
        seed=run_seed,
    )
    return RunResult(state.particles, state, description, trace)
