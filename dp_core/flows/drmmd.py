"""The de-regularised MMD (DrMMD) gradient flow of Chen et al. (flows note §3).

``DrMMD_λ(ν‖π) = (1+λ)‖(Σ_π + λI)^{-1/2}(m_ν − m_π)‖²_H`` (F 9) with the uncentred covariance
operator Σ_π of the target. With π the weighted sample ``Σ_m b_m δ_{y_m}``, Woodbury gives the
closed form (F 10)–(F 11): with the witness at the targets
``d_m = Σ_i a_i k(y_m, z_i) − Σ_l b_l k(y_m, y_l)`` and

    α = (K_YY + λ B^{-1})^{-1} d,     B = diag(b)     (uniform b: K_YY + MλI),

``DrMMD = ((1+λ)/λ)·[MMD²(ν, π) − dᵀα]`` and the first variation (F 12) is
``φ = (2(1+λ)/λ)·[m_ν − Σ_m (b_m + α_m) k(·, y_m)]``: a DrMMD step is an MMD step (F 7) with
target weights ``b + α`` (signed) and prefactor ``2(1+λ)/λ``. The update (F 13) is
``z_i ← z_i − γ_n ∇φ(z̃_i)`` with ``γ_n = λ_n s`` (s the step parameter), so the effective
prefactor is ``2(1+λ_n)s``; z̃ = z + β_t u is the optional noise injection of (F 7) (the
student–teacher port of the authors' code has it; their DrMMD particle code does not).

Linear algebra (P6): the system is solved in the symmetric scaled form
``(B^{1/2}K_YY B^{1/2} + λI)(B^{-1/2}α) = B^{1/2}d`` — one Cholesky factorisation for a fixed λ,
or one eigendecomposition ``B^{1/2}K_YY B^{1/2} = UΛUᵀ`` reused by every λ of the adaptive
schedule (F 14): ``λ_{n+1} = λ₀ √(DrMMD_{λ_n}(ν_{n+1}) / DrMMD_{λ₀}(ν₀))``, step
``γ_n = max(λ_n s, min_step)`` (min_step = 1e-4 in the authors' code). For a kernel that changes
with the step (minibatch feature kernels) both are recomputed every step (M is small there).
Per step: one fused kernel-gradient sum over the particles and the targets, and one kernel sum at
the M targets for d (reused by the next step); the adaptive schedule adds one MMD² pass.

Trace metrics: ``drmmd`` (at the current λ), ``mmd2`` (F 3) and ``lambda``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import linalg

from dp_core.engine import rng
from dp_core.errors import InvalidParameter, NumericalFailure
from dp_core.flows.base import CancelFn, ProgressFn, RunDescription, RunResult, run_steps
from dp_core.flows.witness import FlowKernel, NoiseSchedule, probability_weights, resolve_target
from dp_core.types import FloatArray, as_particles

__all__ = [
    "DEFAULT_LAMBDA",
    "DEFAULT_MIN_STEP",
    "LAMBDA_FLOOR",
    "DrMMDFlow",
    "DrMMDInfo",
    "DrMMDState",
    "DrMMDValue",
    "TargetSolver",
    "run_drmmd_flow",
]

DEFAULT_LAMBDA = 1e-3
"""λ (and λ₀ of the adaptive schedule) when none is given: the authors' three-ring default."""
DEFAULT_MIN_STEP = 1e-4
"""Lower bound on the step γ_n of the adaptive schedule (F 14), as in the authors' code."""
LAMBDA_FLOOR = 1e-8
"""The adaptive λ_n is kept >= LAMBDA_FLOOR·λ₀: at DrMMD = 0 (converged to round-off) the
authors' schedule would reach λ = 0 and the prefactor 2(1+λ)/λ would overflow."""


class DrMMDValue(NamedTuple):
    """DrMMD_λ (F 11) with its ingredients at one state: MMD² (F 3), the witness at the targets
    d and α = (K_YY + λB^{-1})^{-1} d."""

    drmmd: float
    mmd2: float
    witness: FloatArray
    alpha: FloatArray


