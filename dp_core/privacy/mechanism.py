"""The exponential mechanism = utility + schedule + SHK flow (or an exact mechanism).

    release = ExponentialMechanism(Quantile(0.5, 0, 100), epsilon=1.0).sample(data, n_samples=1)
    release.samples, release.certificate.as_dict()

``epsilon`` and ``delta`` are the total cost of the whole release: with m samples each sample is
one release of the mechanism at ε/m (note §4). Everything that shapes the run — λ, flow time,
steps, particles, bandwidth, relaxation moves — is fixed by :meth:`ExponentialMechanism.plan`
from public parameters before any record is read (privacy rules 2 and 4: a service charges the
plan's cost, then calls :meth:`sample`). Private runs seed from ``secrets``; a seed cannot be
passed.

Methods: ``shk`` (certificate scope ``mean_field``) for every continuous family; ``exact``
(scope ``exact``) for ``mode`` (finite set), ``quantile`` (the continuous law, no grid) and the
other families on domains of dimension <= 3 (EM over a public grid, :mod:`grid`).
"""

from __future__ import annotations

import math
import secrets
import sys
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dp_core.errors import InvalidParameter
from dp_core.flows.base import CancelFn, ProgressFn
from dp_core.privacy import exact
from dp_core.privacy.certificates import Certificate, exact_certificate, mean_field_certificate
from dp_core.privacy.grid import MAX_GRID_DIM, grid_inverse_temperature, grid_release
from dp_core.privacy.ledger import Charge
from dp_core.privacy.schedule import DEFAULT_SLACK, SHKSchedule, shk_schedule
from dp_core.privacy.utilities import KMeans, Mode, Quantile, UtilityFamily, UtilityPotential
from dp_core.privacy.utilities.base import check_neighbouring
from dp_core.privacy.utilities.kmeans import canonical_centres

__all__ = ["ExponentialMechanism", "Plan", "Release"]

SNAP_BITS = 24
"""Released SHK values are rounded to multiples of scale(Θ)·2^-24 (note §7.4)."""
MAX_SAMPLES = 10_000


@dataclass(frozen=True)
class Plan:
    """What a release will cost and how it will run, from public parameters only."""

    method: Literal["shk", "exact"]
    n_samples: int
    charge: Charge
    certificate: Certificate
    schedule: SHKSchedule | None

    @property
    def sampler(self) -> dict[str, Any] | None:
        return None if self.schedule is None else self.schedule.sampler


@dataclass(frozen=True)
class Release:
    """Released samples (m, dim) and the plan's certificate and charge."""

    samples: np.ndarray
    plan: Plan

    @property
    def certificate(self) -> Certificate:
        return self.plan.certificate


