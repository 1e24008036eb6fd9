"""Regularised Muon as a damped Hamiltonian particle flow, and standard Muon (flows note §5).

Particles are matrices ``W_i ∈ R^{p×q}`` (i = 1..N) with momenta ``M_i`` (the dual variable).
The objective ``J_N(W)`` comes from a :class:`MatrixObjective` with particle gradient
``G_i = N ∂J_N/∂W_i`` (F 25), e.g. the mean-field two-layer student–teacher task of
``dp_core.flows.student_teacher``. One step (F 25), Muon-consistent (momentum first):

    M_i ← β M_i + (1 − β) G_i,
    U_i = (1 − β) G_i + β M_i   (Nesterov)   or   U_i = M_i,
    W_i ← W_i (1 − η·wd) − η s D(U_i),      s = √max(1, p/q),

with the update map D:

* ``"regularized"`` — ``O_ε(U) = U(UᵀU + εI)^{-1/2}`` (F 24), the gradient of the smoothed nuclear
  norm ``ψ_ε(M) = tr((MᵀM + εI)^{1/2})`` (``smoothing="sqrt"``), or singular-value clipping
  ``U diag(min(σ/ε, 1)) Vᵀ`` with its Huber potential (``smoothing="clip"``, §5.2);
* ``"newton_schulz"`` — Keller Jordan's Muon (F 22)–(F 23): 5 quintic Newton–Schulz steps with
  (a, b, c) = (3.4445, −4.7750, 2.0315), in float64 (the reference casts to bfloat16).

Both maps are batched per-particle engine kernels (``engine.matrix_maps``). With h = η and
γ = (1 − β)/η the scheme is the explicit discretisation of ``Ẇ_i = −s O_ε(M_i)``,
``Ṁ_i = γ(G_i − M_i)``, whose Hamiltonian (F 27)

    H(W, M) = J_N(W) + (γN)⁻¹ Σ_i s ψ_ε(M_i)

obeys ``dH/dt = −N⁻¹ Σ_i s ⟨O_ε(M_i), M_i⟩ ≤ 0`` exactly; the discrete scheme satisfies it to
first order in h. Each step reports that dissipation rate ``N⁻¹ Σ_i s⟨D(U_i), M_i⟩`` for the
momentum it moved with, so ``H(0) − H(T) ≈ Σ_k h·dissipation_k`` (the gap is O(h)). ε is fixed
for a run (a varying ε breaks (F 27)); by default ``1e-3 · median_i ‖G_i(W₀)‖²_op`` (§5.6). For
the Newton–Schulz map the Hamiltonian is reported with the same ε but is not a Lyapunov function.

Trace metrics: ``loss`` (J) and ``hamiltonian`` (F 27). Seeded runs are bit-for-bit reproducible
(initial particles from engine streams, deterministic kernels).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from dp_core.engine import matrix_maps, rng
from dp_core.errors import InvalidParameter, NumericalFailure
from dp_core.flows.base import CancelFn, ProgressFn, RunDescription, RunResult, run_steps
from dp_core.types import FloatArray

__all__ = [
    "MatrixObjective",
    "MuonFlow",
    "MuonInfo",
    "MuonState",
    "default_eps",
    "run_muon_flow",
]

_UPDATES = ("regularized", "newton_schulz")
_SMOOTHINGS = {"sqrt": matrix_maps.SQRT, "clip": matrix_maps.CLIP}


class MatrixObjective(Protocol):
    """An objective ``J_N`` of N matrix particles (F 25)."""

    @property
    def shape(self) -> tuple[int, int]:
        """(p, q) of one particle."""
        ...

    def init_particles(self, n_particles: int, seed: int) -> FloatArray:
        """The public initial law: (N, p, q), a function of the objective, N and the seed."""
        ...

    def value_and_gradient(self, units: FloatArray) -> tuple[float, FloatArray]:
        """``(J_N(W), G)`` with ``G_i = N ∂J_N/∂W_i`` (N, p, q)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Public, JSON-ready description."""
        ...


class MuonState(NamedTuple):
    """Particles W (N, p, q), momenta M (N, p, q), J(W) and G(W), steps done."""

    particles: FloatArray
    momentum: FloatArray
    loss: float
    gradient: FloatArray
    steps_done: int


class MuonInfo(NamedTuple):
    """Per-step diagnostics: the dissipation rate ``N⁻¹ Σ_i s⟨D(U_i), M_i⟩`` of the step."""

    dissipation: float


def default_eps(gradient: FloatArray) -> float:
    """``1e-3 · median_i ‖G_i‖²_op`` (§5.6), or 1e-3 when every G_i is 0."""
    ops = np.linalg.norm(gradient, ord=2, axis=(1, 2))
    typical = float(np.median(ops)) ** 2
    return 1e-3 * typical if typical > 0 else 1e-3


@dataclass(frozen=True)
class MuonFlow:
    """Regularised or standard Muon on a matrix objective (module docstring).

    ``lr`` is η (= the time step h), ``momentum`` β (γ = (1 − β)/η), ``eps`` the regularisation ε.
    """

    objective: MatrixObjective
    eps: float
    lr: float = 0.02
    momentum: float = 0.95
    nesterov: bool = True
    update: str = "regularized"
    smoothing: str = "sqrt"
    ns_steps: int = 5
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise InvalidParameter("eps", "must be finite and positive")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InvalidParameter("lr", "must be finite and positive")
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise InvalidParameter("momentum", "must be in [0, 1)")
        if not math.isfinite(self.gamma):
            raise InvalidParameter("lr", "is too small: the rate γ = (1 − β)/η overflows")
        if self.update not in _UPDATES:
            raise InvalidParameter("update", f"must be one of {list(_UPDATES)}")
        if self.smoothing not in _SMOOTHINGS:
            raise InvalidParameter("smoothing", f"must be one of {sorted(_SMOOTHINGS)}")
        if not (isinstance(self.ns_steps, int) and 1 <= self.ns_steps <= 100):
            raise InvalidParameter("ns_steps", "must be an integer in [1, 100]")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise InvalidParameter("weight_decay", "must be finite and >= 0")

    @property
    def gamma(self) -> float:
        """γ = (1 − β)/η, the momentum relaxation rate of the inertial limit (F 25)."""
        return (1.0 - self.momentum) / self.lr

    @property
    def scale(self) -> float:
        """s = √max(1, p/q)."""
        p, q = self.objective.shape
        return math.sqrt(max(1.0, p / q))

    def init(self, particles: npt.ArrayLike) -> MuonState:
        """Initial state: given particles (N, p, q), zero momenta."""
        w = np.array(particles, dtype=np.float64, order="C")
        if w.ndim != 3 or w.shape[1:] != tuple(self.objective.shape) or w.shape[0] == 0:
            raise InvalidParameter("particles", "expected an (N, p, q) array of the task's shape")
        if not np.all(np.isfinite(w)):
            raise InvalidParameter("particles", "must be finite")
        loss, grad = self.objective.value_and_gradient(w)
        return MuonState(w, np.zeros_like(w), loss, grad, 0)

    def regularized_map(self, m: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(O_ε(M_i), ψ_ε(M_i), ⟨O_ε(M_i), M_i⟩)`` for every particle (the run's smoothing)."""
        out = np.empty_like(m)
        potential = np.empty(m.shape[0])
        inner = np.empty(m.shape[0])
        matrix_maps.regularized_polar(
            m, self.eps, _SMOOTHINGS[self.smoothing], out, potential, inner
        )
        return out, potential, inner

    def hamiltonian(self, state: MuonState) -> float:
        """``H = J + (γN)⁻¹ Σ_i s ψ_ε(M_i)`` (F 27)."""
        _, potential, _ = self.regularized_map(state.momentum)
        n = state.particles.shape[0]
        return state.loss + self.scale * float(potential.sum()) / (self.gamma * n)

    def build_step(self) -> Callable[[MuonState], tuple[MuonState, MuonInfo]]:
        """Return ``step(state) -> (state, info)``; particles and momenta are updated in place."""
        beta, lr, s = self.momentum, self.lr, self.scale
        decay = 1.0 - lr * self.weight_decay

        def step(state: MuonState) -> tuple[MuonState, MuonInfo]:
            w, m, g = state.particles, state.momentum, state.gradient
            n = w.shape[0]
            m *= beta
            m += (1.0 - beta) * g
            u = (1.0 - beta) * g + beta * m if self.nesterov else m
            if self.update == "regularized":
                direction, _, _ = self.regularized_map(np.ascontiguousarray(u))
            else:
                direction = np.empty_like(w)
                matrix_maps.newton_schulz5(np.ascontiguousarray(u), self.ns_steps, direction)
            dissipation = s * float(np.einsum("nij,nij->", direction, m)) / n
            if decay != 1.0:
                w *= decay
            w -= (lr * s) * direction
            loss, grad = self.objective.value_and_gradient(w)
            if not (math.isfinite(loss) and np.all(np.isfinite(w))):
                raise NumericalFailure("the Muon flow produced a non-finite value")
            new = state._replace(loss=loss, gradient=grad, steps_done=state.steps_done + 1)
            return new, MuonInfo(dissipation)

        return step


