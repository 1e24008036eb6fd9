"""SHK (spherical Hellinger–Kantorovich) birth–death Langevin sampler for π ∝ exp(-V) on Θ.

The mean-field law is the Wasserstein–Fisher–Rao gradient flow of KL(ρ‖π) (certificates note (3)
with κ_T = κ_R = 1; flows note (F 29)). The particle system alternates, every step of size Δt,

1. the reaction (birth–death) step of (F 30): rates ``log KDE(x_i) + V(x_i)`` centred over the
   particles, jumps with probabilities ``1 - exp(-|β_i| Δt)``;
2. the transport step: one π-invariant MALA move per particle with step Δt, rejecting proposals
   that leave Θ (certificates note §3.2 "Discrete-time form" and §7.2: MALA, not ULA).

After the flow an optional **relaxation phase** makes M more π-invariant MALA moves per particle,
each with its own step drawn log-uniformly from a public range (the multiscale move of
:mod:`dp_core.engine.langevin`). In the idealised law this releases ρ_t K^M instead of ρ_t; K is
π-reversible, so it maps ρ/π into [inf ρ/π, sup ρ/π] and the route C bound (9) at the same t
still holds (certificates note §3.2, operator form). What it buys is finite-N accuracy: the KDE
rates drive the particle system towards K_h*ρ ∝ π, a law *sharper* than π once π is narrower than
the bandwidth, and transport at the law's own scale undoes that (docs/privacy.md, "Finite
particles"). :func:`relaxation_schedule` is the public rule for M and the range.

Particles start from a data-independent law: uniform on Θ (the public ρ₀), or given positions
for public runs. Everything that shapes the run — N, Δt, number of steps, bandwidth, relaxation
moves and range — is a function of public parameters (privacy rule 2); the bandwidth defaults to
the public rule ``h = h₀ N^{-1/(d+4)}`` with h₀ a fraction of the domain scale (F 31).

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

from dp_core.engine import birth_death, langevin, parallel, rng
from dp_core.errors import InvalidParameter, NumericalFailure
from dp_core.flows.base import CancelFn, ProgressFn, RunDescription, RunResult, run_steps
from dp_core.types import Domain, FloatArray, Potential, as_particles

__all__ = [
    "DEFAULT_STEP_SIZE",
    "Relaxation",
    "SHKInfo",
    "SHKSampler",
    "SHKState",
    "default_bandwidth",
    "relaxation_schedule",
    "sample_shk",
]

DEFAULT_BANDWIDTH_FRACTION = 0.1
DEFAULT_STEP_SIZE = 0.05
"""Default Δt. Route C (certificates (9)) covers the idealised splitting at every t = kΔt for any
Δt (exact reaction, π-invariant MALA), so Δt trades only the accuracy of the particle
approximation against run time; a release to t ≈ 17 (size bound 10^6) then takes 336 steps."""


RELAXATION_MOVES_PER_OCTAVE = 16
"""Moves of the relaxation phase per octave of its proposal scales. Measured on the 1-D median
(tests/verification/test_shk_median_law.py): 8 per octave left KS distances to the exact law up
to 0.030 at N = 4000 (the level-0.001 critical value is 0.031), 16 up to 0.025."""
MIN_RELAXATION_OCTAVES = 4
MAX_RELAXATION_OCTAVES = 64
"""Caps the range at σ ratio 2^64 (1024 moves): the service's largest ε·n_max needs about 59."""


class Relaxation(NamedTuple):
    """The relaxation phase: ``moves`` multiscale MALA moves with steps in ``step_range``."""

    moves: int
    step_range: tuple[float, float]


