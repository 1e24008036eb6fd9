"""The public work estimate: how much computation a request asks for, from public inputs only.

One **work unit** is one pairwise or per-record evaluation in one coordinate: a kernel pair
``k(x_i, x_j)`` in d dimensions is d units, one particle's loss term for one record of a
d-dimensional utility is d units. The engine's fused kernels run at roughly the same number of
units per second whatever their kind (docs/service.md, "Work limits", lists the measurements), so
``units / rate`` is a run-time estimate; ``PRIVFLOW_WORK_UNITS_PER_SECOND`` is that rate.

Every function below is pure and reads public parameters only (privacy rule 2): the sampler's
schedule, the dataset's public ``size_bound`` (never its record count), the request's point
counts and steps. The estimate of a private release therefore does not depend on the records,
and may be shown to the analyst and used to refuse a request before anything is charged.

Each estimate names the request fields that drive it (``drivers``), so a refusal can say what
to lower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EXACT_DRAW_UNITS",
    "EXACT_QUANTILE_DRAW_UNITS",
    "GRID_SCORE_UNITS",
    "MEMORY_SOLVE_ITERATIONS",
    "SUMMARY_RECORDS",
    "WorkEstimate",
    "drmmd_work",
    "exact_release_work",
    "generator_fit_work",
    "generator_sample_work",
    "memory_retrieval_work",
    "memory_store_work",
    "mmd_work",
    "muon_work",
    "shk_release_work",
]

SUMMARY_RECORDS = 16
"""Per-point cost, in records, of a utility evaluated from exact summaries (sorted records with
prefix sums: a binary search; sufficient statistics: a few d-vectors): about log2(10^6) / 1.25."""

GRID_SCORE_UNITS = 32
"""Units per record, grid point and coordinate of the exact grid scores (integer rounding of
each record's clipped contribution; measured about 30x a kernel pair)."""

EXACT_DRAW_UNITS = 16_000
"""Units per candidate of one exact base-2 exponential-mechanism draw (exact rational
arithmetic in Python: about 8 µs per candidate, 16,000 units at the default rate)."""

EXACT_QUANTILE_DRAW_UNITS = 1_000_000
"""Units of one exact quantile draw (the gap law's window around the mode: about 0.5 ms)."""

MEMORY_SOLVE_ITERATIONS = 20
"""Sinkhorn iterations assumed per retrieval step (warm-started solves converge in a few; the
deadline bounds the rare run that needs many more)."""


@dataclass(frozen=True)
class WorkEstimate:
    """``units`` of work (module docstring) and the request fields that drive them."""

    units: int
    drivers: tuple[str, ...]
    formula: str

    def seconds(self, units_per_second: float) -> float:
        return self.units / units_per_second

    def as_dict(self, units_per_second: float) -> dict[str, Any]:
        """The API's ``work`` object: ``{"units", "estimated_seconds"}``."""
        return {
            "units": self.units,
            "estimated_seconds": _round(self.seconds(units_per_second)),
        }


def _round(seconds: float) -> float:
    """Three significant digits: an estimate, not a measurement."""
    if seconds <= 0.0:
        return 0.0
    return round(seconds, max(0, 2 - math.floor(math.log10(seconds))))


def shk_release_work(
    *,
    particles: int,
    flow_steps: int,
    relaxation_moves: int,
    dim: int,
    records: int,
    record_weight: int = 1,
) -> WorkEstimate:
    """A private SHK release: the utility at every particle at every flow step and relaxation
    move, plus the pairwise kernel density of the flow steps (the relaxation computes none).

    ``records`` is the dataset's public ``size_bound`` for families that pass over the records,
    :data:`SUMMARY_RECORDS` for those evaluated from summaries; ``record_weight`` the family's
    cost per record relative to a kernel pair (the logistic pass: exp, log1p and a d×d
    Jacobian per record). Units: N (S + M) R w d + N² S d (N particles, S flow steps,
    M relaxation moves, R records, d the domain's dimension).
    """
    evaluations = particles * (flow_steps + relaxation_moves) * records * record_weight * dim
    density = particles * particles * flow_steps * dim
    return WorkEstimate(
        evaluations + density,
        ("sampler.particles", "sampler.step_size", "sampler.relaxation_moves"),
        f"particles ({particles}) x (steps ({flow_steps}) + relaxation moves "
        f"({relaxation_moves})) x records ({records}) x dim ({dim})"
        f"{f' x {record_weight}' if record_weight != 1 else ''} + particles^2 x steps x dim",
    )


def exact_release_work(
    *, candidates: int, records: int, dim: int, n_samples: int, kind: str
) -> WorkEstimate:
    """An exact release: scoring the candidates from the records once, then ``n_samples``
    exact draws. ``kind``: ``quantile`` (sort the records; each draw walks the gap law's
    window), ``grid`` (``candidates`` grid points scored per record) or ``mode`` (one count
    per record; each draw over the categories)."""
    if kind == "quantile":
        scoring = records * max(1, math.ceil(math.log2(records + 1)))
        draws = n_samples * EXACT_QUANTILE_DRAW_UNITS
    elif kind == "grid":
        scoring = records * candidates * dim * GRID_SCORE_UNITS
        draws = n_samples * candidates * EXACT_DRAW_UNITS
    else:
        scoring = records
        draws = n_samples * candidates * EXACT_DRAW_UNITS
    return WorkEstimate(
        scoring + draws,
        ("n_samples",),
        f"scoring {candidates} candidates over {records} records, "
        f"then n_samples ({n_samples}) exact draws",
    )


def mmd_work(*, source: int, target: int, steps: int, dim: int) -> WorkEstimate:
    """The MMD flow: per step one witness-gradient sum over source x (source + target) pairs.
    Units: S N (N + M) d."""
    return WorkEstimate(
        steps * source * (source + target) * dim,
        ("source", "target", "steps"),
        f"steps ({steps}) x source ({source}) x (source + target ({target})) x dim ({dim})",
    )


def drmmd_work(*, source: int, target: int, steps: int, dim: int) -> WorkEstimate:
    """The DrMMD flow: per step the MMD step's pairs plus the witness at the targets, and
    once the M x M target system (eigendecomposition or Cholesky, M³).
    Units: S (N + M)² d + M³."""
    return WorkEstimate(
        steps * (source + target) ** 2 * dim + target**3,
        ("source", "target", "steps"),
        f"steps ({steps}) x (source ({source}) + target ({target}))^2 x dim ({dim}) + target^3",
    )


def muon_work(*, particles: int, steps: int, train: int, dim: int) -> WorkEstimate:
    """The Muon particle flow on the student–teacher task: per step every particle's gradient
    over the training inputs. Units: S N n p (p parameters per particle)."""
    return WorkEstimate(
        steps * particles * train * dim,
        ("particles", "steps", "task.n_train", "task.input_dim"),
        f"steps ({steps}) x particles ({particles}) x n_train ({train}) x parameters ({dim})",
    )


def memory_retrieval_work(*, query: int, patterns: int, steps: int, dim: int) -> WorkEstimate:
    """Sinkhorn-memory retrieval: per step the query against every stored point and itself,
    :data:`MEMORY_SOLVE_ITERATIONS` Sinkhorn iterations each. Units: S q (P + q) d I."""
    return WorkEstimate(
        steps * query * (patterns + query) * dim * MEMORY_SOLVE_ITERATIONS,
        ("query.points", "steps"),
        f"steps ({steps}) x query points ({query}) x (stored points ({patterns}) + query) "
        f"x dim ({dim}) x {MEMORY_SOLVE_ITERATIONS} Sinkhorn iterations",
    )


def memory_store_work(*, sizes: list[int], dim: int) -> WorkEstimate:
    """Storing a Sinkhorn memory: each pattern's self-potentials, a symmetric problem over its
    own points, :data:`MEMORY_SOLVE_ITERATIONS` iterations. Units: Σ_k P_k² d I."""
    return WorkEstimate(
        sum(n * n for n in sizes) * dim * MEMORY_SOLVE_ITERATIONS,
        ("patterns",),
        f"sum over patterns of points^2 (largest pattern: {max(sizes, default=0)} points) "
        f"x dim ({dim}) x {MEMORY_SOLVE_ITERATIONS} Sinkhorn iterations",
    )


def generator_fit_work(
    *, samples: int, max_steps: int, points: int, dim: int, points_field: str
) -> WorkEstimate:
    """A generator fit: each energy evaluation scores every fit sample against every point,
    at most ``max_steps`` evaluations. Units: E B n d."""
    return WorkEstimate(
        max_steps * samples * points * dim,
        ("fit.samples", "fit.max_steps", points_field),
        f"fit.max_steps ({max_steps}) x fit.samples ({samples}) x points ({points}) x dim ({dim})",
    )


def generator_sample_work(*, n: int, points: int, dim: int) -> WorkEstimate:
    """Sampling a generator: every sample scored against every point. Units: m n d."""
    return WorkEstimate(
        n * points * dim,
        ("n",),
        f"n ({n}) x points ({points}) x dim ({dim})",
    )