def run_muon_flow(
    objective: MatrixObjective,
    *,
    n_particles: int,
    n_steps: int,
    lr: float = 0.02,
    momentum: float = 0.95,
    eps: float | None = None,
    nesterov: bool = True,
    update: str = "regularized",
    smoothing: str = "sqrt",
    ns_steps: int = 5,
    weight_decay: float = 0.0,
    seed: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    trace_every: int = 0,
) -> RunResult[MuonState]:
    """Run regularised (or standard) Muon (F 25) on ``objective`` from its public initial law.

    Parameters
    ----------
    objective : a :class:`MatrixObjective` (e.g. ``StudentTeacherTask``).
    n_particles : N >= 1; n_steps : number of steps (>= 0).
    lr, momentum : η and β (defaults 0.02 and 0.95, Keller Jordan's); γ = (1 − β)/η.
    eps : ε > 0; None: ``1e-3 · median ‖G_i(W₀)‖²_op`` (:func:`default_eps`).
    nesterov : Nesterov momentum (default on, as in the reference Muon).
    update : ``"regularized"`` (O_ε, F 24) or ``"newton_schulz"`` (F 22).
    smoothing : ``"sqrt"`` (ψ_ε of F 24) or ``"clip"`` (quadratic prox, §5.2).
    ns_steps : Newton–Schulz steps (5); weight_decay : decoupled weight decay (F 23).
    seed : seeds the initial particles (fresh from ``secrets`` when None; returned).
    progress, cancel, trace_every : as in ``run_steps``; trace rows hold ``loss`` (J),
        ``hamiltonian`` (F 27) and the step's ``dissipation``.

    Returns
    -------
    RunResult with the final particles (N, p, q), the state, a public description and the trace.
    """
    run_seed = rng.resolve_seed(seed, private=False)
    if not (isinstance(n_particles, int) and n_particles >= 1):
        raise InvalidParameter("particles", "must be an integer >= 1")
    w0 = objective.init_particles(n_particles, run_seed)
    if eps is None:
        eps = default_eps(objective.value_and_gradient(w0)[1])
    flow = MuonFlow(
        objective,
        float(eps),
        lr=float(lr),
        momentum=float(momentum),
        nesterov=nesterov,
        update=update,
        smoothing=smoothing,
        ns_steps=ns_steps,
        weight_decay=float(weight_decay),
    )
    state = flow.init(w0)
    state, trace = run_steps(
        flow.build_step(),
        state,
        n_steps,
        private=False,
        progress=progress,
        cancel=cancel,
        trace_every=trace_every,
        trace_fn=lambda st: {"loss": st.loss, "hamiltonian": flow.hamiltonian(st)},
    )
    p, q = objective.shape
    description = RunDescription(
        flow="muon",
        n_particles=n_particles,
        dim=p * q,
        n_steps=n_steps,
        step_size=flow.lr,
        flow_time=n_steps * flow.lr,
        initialization="objective",
        parameters={
            **objective.describe(),
            "shape": [p, q],
            "lr": flow.lr,
            "momentum": flow.momentum,
            "gamma": flow.gamma,
            "eps": flow.eps,
            "nesterov": nesterov,
            "update": update,
            "smoothing": smoothing,
            "ns_steps": ns_steps,
            "weight_decay": flow.weight_decay,
        },
        seed=run_seed,
    )
    return RunResult(state.particles, state, description, trace)