def relaxation_schedule(
    domain: Domain, potential_range: float, potential_slope: float | None = None
) -> Relaxation:
    """Public rule for the relaxation phase from Θ and a bound on osc V (λU for the mechanism).

    Proposal standard deviations σ = √(2h) range log-uniformly from scale(Θ)/2 down to
    scale(Θ)/osc V: a potential that rises by one unit over a length ℓ gives a law of width
    about ℓ, and one whose range over Θ is osc V rises, averaged over Θ, by one unit per
    scale(Θ)/osc V. Where a public bound on V's Lipschitz constant is known
    (``potential_slope``, λ times the utility's slope bound) the range reaches down to
    1/potential_slope if that is smaller: a potential can rise by one unit over that length
    wherever its slope is largest (the gradient-norm utilities with a binding clip rise at the
    slope λ·#{unclipped records}, far above the average). The
    range spans at least :data:`MIN_RELAXATION_OCTAVES` octaves and at most
    :data:`MAX_RELAXATION_OCTAVES`, and the phase makes
    :data:`RELAXATION_MOVES_PER_OCTAVE` moves per octave. Both ends scale with scale(Θ)², so a
    rescaled domain gives the rescaled run.
    """
    if not (math.isfinite(potential_range) and potential_range > 0):
        raise InvalidParameter("utility", "the potential's range must be finite and positive")
    rises = potential_range  # scale(Θ)/σ_low: how many unit rises the smallest proposal resolves
    if potential_slope is not None:
        if not (math.isfinite(potential_slope) and potential_slope > 0):
            raise InvalidParameter("utility", "the potential's slope must be finite and positive")
        rises = max(rises, domain.scale * potential_slope)
    octaves = min(
        float(MAX_RELAXATION_OCTAVES),
        max(float(MIN_RELAXATION_OCTAVES), math.log2(rises / 2.0)),
    )
    sigma_high = 0.5 * domain.scale
    sigma_low = sigma_high * 2.0**-octaves
    moves = math.ceil(RELAXATION_MOVES_PER_OCTAVE * octaves)
    return Relaxation(moves, (0.5 * sigma_low**2, 0.5 * sigma_high**2))


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
    Lu, Lu & Nolen); ``transport=False`` gives pure birth–death. ``relaxation`` enables the
    relaxation phase's move (module docstring).
    """

    potential: Potential
    domain: Domain
    step_size: float
    bandwidth: float
    reaction: bool = True
    transport: bool = True
    relaxation: Relaxation | None = None

    def __post_init__(self) -> None:
        if self.potential.dim != self.domain.dim:
            raise InvalidParameter("domain", "potential and domain dimensions differ")
        if not (math.isfinite(self.step_size) and self.step_size > 0):
            raise InvalidParameter("step_size", "must be finite and positive")
        if not (math.isfinite(self.bandwidth) and self.bandwidth > 0):
            raise InvalidParameter("bandwidth", "must be finite and positive")
        if self.relaxation is not None:
            moves, (low, high) = self.relaxation
            if not (isinstance(moves, int) and moves >= 0):
                raise InvalidParameter("relaxation.moves", "must be an integer >= 0")
            if not (math.isfinite(high) and 0.0 < low <= high):
                raise InvalidParameter("relaxation.step_range", "must satisfy 0 < low <= high")

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

    def build_step(self, phase: str = "flow") -> Callable[[SHKState], tuple[SHKState, SHKInfo]]:
        """Return ``step(state) -> (state, info)``: for ``phase="flow"`` reaction then transport,
        each of length Δt; for ``phase="relaxation"`` one multiscale MALA move (needs
        ``relaxation``)."""
        if phase not in ("flow", "relaxation"):
            raise InvalidParameter("phase", "must be 'flow' or 'relaxation'")
        if phase == "relaxation" and self.relaxation is None:
            raise InvalidParameter("relaxation", "this sampler has no relaxation phase")
        kind, a, b = self.domain.engine_arrays()
        dt, h, potential = self.step_size, self.bandwidth, self.potential
        reaction, transport, relaxation = self.reaction, self.transport, self.relaxation
        # Work arrays, allocated on the first step and again only if N changes (it does not
        # within a run): the per-step Python work is a handful of engine calls.
        work: dict[str, np.ndarray] = {}
        split: list[int] = []  # threads the KDE's cells are shared among (speed only)

        def buffers(n: int, d: int) -> dict[str, np.ndarray]:
            if work.get("n") is None or work["n"].shape[0] != n:
                work.clear()
                work["n"] = np.empty(n)  # marks the size
                work["beta"] = np.empty(n)
                work["log_kde"] = np.empty(n)
                work["order"] = np.empty(n, dtype=np.int64)
                work["steps"] = np.full(n, dt)  # the flow's MALA steps
                work["relax_steps"] = np.empty(n)  # drawn before every relaxation move
                work["proposal"] = np.empty((n, d))
                work["inside"] = np.empty(n, dtype=np.uint8)
                work["accepted"] = np.empty(n, dtype=np.uint8)
            return work

        def step(state: SHKState) -> tuple[SHKState, SHKInfo]:
            x, v, g = state.particles, state.potential, state.grad
            n = x.shape[0]
            buf = buffers(n, x.shape[1])
            events = 0
            if reaction and n > 1:
                if not split:  # asked once: the run's thread count does not change
                    split.append(parallel.current_threads())
                lk, beta, order = buf["log_kde"], buf["beta"], buf["order"]
                events = birth_death.reaction(
                    x, v, g, h, dt, state.sweep_rng, lk, beta, order, split[0]
                )
            accepted_rate = move(state, buf["steps"], buf) if transport else 0.0
            if not np.isfinite(v).all():
                raise NumericalFailure("the potential is not finite at some particle")
            return state._replace(steps_done=state.steps_done + 1), SHKInfo(accepted_rate, events)

        def move(state: SHKState, steps: np.ndarray, buf: dict[str, np.ndarray]) -> float:
            """One MALA move per particle with the given steps; returns the acceptance rate."""
            x, v, g = state.particles, state.potential, state.grad
            prop, inside = buf["proposal"], buf["inside"]
            langevin.mala_propose(x, g, steps, state.particle_rng, kind, a, b, prop, inside)
            v_prop, g_prop = potential.value_and_grad(prop)
            accepted = langevin.mala_accept(
                x, v, g, prop, v_prop, g_prop, inside, steps, state.particle_rng, buf["accepted"]
            )
            return accepted / x.shape[0]

        def relax(state: SHKState) -> tuple[SHKState, SHKInfo]:
            assert relaxation is not None
            x = state.particles
            buf = buffers(x.shape[0], x.shape[1])
            steps = buf["relax_steps"]
            langevin.log_uniform_steps(state.particle_rng, *relaxation.step_range, steps)
            accepted_rate = move(state, steps, buf)
            if not np.isfinite(state.potential).all():
                raise NumericalFailure("the potential is not finite at some particle")
            return state._replace(steps_done=state.steps_done + 1), SHKInfo(accepted_rate, 0)

        return step if phase == "flow" else relax


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
    relaxation: Relaxation | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    trace_every: int = 0,
) -> RunResult[SHKState]:
    """Run the SHK sampler to ``flow_time`` and return the particles and a public description.

    The number of steps is ``ceil(flow_time / step_size)`` and the step is shrunk so that the run
    ends exactly at ``flow_time``; ``relaxation`` appends its moves after the flow (progress and
    the trace count flow steps and relaxation moves alike; the trace's ``time`` stays at
    ``flow_time`` during the relaxation). Private runs (the default) take a fresh secret seed and
    refuse an explicit one, a given initial law, and traces; public runs accept all three.

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
    sampler = SHKSampler(
        potential, domain, dt, h, reaction=reaction, transport=transport, relaxation=relaxation
    )
    moves = 0 if relaxation is None else relaxation.moves
    flow_step = sampler.build_step("flow")
    relax = sampler.build_step("relaxation") if moves else flow_step

    def step(s: SHKState) -> tuple[SHKState, SHKInfo]:
        return flow_step(s) if s.steps_done < n_steps else relax(s)

    def trace_fn(s: SHKState) -> dict[str, float]:
        time = min(s.steps_done, n_steps) * dt
        return {"time": time, "mean_potential": float(s.potential.mean())}

    # Small runs keep every kernel (the potential's too) on this thread: no worker wake-ups per
    # step, and only a fair share lost under CPU contention (dp_core.engine.parallel).
    with parallel.threads(parallel.run_threads(n_particles, domain.dim)):
        state = sampler.init(n_particles, run_seed, initial)
        state, trace = run_steps(
            step,
            state,
            n_steps + moves,
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
            "relaxation": None
            if relaxation is None
            else {"moves": moves, "step_range": list(relaxation.step_range)},
        },
        seed=None if private else run_seed,
    )
    return RunResult(state.particles, state, description, trace)