class DrMMDState(NamedTuple):
    """Particles (N, d) and weights, random streams, the current λ_n, steps done, DrMMD₀ (the
    adaptive schedule's reference value) and the value at the current particles and λ_n (with a
    fixed λ, steps compute only its d and α: ``drmmd`` and ``mmd2`` are NaN until evaluated)."""

    particles: FloatArray
    weights: FloatArray
    streams: np.ndarray
    lmbda: float
    steps_done: int
    drmmd0: float
    value: DrMMDValue


class DrMMDInfo(NamedTuple):
    """Per-step diagnostics: the λ_n and the step γ_n the step used, and its noise level."""

    lambda_used: float
    gamma: float
    noise_level: float


@dataclass(frozen=True)
class TargetSolver:
    """Solves ``(K_YY + λB^{-1})α = d`` for one target set (P6): a Cholesky factor for one fixed
    λ, or an eigendecomposition of ``B^{1/2}K_YY B^{1/2}`` for any λ."""

    root_b: FloatArray
    lmbda: float | None = None
    cholesky: FloatArray | None = field(default=None, repr=False)
    eigvals: FloatArray | None = field(default=None, repr=False)
    eigvecs: FloatArray | None = field(default=None, repr=False)

    @classmethod
    def build(cls, k_yy: FloatArray, b: FloatArray, lmbda: float | None) -> TargetSolver:
        """Factorise for the fixed ``lmbda``, or (``lmbda=None``) eigendecompose for any λ."""
        root_b = np.sqrt(b)
        scaled = root_b[:, None] * k_yy * root_b[None, :]
        if lmbda is not None:
            shifted = scaled + lmbda * np.eye(b.shape[0])
            try:
                factor = linalg.cholesky(shifted, lower=True, check_finite=True)
            except linalg.LinAlgError as exc:
                raise NumericalFailure("K_YY + λB^-1 is not positive definite") from exc
            return cls(root_b, lmbda, cholesky=factor)
        vals, vecs = np.linalg.eigh(scaled)
        return cls(root_b, None, eigvals=np.maximum(vals, 0.0), eigvecs=vecs)

    def solve(self, d: FloatArray, lmbda: float) -> tuple[FloatArray, float]:
        """``(α, dᵀα)`` for the shift λ (must equal the factorised one on the Cholesky path)."""
        rhs = self.root_b * d
        if self.cholesky is not None:
            if lmbda != self.lmbda:
                raise InvalidParameter("lmbda", "the Cholesky solver is built for one λ")
            v = linalg.cho_solve((self.cholesky, True), rhs, check_finite=False)
        else:
            assert self.eigvecs is not None and self.eigvals is not None
            v = self.eigvecs @ ((self.eigvecs.T @ rhs) / (self.eigvals + lmbda))
        return self.root_b * v, float(rhs @ v)