class ExponentialMechanism:
    """π_D(θ) ∝ exp(λ u(D, θ)) on the utility's public domain, released with a certificate."""

    def __init__(
        self,
        utility: UtilityFamily | Mode,
        epsilon: float,
        *,
        delta: float = 0.0,
        n_max: int = 1_000_000,
        neighbouring: str = "add_remove",
        method: str = "shk",
        particles: int | None = None,
        step_size: float | None = None,
        relaxation_moves: int | None = None,
        slack: float = DEFAULT_SLACK,
    ) -> None:
        if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon > 0):
            raise InvalidParameter("epsilon", "must be finite and positive")
        if not (0.0 <= delta < 1.0):
            raise InvalidParameter("delta", "must lie in [0, 1)")
        if not (isinstance(n_max, int) and n_max >= 1):
            raise InvalidParameter("size_bound", "must be an integer >= 1")
        if method not in ("shk", "exact"):
            raise InvalidParameter("method", "must be 'shk' or 'exact'")
        if isinstance(utility, Mode) and method != "exact":
            raise InvalidParameter("method", "the mode utility is available with method 'exact'")
        gridded = method == "exact" and not isinstance(utility, (Mode, Quantile))
        if gridded and utility.domain.dim > MAX_GRID_DIM:
            raise InvalidParameter(
                "method", f"exact needs a domain of dimension <= {MAX_GRID_DIM} (a grid)"
            )
        self.utility = utility
        self.epsilon = float(epsilon)
        self.delta = float(delta)
        self.n_max = n_max
        self.neighbouring = check_neighbouring(neighbouring)
        self.method = method
        self.particles = particles
        self.step_size = step_size
        self.relaxation_moves = relaxation_moves
        self.slack = slack

    # ------------------------------------------------------------------ public planning
    def plan(self, n_samples: int = 1) -> Plan:
        """Schedule, certificate and charge of a release of ``n_samples``; reads no records."""
        if not (isinstance(n_samples, int) and 1 <= n_samples <= MAX_SAMPLES):
            raise InvalidParameter("n_samples", f"must be an integer in [1, {MAX_SAMPLES}]")
        per_sample = self.epsilon / n_samples
        if per_sample < sys.float_info.min:  # subnormal: the accounting loses its precision
            raise InvalidParameter(
                "epsilon", f"per sample must be at least {sys.float_info.min:.3g}"
            )
        sens = self.utility.sensitivity(self.neighbouring, self.n_max)
        if not all(
            math.isfinite(value) and value > 0 for value in (sens.delta_osc, sens.range_bound)
        ):  # e.g. a clip whose square underflows: no finite λ, no certificate
            raise InvalidParameter(
                "utility", "its sensitivity is not a positive finite number (clip or domain)"
            )
        charge = Charge.bounded_range(self.epsilon)
        form = _utility_form(self.utility)
        if self.method == "exact":
            # The implemented loss (-log b)·Δ̃_osc of (31) is at most the per-sample ε; the
            # certificate states ε itself (conservative, and known before any record is read).
            cert = exact_certificate(
                mechanism="exact base-2 exponential mechanism",
                epsilon_implemented=per_sample,
                inverse_temperature=self._exact_inverse_temperature(per_sample, sens.delta_osc),
                bounded_range=True,
                n_samples=n_samples,
                delta=self.delta,
                neighbouring=self.neighbouring,
                utility_form=form,
            )
            return Plan("exact", n_samples, charge, cert, None)
        schedule = shk_schedule(
            per_sample,
            sens,
            self.utility.domain,
            slack=self.slack,
            particles=self.particles,
            step_size=self.step_size,
            relaxation_moves=self.relaxation_moves,
        )
        if n_samples > schedule.particles:
            raise InvalidParameter("n_samples", "cannot exceed the number of particles")
        cert = mean_field_certificate(
            inverse_temperature=schedule.inverse_temperature,
            flow_time=schedule.flow_time,
            sensitivity=sens,
            n_samples=n_samples,
            delta=self.delta,
            neighbouring=self.neighbouring,
            utility_form=form,
        )
        return Plan("shk", n_samples, charge, cert, schedule)

    def _exact_inverse_temperature(self, per_sample: float, delta_osc: float) -> float:
        """λ of the law the exact method samples, in the utility's units: the grid families'
        integer units make it :func:`grid_inverse_temperature`, the quantile's rational q̃
        :func:`exact.quantile_inverse_temperature`; the mode ε/Δ_osc (up to the rounding of the
        base b of (31), a relative 2^-64)."""
        utility = self.utility
        if isinstance(utility, Mode):
            return per_sample / delta_osc
        if isinstance(utility, Quantile):
            return exact.quantile_inverse_temperature(
                per_sample,
                utility.q,
                self.neighbouring,  # type: ignore[arg-type]
            )
        return grid_inverse_temperature(utility, per_sample, self.neighbouring)

    # ------------------------------------------------------------------ private computation
    def sample(
        self,
        data: Any,
        n_samples: int = 1,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        plan: Plan | None = None,
    ) -> Release:
        """Run the mechanism on ``data`` (the utility's record layout) and release samples."""
        if plan is None:
            plan = self.plan(n_samples)
        elif plan.n_samples != n_samples:
            raise InvalidParameter("n_samples", "differs from the plan's n_samples")
        if plan.method == "exact":
            return Release(self._sample_exact(data, plan), plan)
        schedule = plan.schedule
        assert schedule is not None
        utility = self.utility
        assert not isinstance(utility, Mode)
        potential = UtilityPotential(utility, utility.prepare(data), schedule.inverse_temperature)
        run = schedule.run(potential, utility.domain, progress=progress, cancel=cancel)
        chosen = _secret_subset(schedule.particles, plan.n_samples)
        samples = _snap(run.particles[chosen], utility.domain.scale)
        if isinstance(utility, KMeans):
            samples = canonical_centres(samples, utility.k)
        return Release(samples, plan)

    def _sample_exact(self, data: Any, plan: Plan) -> np.ndarray:
        per_sample = self.epsilon / plan.n_samples
        utility = self.utility
        out = []
        if isinstance(utility, Mode):
            counts = utility.counts(data)
            osc = 1 if self.neighbouring == "add_remove" else 2
            for _ in range(plan.n_samples):
                draw = exact.exact_exponential_mechanism(counts, per_sample, osc)
                out.append([draw.index])
            return np.asarray(out, dtype=np.int64)
        if not isinstance(utility, Quantile):
            return grid_release(utility, data, per_sample, self.neighbouring, plan.n_samples)
        draws = exact.exact_quantile_samples(  # the continuous law (no grid), sorted once
            np.asarray(data, dtype=np.float64).ravel(),
            utility.q,
            utility.lower,
            utility.upper,
            per_sample,
            self.neighbouring,  # type: ignore[arg-type]
            plan.n_samples,
        )
        return np.asarray([[draw.value] for draw in draws], dtype=np.float64)


def _utility_form(utility: Any) -> str:
    """The utility's form as the certificate names it: the M-estimation families carry it;
    the quantile's rank utility is already the norm of the pinball loss's (sub)gradient sum;
    the mode is a count."""
    if isinstance(utility, Mode):
        return "count"
    if isinstance(utility, Quantile):
        return "gradient_norm"
    return str(utility.form)


def _secret_subset(n: int, m: int) -> np.ndarray:
    """m distinct particle indices chosen with the CSPRNG (the particles are exchangeable)."""
    rng = secrets.SystemRandom()
    return np.asarray(sorted(rng.sample(range(n), m)), dtype=np.int64)


def _snap(samples: np.ndarray, scale: float) -> np.ndarray:
    """Round to the public grid scale·2^-SNAP_BITS (note §7.4; post-processing)."""
    quantum = scale * 2.0**-SNAP_BITS
    return np.round(samples / quantum) * quantum
