"""SHK (spherical Hellinger–Kantorovich) birth–death Langevin sampler for π ∝ exp(-V) on Θ.

The mean-field law is the Wasserstein–Fisher–Rao gradient flow of KL(ρ‖π) (certificates note (3)
with κ_T = κ_R = 1; flows note (F 29)). The particle system alternates, every step of size Δt,

1. the reaction (birth–death) step of (F 30): rates ``log KDE(x_i) + V(x_i)`` centred over the
   particles, jumps with probabilities ``1 - exp(-|β_i| Δt)``;
2. the transport step: one π-invariant MALA move per particle with step Δt, rejecting proposals
   that leave Θ (certificates note §3.2 "Discrete-time form" and §7.2: MALA, not ULA).

Particles start from a data-independent law: uniform on Θ (the public ρ₀), or given positions
for public runs. Everything that shapes the run — N, Δt, number of steps, bandwidth — is a
function of public parameters (privacy rule 2); the bandwidth defaults to the public rule
``h = h₀ N^{-1/(d+4)}`` with h₀ a fraction of the domain scale (F 31).

The step mutates the state's arrays in place and returns the same state; buffers are allocated
once per sampler run. The certificate scope of a release from this sampler is ``mean_field``: the
finite-N KDE particle system is not itself certified (certificates note §7.1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from dp_core.engine import birth_death, kde, langevin, rng
from dp_core.errors import InvalidParameter, NumericalFailure
from dp_core.flows.base import CancelFn, ProgressFn, RunDescription, RunResult, run_steps
from dp_core.types import Domain, FloatArray, Potential, as_particles

__all__ = [
    "DEFAULT_STEP_SIZE",
    "SHKInfo",
    "SHKSampler",
    "SHKState",
    "default_bandwidth",
    "sample_shk",
]

DEFAULT_BANDWIDTH_FRACTION = 0.1
DEFAULT_STEP_SIZE = 0.05
"""Default Δt. Route C (certificates (9)) covers the idealised splitting at every t = kΔt for any
Δt (exact reaction, π-invariant MALA), so Δt trades only the accuracy of the particle
approximation against run time; a release to t ≈ 17 (size bound 10^6) then takes 336 steps."""


class SHKState(NamedTuple):
    """What the next step needs: positions with their V and ∇V, and the random streams."""

    particles: FloatArray  # (N, d)
    potential: FloatArray  # (N,)   V at the particles
    grad: FloatArray  # (N, d) ∇V at the particles
    particle_rng: np.ndarray  # (N,) uint64, one stream per particle (MALA)
    sweep_rng: np.ndarray  # (1,) uint64, the birth–death sweep's stream
    steps_done: int


class SHKInfo(NamedTuple):
    """Per-step diagnostics. Data-dependent in a private run: never leaves the process there."""

    acceptance_rate: float
    birth_death_events: int


def default_bandwidth(
    domain: Domain, n_particles: int, fraction: float = DEFAULT_BANDWIDTH_FRACTION
) -> float:
    """Public KDE bandwidth ``h = fraction · scale(Θ) · N^{-1/(d+4)}`` (flows note (F 31))."""
    return fraction * domain.scale * n_particles ** (-1.0 / (domain.dim + 4))


@dataclass(frozen=True)
class SHKSampler:
    """The SHK sampler for one target on one domain (both public objects).

    ``reaction=False`` gives plain MALA with the same transport steps (the comparison of
    Lu, Lu & Nolen); ``transport=False`` gives pure birth–death.
    """

    potential: Potential
    domain: Domain
    step_size: float
    bandwidth: float
    reaction: bool = True
    transport: bool = True

    def __post_init__(self) -> None:
        if self.potential.dim != self.domain.dim:
            raise InvalidParameter("domain", "potential and domain dimensions differ")
        if not (math.isfinite(self.step_size) and self.step_size > 0):
            raise InvalidParameter("step_size", "must be finite and positive")
        if not (math.isfinite(self.bandwidth) and self.bandwidth > 0):
            raise InvalidParameter("bandwidth", "must be finite and positive")

    def init(self, n_particles: int, seed: int, initial: FloatArray | None = None) -> SHKState:
        """Initial state: uniform on Θ (ρ₀) unless ``initial`` (N, d) positions are given."""
        if n_particles < 1:
            raise InvalidParameter("particles", "must be >= 1")
        kind, a, b = self.domain.engine_arrays()
        streams = rng.new_streams(seed, n_particles + 1)
        particle_rng, sweep_rng = streams[:n_particles].copy(), streams[n_particles:].copy()
        if initial is None:
            x = np.empty((n_particles, self.domain.dim))
            langevin.uniform_in_domain(particle_rng, kind, a, b, x)
        else:
            x = as_particles(initial, "initial").copy()
            if x.shape != (n_particles, self.domain.dim):
                raise InvalidParameter("initial", "shape must be (particles, dim)")
        v, g = self.potential.value_and_grad(x)
        return SHKState(x, v, g, particle_rng, sweep_rng, 0)

    def build_step(self) -> Callable[[SHKState], tuple[SHKState, SHKInfo]]:
        """Return ``step(state) -> (state, info)``: reaction then transport, each of length Δt."""
        kind, a, b = self.domain.engine_arrays()
        dt, h, potential = self.step_size, self.bandwidth, self.potential
        buffers: dict[str, np.ndarray] = {}

        def buffer(name: str, shape: tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
            arr = buffers.get(name)
            if arr is None or arr.shape != shape:
                arr = buffers[name] = np.empty(shape, dtype=dtype)
            return arr

        def step(state: SHKState) -> tuple[SHKState, SHKInfo]:
            x, v, g = state.particles, state.potential, state.grad
            n = x.shape[0]
            events = 0
            if self.reaction and n > 1:
                beta = buffer("beta", (n,))
                birth_death.birth_death_rates(kde.log_kde_self(x, h), v, beta)
                events = birth_death.birth_death_sweep(
                    x, v, g, beta, dt, state.sweep_rng, buffer("order", (n,), np.int64)
                )
            accepted_rate = 0.0
            if self.transport:
                prop = buffer("proposal", x.shape)
                inside = buffer("inside", (n,), np.uint8)
                accepted = buffer("accepted", (n,), np.uint8)
                langevin.mala_propose(x, g, dt, state.particle_rng, kind, a, b, prop, inside)
                v_prop, g_prop = potential.value_and_grad(prop)
                langevin.mala_accept(
                    x, v, g, prop, v_prop, g_prop, inside, dt, state.particle_rng, accepted
                )
                accepted_rate = float(accepted.mean())
            if not np.isfinite(v).all():
                raise NumericalFailure("the potential is not finite at some particle")
            return state._replace(steps_done=state.steps_done + 1), SHKInfo(accepted_rate, events)

        return step


def sample_shk(
    potential: Potential,
    domain: Domain,
    *,
    n_particles: int,
    flow_time: float,
    step_size: float = DEFAULT_STEP_SIZE,
    bandwidth: float | None = None,
    private: bool = True,
    seed: int | None = None,
    initial: FloatArray | None = None,
    reaction: bool = True,
    transport: bool = True,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    trace_every: int = 0,
) -> RunResult[SHKState]:
    """Run the SHK sampler to ``flow_time`` and return the particles and a public description.

    The number of steps is ``ceil(flow_time / step_size)`` and the step is shrunk so that the run
    ends exactly at ``flow_time``. Private runs (the default) take a fresh secret seed and refuse
    an explicit one, a given initial law, and traces; public runs accept all three.

    Returns
    -------
    RunResult with ``particles`` (N, d), the final state, the description and the trace.
    """
    if not (math.isfinite(flow_time) and flow_time >= 0):
        raise InvalidParameter("flow_time", "must be finite and >= 0")
    if not (math.isfinite(step_size) and step_size > 0):
        raise InvalidParameter("step_size", "must be finite and positive")
    if private and initial is not None:
        raise InvalidParameter("initial", "private runs start from the public uniform law")
    run_seed = rng.resolve_seed(seed, private=private)
    n_steps = math.ceil(flow_time / step_size - 1e-12) if flow_time > 0 else 0
    dt = flow_time / n_steps if n_steps else step_size
    h = default_bandwidth(domain, n_particles) if bandwidth is None else bandwidth
    sampler = SHKSampler(potential, domain, dt, h, reaction=reaction, transport=transport)
    state = sampler.init(n_particles, run_seed, initial)

    def trace_fn(s: SHKState) -> dict[str, float]:
        return {"time": s.steps_done * dt, "mean_potential": float(s.potential.mean())}

    state, trace = run_steps(
        sampler.build_step(),
        state,
        n_steps,
        private=private,
        progress=progress,
        cancel=cancel,
        trace_every=trace_every,
        trace_fn=trace_fn,
    )
    description = RunDescription(
        flow="shk",
        n_particles=n_particles,
        dim=domain.dim,
        n_steps=n_steps,
        step_size=dt,
        flow_time=float(flow_time),
        initialization="uniform" if initial is None else "given",
        parameters={
            "bandwidth": h,
            "domain": domain.describe(),
            "reaction": "birth_death_kde" if reaction else "none",
            "transport": "mala" if transport else "none",
        },
        seed=None if private else run_seed,
    )
    return RunResult(state.particles, state, description, trace)