@dataclass(frozen=True)
class DrMMDFlow:
    """The DrMMD flow (F 12)–(F 14) towards a fixed weighted target (module docstring).

    ``lmbda`` is λ (λ₀ when ``adaptive``), ``step_size`` the authors' s (the step is λ_n s).
    """

    kernel: FlowKernel
    targets: FloatArray
    target_weights: FloatArray
    lmbda: float
    step_size: float
    adaptive: bool = False
    min_step: float = DEFAULT_MIN_STEP
    noise: NoiseSchedule = field(default_factory=NoiseSchedule)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lmbda) and self.lmbda > 0):
            raise InvalidParameter("lmbda", "must be finite and positive")
        if not (math.isfinite(self.step_size) and self.step_size > 0):
            raise InvalidParameter("step_size", "must be finite and positive")
        if not (math.isfinite(self.min_step) and self.min_step >= 0):
            raise InvalidParameter("min_step", "must be finite and >= 0")
        if not np.all(self.target_weights > 0):
            raise InvalidParameter("target_weights", "DrMMD needs positive target weights")

    # ----------------------------------------------------------------------- linear algebra
    def solver(self, kernel: FlowKernel | None = None) -> TargetSolver:
        """The target solver for ``kernel``; the flow's full kernel's is built once and kept."""
        if kernel is None or kernel is self.kernel:
            return self._full_solver
        fixed = None if self.adaptive else self.lmbda
        return TargetSolver.build(kernel.gram(self.targets), self.target_weights, fixed)

    @cached_property
    def _full_solver(self) -> TargetSolver:
        fixed = None if self.adaptive else self.lmbda
        return TargetSolver.build(self.kernel.gram(self.targets), self.target_weights, fixed)

    def evaluate(
        self,
        z: FloatArray,
        a: FloatArray,
        lmbda: float,
        kernel: FlowKernel | None = None,
        solver: TargetSolver | None = None,
        with_value: bool = True,
    ) -> DrMMDValue:
        """DrMMD_λ(ν‖π) by (F 11) for the particles (z, a). ``with_value=False`` computes only
        d and α (what the next step needs) and leaves ``drmmd`` and ``mmd2`` NaN: it skips the
        MMD² pass over the N + M points."""
        k = self.kernel if kernel is None else kernel
        sol = self.solver(k) if solver is None else solver
        y, b = self.targets, self.target_weights
        mmd2 = k.mmd2(z, a, y, b) if with_value else math.nan
        d = k.witness(y, z, a, y, b)
        alpha, d_alpha = sol.solve(d, lmbda)
        drmmd = (1.0 + lmbda) / lmbda * (mmd2 - d_alpha)
        return DrMMDValue(drmmd, mmd2, d, alpha)

    def init(
        self, particles: npt.ArrayLike, seed: int, weights: npt.ArrayLike | None = None
    ) -> DrMMDState:
        """Initial state from given positions (N, d), optional weights, and a seed."""
        z = as_particles(particles, "particles").copy()
        if z.shape[1] != self.targets.shape[1]:
            raise InvalidParameter("particles", "particles and targets must have the same dim")
        a = probability_weights(weights, z.shape[0], "particle_weights")
        value = self.evaluate(z, a, self.lmbda, self.kernel.for_step(0))
        return DrMMDState(
            z, a, rng.new_streams(seed, z.shape[0]), self.lmbda, 0, value.drmmd, value
        )

    # ----------------------------------------------------------------------- the step
    def build_step(self) -> Callable[[DrMMDState], tuple[DrMMDState, DrMMDInfo]]:
        """Return ``step(state) -> (state, info)``; the particles are updated in place.

        The state's ``value`` is the DrMMD at the state's particles and λ (``init`` and every
        step leave it so); with a minibatch kernel each step recomputes it on its batch.
        """
        y, b, s = self.targets, self.target_weights, self.step_size
        noise_buffer: list[FloatArray] = []

        def step(state: DrMMDState) -> tuple[DrMMDState, DrMMDInfo]:
            z, a, lam, t = state.particles, state.weights, state.lmbda, state.steps_done
            kernel = self.kernel.for_step(t)
            value = state.value
            if kernel is not self.kernel:  # minibatch kernel: this step's batch
                value = self.evaluate(z, a, lam, kernel, self.solver(kernel), False)
            gamma = max(lam * s, self.min_step) if self.adaptive else lam * s
            prefactor = 2.0 * (1.0 + lam) / lam
            beta = self.noise.at(t)
            tw = b + value.alpha
            if beta > 0.0:
                if not noise_buffer:
                    noise_buffer.append(np.empty_like(z))
                u = noise_buffer[0]
                rng.fill_normals(state.streams, u)
                u *= beta
                u += z
                g = kernel.witness_gradient(u, z, a, y, tw, False)
            else:
                g = kernel.witness_gradient(z, z, a, y, tw, True)
            z -= (gamma * prefactor) * g
            if not np.all(np.isfinite(z)):
                raise NumericalFailure("the DrMMD flow produced a non-finite particle")
            new_lam = lam
            new_value = value  # a minibatch kernel recomputes it at the next step
            next_kernel = self.kernel.for_step(t + 1)
            if next_kernel is self.kernel or self.adaptive:
                solver = self.solver(next_kernel)
                new_value = self.evaluate(z, a, lam, next_kernel, solver, self.adaptive)
                if self.adaptive:  # (F 14): DrMMD at λ_n of the new particles
                    ratio = max(new_value.drmmd, 0.0) / state.drmmd0 if state.drmmd0 > 0 else 0.0
                    new_lam = max(self.lmbda * math.sqrt(ratio), LAMBDA_FLOOR * self.lmbda)
                    new_value = _rescale(new_value, solver, new_lam)
            return (
                state._replace(steps_done=t + 1, lmbda=new_lam, value=new_value),
                DrMMDInfo(lam, gamma, beta),
            )

        return step


