"""Public parameters -> the SHK sampler's schedule (certificates note (10)); takes no records.

Given the per-sample target ε, the slack η ∈ (0, 1) and the utility's public sensitivities,

    λ = (1 - η) ε / Δ_osc,        t_cert = max(0, log(2 (1 - η) U / (η Δ_osc))),

so that route C (9) gives β_C(t_cert) = λΔ_osc + 2 e^{-t_cert} λU <= ε. The particle count, step
size, number of steps and KDE bandwidth are public defaults or public overrides. The relaxation
phase after the flow (π-invariant multiscale MALA moves,
:func:`dp_core.flows.shk.relaxation_schedule`) takes its proposal range from scale(Θ) and the
potential's range bound λU; its number of moves is public too and may be overridden (0 switches
it off). Privacy rule 2 is visible in the signature: :func:`shk_schedule` cannot see a record.
:meth:`SHKSchedule.run` then runs the sampler as scheduled on the potential its caller built
(the mechanism: privately, with a secret seed).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

from dp_core.errors import InvalidParameter
from dp_core.flows.base import CancelFn, ProgressFn, RunResult
from dp_core.flows.shk import (
    DEFAULT_STEP_SIZE,
    Relaxation,
    SHKState,
    default_bandwidth,
    relaxation_schedule,
    sample_shk,
)
from dp_core.privacy.certificates import route_c_beta
from dp_core.privacy.utilities.base import Sensitivity
from dp_core.types import Domain, Potential

__all__ = [
    "DEFAULT_PARTICLES",
    "DEFAULT_SLACK",
    "MAX_PARTICLES",
    "MAX_RELAXATION_MOVES",
    "SHKSchedule",
    "shk_schedule",
]

DEFAULT_SLACK = 0.05
DEFAULT_PARTICLES = 2000
MAX_PARTICLES = 200_000
MAX_RELAXATION_MOVES = 10_000


@dataclass(frozen=True)
class SHKSchedule:
    """Everything that shapes one private SHK run; every field is public."""

    epsilon: float  # per-sample target
    slack: float
    inverse_temperature: float
    flow_time: float
    step_size: float
    n_steps: int
    particles: int
    bandwidth: float
    relaxation: Relaxation

    def run(
        self,
        potential: Potential,
        domain: Domain,
        *,
        private: bool = True,
        seed: int | None = None,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
    ) -> RunResult[SHKState]:
        """Run the SHK sampler exactly as this schedule says (flow, then the relaxation phase).

        Releases run it private (secret seed); verification runs it public with a seed.
        """
        return sample_shk(
            potential,
            domain,
            n_particles=self.particles,
            flow_time=self.flow_time,
            step_size=self.step_size if self.n_steps else 1.0,
            bandwidth=self.bandwidth,
            relaxation=self.relaxation,
            private=private,
            seed=seed,
            progress=progress,
            cancel=cancel,
        )

    @property
    def sampler(self) -> dict[str, Any]:
        """The API's ``sampler`` object."""
        return {
            "particles": self.particles,
            "steps": self.n_steps,
            "step_size": self.step_size,
            "relaxation_moves": self.relaxation.moves,
            "relaxation_step_range": list(self.relaxation.step_range),
        }


def shk_schedule(
    epsilon: float,
    sensitivity: Sensitivity,
    domain: Domain,
    *,
    slack: float = DEFAULT_SLACK,
    particles: int | None = None,
    step_size: float | None = None,
    relaxation_moves: int | None = None,
) -> SHKSchedule:
    """The schedule of (10) for a per-sample ε (see the module docstring)."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise InvalidParameter("epsilon", "must be finite and positive")
    if not (0.0 < slack < 1.0):
        raise InvalidParameter("slack", "must lie in (0, 1)")
    n = DEFAULT_PARTICLES if particles is None else particles
    if not (isinstance(n, int) and 2 <= n <= MAX_PARTICLES):
        raise InvalidParameter("sampler.particles", f"must be an integer in [2, {MAX_PARTICLES}]")
    h = DEFAULT_STEP_SIZE if step_size is None else step_size
    if not (math.isfinite(h) and 1e-4 <= h <= 1.0):
        raise InvalidParameter("sampler.step_size", "must lie in [1e-4, 1]")
    lam = (1.0 - slack) * epsilon / sensitivity.delta_osc
    if epsilon < sys.float_info.min or 0.0 < lam < sys.float_info.min:
        # Subnormal ε or λ lose the relative precision that (10)'s slack relies on: the check
        # below would fail (an internal error) instead of refusing the request.
        raise InvalidParameter("epsilon", "is too small for this utility's sensitivity")
    ratio = 2.0 * (1.0 - slack) * sensitivity.range_bound / (slack * sensitivity.delta_osc)
    t_cert = max(0.0, math.log(ratio)) if ratio > 0 else 0.0
    n_steps = max(1, math.ceil(t_cert / h - 1e-12)) if t_cert > 0 else 0
    flow_time = t_cert
    step = flow_time / n_steps if n_steps else h
    bandwidth = default_bandwidth(domain, n)
    if not (math.isfinite(bandwidth) and bandwidth * bandwidth >= sys.float_info.min):
        # The kernels divide by h²; a subnormal h² fails inside the run, after the charge.
        raise InvalidParameter("utility", "the parameter domain is too small for the sampler")
    slope = sensitivity.slope_bound
    relaxation = relaxation_schedule(
        domain, lam * sensitivity.range_bound, None if slope is None else lam * slope
    )
    if relaxation.step_range[0] < sys.float_info.min:  # as for the bandwidth: fail before charging
        raise InvalidParameter("utility", "the parameter domain is too small for the sampler")
    if relaxation_moves is not None:
        if isinstance(relaxation_moves, bool) or not (
            isinstance(relaxation_moves, int) and 0 <= relaxation_moves <= MAX_RELAXATION_MOVES
        ):
            raise InvalidParameter(
                "sampler.relaxation_moves", f"must be an integer in [0, {MAX_RELAXATION_MOVES}]"
            )
        relaxation = relaxation._replace(moves=relaxation_moves)
    beta = route_c_beta(flow_time, lam, sensitivity)
    if beta > epsilon * (1.0 + 1e-12):  # (10) guarantees this; a failure is a bug, fail closed
        raise AssertionError("schedule violates (10): beta_C(t_cert) > epsilon")
    return SHKSchedule(
        epsilon=epsilon,
        slack=slack,
        inverse_temperature=lam,
        flow_time=flow_time,
        step_size=step,
        n_steps=n_steps,
        particles=n,
        bandwidth=bandwidth,
        relaxation=relaxation,
    )
