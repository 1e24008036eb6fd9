"""Sinkhorn associative memory with SHK retrieval (flows note §4, Mustafi & Mukherjee).

Stored patterns are weighted point clouds ``μ_k = Σ_j b_kj δ_{y_kj}`` (F 15). The energy of a
state ``ν = Σ_i a_i δ_{x_i}`` is the soft-min of debiased Sinkhorn divergences (F 16)–(F 17)::

    E(ν) = −β⁻¹ log Σ_k exp(−β S_ε(ν, μ_k)),   w = softmax(−β S)

and retrieval runs the discrete SHK (Wasserstein–Fisher–Rao) step (F 20)–(F 21) from a query:

1. solve the K two-sided problems (ν, μ_k) and the symmetric problem (ν, ν), batched (the
   patterns' own potentials q_k are solved once, at storage);
2. ``S_k`` by (F 16), ``w = softmax(−βS)``, first variation ``φ = Σ_k w_k f_k − p`` (F 18);
3. transport ``x_i ← x_i + η (Σ_k w_k T_k(x_i) − T_p(x_i))`` with the barycentric maps (F 19);
4. reweighting ``a_i ← a_i e^{−τφ_i} / Σ_l a_l e^{−τφ_l}`` in the log domain (max-shifted).

By default τ is chosen by Armijo backtracking (flows note §4.3 "Rule"): start at τ₀ = 1e-2,
accept if ``E_new ≤ E − ½ τ Var_a(φ)``, else halve (at most 8 halvings), then τ = 0; if even
the pure transport step raises E, η is halved (at most 4 times) for that step, and otherwise
the step is rejected. So the computed energy never increases (T-SHK-6). A fixed ``weight_step``
runs the explicit scheme (F 21) without any check. Each trial costs one warm-started solve,
which becomes the next step's potentials when accepted.

Sinkhorn convergence (:mod:`dp_core.engine.sinkhorn_solve`): a solve is warm-started from the
previous state's potentials only when the state moved little — every point by at most
``ε / D`` (D the diagonal of the bounding box of the state and the patterns: the potentials then
move by at most about ε) and every log-weight by at most 1 — and is otherwise cold, with
ε-scaling. Each solve iterates to ``tol`` (sup-change of the potentials) with at most
``max_iter`` iterations, then polishes with Newton steps the problems still above ``tol``
(the query near its pattern makes the plan almost a permutation, where Sinkhorn alone stalls
for millions of iterations). Whatever remains unconverged is reported, never hidden: each
state carries ``converged`` per pattern (its two-sided problem, the state's symmetric problem
and the pattern's stored q_k), each step's info whether its accepted solve converged, and the
result ``converged`` per pattern at the final state plus ``warnings`` in words.

Retrieval is deterministic (no randomness): the same inputs give the same bits on any thread
count. Memories are public data (API.md "Flows"): runs are public and traced.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from dp_core.engine.divergence import check_measure
from dp_core.engine.sinkhorn_solve import NEWTON_STEPS, sinkhorn_pairs, sinkhorn_self
from dp_core.errors import InvalidParameter, NumericalFailure
from dp_core.flows.base import CancelFn, ProgressFn, RunDescription, run_steps
from dp_core.types import FloatArray

__all__ = [
    "DEFAULT_STEPS",
    "DEFAULT_STEP_SIZE",
    "RetrievalInfo",
    "RetrievalResult",
    "RetrievalState",
    "SinkhornMemory",
    "reweight",
]

DEFAULT_STEPS = 30
DEFAULT_STEP_SIZE = 0.5  # η, flows note §4.5
TAU0 = 1e-2
MAX_TAU_HALVINGS = 8
MAX_ETA_HALVINGS = 4
SINKHORN_TOL = 1e-9  # sup-change of the potentials, flows note §4.5
SINKHORN_MAX_ITER = 50
"""Iterations at ε = blur² before Newton polishing. Retrieval on 10 patterns of 40 points of
N(0, 4 I₃), blur 1, β = 20 (seeds 1, 2, 5), same machine and load: 15–19 s in all with a cap
of 10 or 25, 22 s with 50, 31 s with 100, 39 s with 200 (Sinkhorn alone: 99 s at 1000 and
unconverged). 50 leaves the many warm solves of well-separated problems to Sinkhorn and the
stalled ones to Newton."""
SINKHORN_NEWTON_STEPS = NEWTON_STEPS
WARM_LOG_WEIGHT_CHANGE = 1.0


class RetrievalState(NamedTuple):
    """Positions and weights of the state, and everything the next step needs from its solve.

    ``f`` (K, n) two-sided potentials on the state's points, ``g`` (Σm,) on the patterns'
    points, ``p`` (n,) the state's symmetric potential, ``bary`` (K, n, d) the maps T_k,
    ``bary_self`` (n, d) T_p, ``divergences`` (K,) S_ε(ν, μ_k), ``energy`` E(ν) (F 17),
    ``converged`` (K,) whether every solve behind S_k met the tolerance, ``residual`` (K,)
    the largest final sup-change behind S_k; ``sinkhorn_iterations`` and ``newton_steps`` are
    the most any problem of this solve used.
    """

    points: FloatArray
    weights: FloatArray
    f: FloatArray
    g: FloatArray
    p: FloatArray
    bary: FloatArray
    bary_self: FloatArray
    divergences: FloatArray
    energy: float
    sinkhorn_iterations: int
    steps_done: int
    converged: np.ndarray
    residual: FloatArray
    newton_steps: int = 0


class RetrievalInfo(NamedTuple):
    """Per-step diagnostics (public: memories and queries are caller-supplied public data).

    ``converged``: whether every problem of the solve the step ended on met the tolerance.
    """

    weight_step: float
    transport_step: float
    trials: int
    accepted: bool
    sinkhorn_iterations: int
    newton_steps: int = 0
    converged: bool = True


class RetrievalResult(NamedTuple):
    """What ``retrieve`` returns (API.md ``/v1/memories/{id}/retrieve``).

    ``converged`` (K,): whether ``divergences[k]`` comes from solves that met the tolerance;
    ``warnings``: one sentence per problem found (empty when every solve converged).
    """

    points: FloatArray
    weights: FloatArray
    nearest_pattern: int
    divergences: FloatArray
    energy_trace: list[float]
    trace: list[dict[str, float]]
    description: RunDescription
    converged: np.ndarray
    warnings: list[str]


def _soft_min(s: FloatArray, beta: float) -> tuple[float, FloatArray]:
    """``E = −β⁻¹ log Σ_k e^{−βS_k}`` and ``w = softmax(−βS)``, max-shifted (F 17)."""
    z = -beta * s
    top = float(z.max())
    e = np.exp(z - top)
    total = float(e.sum())
    return -(top + math.log(total)) / beta, e / total


def reweight(weights: FloatArray, phi: FloatArray, tau: float) -> FloatArray:
    """Step 4 of (F 21): ``a_i e^{−τφ_i} / Σ_l a_l e^{−τφ_l}`` in the log domain, shifted by the
    maxima, so it is invariant to the gauge φ + c (T-SHK-7) and never overflows."""
    la = np.log(weights) - tau * (phi - phi.max())
    e = np.exp(la - la.max())
    return e / e.sum()


@dataclass(frozen=True)
class SinkhornMemory:
    """K stored patterns and their precomputed symmetric potentials q_k (F 16).

    Build with :meth:`store`. ``points`` (Σm, d) holds the patterns one after another,
    ``offsets`` (K + 1,) their boundaries, ``weights`` (Σm,) and ``q`` (Σm,) per point,
    ``q_converged`` (K,) whether each q_k met the tolerance; ``tol``, ``max_iter`` and
    ``newton_steps`` are the Sinkhorn settings of every solve (module docstring).
    """

    points: FloatArray
    offsets: np.ndarray
    weights: FloatArray
    q: FloatArray
    blur: float
    beta: float
    q_converged: np.ndarray
    tol: float = SINKHORN_TOL
    max_iter: int = SINKHORN_MAX_ITER
    newton_steps: int = SINKHORN_NEWTON_STEPS

    @property
    def n_patterns(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def dim(self) -> int:
        return int(self.points.shape[1])

    @property
    def _solver(self) -> dict:
        return {"tol": self.tol, "max_iter": self.max_iter, "newton_steps": self.newton_steps}

    @staticmethod
    def store(
        patterns: Sequence[tuple[FloatArray, FloatArray | None]],
        blur: float,
        beta: float,
        *,
        tol: float | None = None,
        max_iter: int | None = None,
        newton_steps: int | None = None,
    ) -> SinkhornMemory:
        """Store patterns ``[(points (m_k, d), weights (m_k,) or None), ...]``.

        ``blur``: ε = blur² for the cost ½|x − y|²; ``beta``: the inverse temperature of (F 17).
        ``tol``, ``max_iter``, ``newton_steps``: Sinkhorn settings of every solve (None: this
        module's ``SINKHORN_TOL``, ``SINKHORN_MAX_ITER``, ``SINKHORN_NEWTON_STEPS``).
        """
        tol = SINKHORN_TOL if tol is None else float(tol)
        max_iter = SINKHORN_MAX_ITER if max_iter is None else int(max_iter)
        newton_steps = SINKHORN_NEWTON_STEPS if newton_steps is None else int(newton_steps)
        if not (math.isfinite(tol) and tol > 0):
            raise InvalidParameter("tol", "must be finite and positive")
        if max_iter < 1:
            raise InvalidParameter("max_iter", "must be >= 1")
        if newton_steps < 0:
            raise InvalidParameter("newton_steps", "must be >= 0")
        if not (math.isfinite(blur) and blur > 0):
            raise InvalidParameter("blur", "must be finite and positive")
        if not (math.isfinite(beta) and beta > 0):
            raise InvalidParameter("beta", "must be finite and positive")
        if len(patterns) == 0:
            raise InvalidParameter("patterns", "need at least one pattern")
        clouds = [check_measure(pts, w, "patterns") for pts, w in patterns]
        if len({c[0].shape[1] for c in clouds}) != 1:
            raise InvalidParameter("patterns", "all patterns must have the same dimension")
        points = np.ascontiguousarray(np.concatenate([c[0] for c in clouds]))
        weights = np.concatenate([c[1] for c in clouds])
        offsets = np.zeros(len(clouds) + 1, dtype=np.int64)
        np.cumsum([c[0].shape[0] for c in clouds], out=offsets[1:])
        solver = {"tol": tol, "max_iter": max_iter, "newton_steps": newton_steps}
        sol = sinkhorn_self(points, offsets, weights, blur, **solver)
        return SinkhornMemory(
            points, offsets, weights, sol.f, float(blur), float(beta), sol.converged, **solver
        )

    # ------------------------------------------------------------------ the energy (F 16)–(F 17)
    def solve(
        self, points: FloatArray, weights: FloatArray, warm: RetrievalState | None = None
    ) -> RetrievalState:
        """Solve every problem at the state ``(points, weights)`` (step 1–2 of (F 21))."""
        K, n = self.n_patterns, points.shape[0]
        xs = np.ascontiguousarray(np.tile(points, (K, 1)))
        x_off = np.arange(K + 1, dtype=np.int64) * n
        a_rep = np.tile(weights, K)
        kw = self._solver
        if warm is None:
            pair = sinkhorn_pairs(
                xs, x_off, a_rep, self.points, self.offsets, self.weights, self.blur, **kw
            )
            selfs = sinkhorn_self(points, x_off[:2], weights, self.blur, **kw)
        else:
            pair = sinkhorn_pairs(
                xs,
                x_off,
                a_rep,
                self.points,
                self.offsets,
                self.weights,
                self.blur,
                f0=warm.f.ravel(),
                g0=warm.g,
                **kw,
            )
            selfs = sinkhorn_self(points, x_off[:2], weights, self.blur, p0=warm.p, **kw)
        f = pair.f.reshape(K, n)
        # S_k = ⟨a, f_k − p⟩ + ⟨b_k, g_k − q_k⟩ (F 16)
        pattern_terms = np.add.reduceat(self.weights * (pair.g - self.q), self.offsets[:-1])
        s = f @ weights - weights @ selfs.f + pattern_terms
        energy, _ = _soft_min(s, self.beta)
        if not (np.isfinite(s).all() and math.isfinite(energy)):
            raise NumericalFailure("Sinkhorn divergences are not finite")
        iters = int(pair.iterations.max() + selfs.iterations.max())
        newton = int(pair.newton_steps.max() + selfs.newton_steps.max())
        converged = pair.converged & bool(selfs.converged[0]) & self.q_converged
        residual = np.maximum(pair.residual, selfs.residual[0])
        return RetrievalState(
            points,
            weights,
            f,
            pair.g,
            selfs.f,
            pair.barycentre.reshape(K, n, -1),
            selfs.barycentre,
            s,
            energy,
            iters,
            0 if warm is None else warm.steps_done,
            converged,
            residual,
            newton,
        )

    def close_enough(self, state: RetrievalState, points: FloatArray, weights: FloatArray) -> bool:
        """Whether a solve at ``(points, weights)`` may start from ``state``'s potentials: every
        point moved by at most ε / D and every log-weight by at most
        ``WARM_LOG_WEIGHT_CHANGE`` (module docstring)."""
        both = np.concatenate([state.points, points, self.points])
        diameter = float(np.linalg.norm(both.max(axis=0) - both.min(axis=0)))
        shift = float(np.sqrt(((points - state.points) ** 2).sum(axis=1)).max())
        with np.errstate(divide="ignore", invalid="ignore"):
            dlog = np.abs(np.log(weights) - np.log(state.weights))
        dlog = float(np.nan_to_num(dlog, nan=0.0, posinf=np.inf).max())
        return shift * diameter <= self.blur**2 and dlog <= WARM_LOG_WEIGHT_CHANGE

    def energy(self, points: FloatArray, weights: FloatArray | None = None) -> float:
        """E(ν) of (F 17) for one weighted point cloud."""
        x, a = check_measure(points, weights, "query")
        return self.solve(x, a).energy

    # ------------------------------------------------------------------ retrieval (F 20)–(F 21)
    def build_step(self, step_size: float, weight_step: float | None):
        """Return ``step(state) -> (state, info)`` of (F 21) with η = ``step_size`` and
        τ = ``weight_step`` (None: Armijo backtracking, module docstring)."""

        def step(state: RetrievalState) -> tuple[RetrievalState, RetrievalInfo]:
            _, w = _soft_min(state.divergences, self.beta)
            a = state.weights
            phi = w @ state.f - state.p  # (F 18)
            velocity = np.einsum("k,kid->id", w, state.bary) - state.bary_self
            var = float(a @ (phi - a @ phi) ** 2)

            def trial(eta: float, tau: float) -> RetrievalState:
                x = np.ascontiguousarray(state.points + eta * velocity)
                a1 = reweight(a, phi, tau) if tau > 0 else a
                return self.solve(x, a1, warm=state if self.close_enough(state, x, a1) else None)

            if weight_step is not None:
                new = trial(step_size, weight_step)
                return self._advance(new, state), RetrievalInfo(
                    weight_step,
                    step_size,
                    1,
                    True,
                    new.sinkhorn_iterations,
                    new.newton_steps,
                    bool(new.converged.all()),
                )
            taus = [TAU0 * 0.5**h for h in range(MAX_TAU_HALVINGS + 1)] + [0.0]
            trials = iters = newton = 0
            eta = step_size
            for h in range(MAX_ETA_HALVINGS + 1):
                for tau in taus if h == 0 else [0.0]:
                    new = trial(eta, tau)
                    trials += 1
                    iters += new.sinkhorn_iterations
                    newton += new.newton_steps
                    if new.energy <= state.energy - 0.5 * tau * var:
                        converged = bool(new.converged.all())
                        info = RetrievalInfo(tau, eta, trials, True, iters, newton, converged)
                        return self._advance(new, state), info
                eta *= 0.5
            converged = bool(state.converged.all())
            info = RetrievalInfo(0.0, 0.0, trials, False, iters, newton, converged)
            return state._replace(steps_done=state.steps_done + 1), info

        return step

    @staticmethod
    def _advance(new: RetrievalState, old: RetrievalState) -> RetrievalState:
        return new._replace(steps_done=old.steps_done + 1)

    def retrieve(
        self,
        query: FloatArray,
        query_weights: FloatArray | None = None,
        *,
        steps: int = DEFAULT_STEPS,
        step_size: float = DEFAULT_STEP_SIZE,
        weight_step: float | None = None,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
    ) -> RetrievalResult:
        """Run ``steps`` retrieval steps (F 21) from the query ``(query, query_weights)``.

        Returns the final points and weights, ``nearest_pattern = argmin_k S_ε(ν_T, μ_k)``,
        the final divergences (K,), the energy after every step (``energy_trace[0]`` is
        the query's energy), ``converged`` (K,) at the final state and ``warnings``.
        """
        x, a = check_measure(query, query_weights, "query")
        if x.shape[1] != self.dim:
            raise InvalidParameter("query", "query and patterns must have the same dimension")
        if not (math.isfinite(step_size) and step_size > 0):
            raise InvalidParameter("step_size", "must be finite and positive")
        if weight_step is not None and not (math.isfinite(weight_step) and weight_step >= 0):
            raise InvalidParameter("weight_step", "must be finite and >= 0")
        if (a <= 0).any():
            raise InvalidParameter("query", "query weights must be positive")
        state = self.solve(x, a)
        initial_converged = bool(state.converged.all())
        state, trace = run_steps(
            self.build_step(step_size, weight_step),
            state,
            steps,
            private=False,
            progress=progress,
            cancel=cancel,
            trace_every=1,
            trace_fn=lambda s: {"energy": s.energy},
        )
        description = RunDescription(
            flow="sinkhorn_memory",
            n_particles=x.shape[0],
            dim=x.shape[1],
            n_steps=steps,
            step_size=step_size,
            flow_time=steps * step_size,
            initialization="given",
            parameters={
                "blur": self.blur,
                "beta": self.beta,
                "patterns": self.n_patterns,
                "weight_step": "backtracking" if weight_step is None else weight_step,
                "sinkhorn_tol": self.tol,
                "sinkhorn_max_iter": self.max_iter,
                "newton_steps": self.newton_steps,
            },
        )
        return RetrievalResult(
            state.points,
            state.weights,
            int(np.argmin(state.divergences)),
            state.divergences,
            [row["energy"] for row in trace],
            trace,
            description,
            state.converged.copy(),
            self._warnings(state, initial_converged, trace),
        )

    def _warnings(self, state: RetrievalState, initial: bool, trace: list[dict]) -> list[str]:
        """Sentences for every unconverged solve behind the result (empty when none)."""
        out = []
        bad = np.flatnonzero(state.residual > self.tol)
        if bad.size:
            out.append(
                f"Sinkhorn did not converge for {bad.size} of {self.n_patterns} patterns at the "
                f"final state (patterns {bad.tolist()}; largest residual "
                f"{float(state.residual[bad].max()):.3g} > tolerance {self.tol:.3g} after "
                f"{self.max_iter} iterations and up to {self.newton_steps} Newton steps): "
                "their divergences are not converged values."
            )
        if not self.q_converged.all():
            out.append(
                f"The stored self-potentials of patterns "
                f"{np.flatnonzero(~self.q_converged).tolist()} did not converge."
            )
        steps = [0] if not initial else []
        steps += [int(row["step"]) for row in trace[1:] if not row["converged"]]
        if steps:
            out.append(
                f"Sinkhorn did not converge at {len(steps)} of {len(trace)} states of the "
                f"trajectory (first at step {steps[0]}; step 0 is the query): the trajectory "
                "may differ from the exact flow."
            )
        return out