def _rescale(value: DrMMDValue, solver: TargetSolver, lmbda: float) -> DrMMDValue:
    """The same particles' DrMMD at another λ (reuses d and MMD²; eigen path only)."""
    alpha, d_alpha = solver.solve(value.witness, lmbda)
    drmmd = (1.0 + lmbda) / lmbda * (value.mmd2 - d_alpha)
    return DrMMDValue(drmmd, value.mmd2, value.witness, alpha)


def run_drmmd_flow(
    particles: npt.ArrayLike,
    targets: npt.ArrayLike,
    *,
    step_size: float,
    n_steps: int,
    lmbda: float = DEFAULT_LAMBDA,
    kernel: str | FlowKernel = "gaussian",
    bandwidth: float | None = None,
    adaptive: bool = False,
    min_step: float = DEFAULT_MIN_STEP,
    particle_weights: npt.ArrayLike | None = None,
    target_weights: npt.ArrayLike | None = None,
    noise: NoiseSchedule | None = None,
    seed: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    trace_every: int = 0,
) -> RunResult[DrMMDState]:
    """Run the DrMMD flow (F 12)–(F 14) from ``particles`` (N, d) towards ``targets`` (M, d).

    Parameters
    ----------
    lmbda : λ > 0 (λ₀ of the adaptive schedule); default :data:`DEFAULT_LAMBDA`.
    step_size : s > 0; the step is γ = λ s (adaptive: max(λ_n s, min_step)).
    n_steps, kernel, bandwidth, particle_weights, target_weights, noise, seed, progress,
    cancel, trace_every : as in :func:`dp_core.flows.mmd.run_mmd_flow`. Target weights must be
        positive. Trace rows hold ``drmmd``, ``mmd2`` and ``lambda`` (the λ for the next step), and
        the last step's ``lambda_used``, ``gamma`` and ``noise_level``.
    adaptive : use the schedule (F 14) instead of a fixed λ.

    Returns
    -------
    RunResult with the final particles (N, d), the state, a public description and the trace.
    """
    flow_kernel, y, b = resolve_target(kernel, bandwidth, targets, target_weights)
    run_seed = rng.resolve_seed(seed, private=False)
    flow = DrMMDFlow(
        flow_kernel,
        y,
        b,
        float(lmbda),
        float(step_size),
        adaptive=adaptive,
        min_step=float(min_step),
        noise=noise or NoiseSchedule(),
    )
    state = flow.init(particles, run_seed, particle_weights)

    def trace_fn(st: DrMMDState) -> dict[str, float]:
        value = st.value
        minibatch = flow.kernel.for_step(st.steps_done) is not flow.kernel
        if minibatch or math.isnan(value.drmmd):  # full kernel; fixed λ skips it per step
            value = flow.evaluate(st.particles, st.weights, st.lmbda)
        return {"drmmd": value.drmmd, "mmd2": value.mmd2, "lambda": st.lmbda}

    state, trace = run_steps(
        flow.build_step(),
        state,
        n_steps,
        private=False,
        progress=progress,
        cancel=cancel,
        trace_every=trace_every,
        trace_fn=trace_fn,
    )
    description = RunDescription(
        flow="drmmd",
        n_particles=state.particles.shape[0],
        dim=state.particles.shape[1],
        n_steps=n_steps,
        step_size=flow.step_size,
        flow_time=n_steps * flow.step_size,
        initialization="given",
        parameters={
            **flow_kernel.describe(),
            "targets": y.shape[0],
            "lambda": flow.lmbda,
            "adaptive": adaptive,
            "min_step": flow.min_step,
            "noise": flow.noise.describe(),
        },
        seed=run_seed,
    )
    return RunResult(state.particles, state, description, trace)
