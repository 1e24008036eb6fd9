"""The public work estimate: how much computation a request asks for, from public inputs only.

One **work unit** is about one coordinate of one pairwise or per-record evaluation: one
particle's loss term for one record of a d-dimensional utility is d units (times the family's
record weight), a kernel pair in d dimensions d + :data:`PAIR_UNITS` units (the exponential and
the weighted sum cost about as much as six coordinates). The weights are measured so that every
kind of work runs at roughly one rate, ``PRIVFLOW_WORK_UNITS_PER_SECOND``, and ``units / rate``
is a run-time estimate (``bench/bench_work_rate.py`` measures each kind; docs/service.md, "Work
limits", has the table).

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
    "GENERATOR_PAIR_UNITS",
    "GRID_SCORE_UNITS",
    "MEMORY_STEP_ITERATIONS",
    "MEMORY_STORE_ITERATIONS",
    "MUON_WEIGHT",
    "PAIR_UNITS",
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

PAIR_UNITS = 6
"""Units of a flow's kernel pair beyond its d coordinates (the MMD flow measured 5.3e8 units/s
counting d units per pair in d = 2: a pair costs about d + 6)."""

GENERATOR_PAIR_UNITS = 8
"""The same for a generator's sample-point pair (fit: 3.3e8 units/s, sampling 6.9e8, counting d
units in d = 2)."""

MUON_WEIGHT = 2
"""Units per particle, training input and parameter of a Muon step (measured 1.1e9 units/s at
weight 1)."""

GRID_SCORE_UNITS = 32
"""Units per record, grid point and coordinate of the exact grid scores (integer rounding of
each record's clipped contribution)."""

EXACT_DRAW_UNITS = 24_000
"""Units per candidate of one exact base-2 exponential-mechanism draw (exact rational
arithmetic in Python: about 12 µs per candidate)."""

EXACT_QUANTILE_DRAW_UNITS = 1_000_000
"""Units of one exact quantile draw (the gap law's window around the mode: up to about 0.5 ms)."""

MEMORY_STEP_ITERATIONS = 600
"""Sinkhorn iterations per coordinate and point pair charged to one retrieval step: the
backtracking trials' solves with their ε-scaling (measured 6e7 units/s at 20)."""

MEMORY_STORE_ITERATIONS = 150
"""The same for the stored patterns' cold self-potential solves (measured 2.8e8 units/s at 20)."""


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
    Units: S N (N + M) (d + 6)."""
    return WorkEstimate(
        steps * source * (source + target) * (dim + PAIR_UNITS),
        ("source", "target", "steps"),
        f"steps ({steps}) x source ({source}) x (source + target ({target})) "
        f"x (dim ({dim}) + {PAIR_UNITS})",
    )


def drmmd_work(*, source: int, target: int, steps: int, dim: int) -> WorkEstimate:
    """The DrMMD flow: per step the MMD step's pairs plus the witness at the targets, and
    once the M x M target system (eigendecomposition or Cholesky, M³).
    Units: S (N + M)² (d + 6) + M³."""
    return WorkEstimate(
        steps * (source + target) ** 2 * (dim + PAIR_UNITS) + target**3,
        ("source", "target", "steps"),
        f"steps ({steps}) x (source ({source}) + target ({target}))^2 x (dim ({dim}) + "
        f"{PAIR_UNITS}) + target^3",
    )


def muon_work(*, particles: int, steps: int, train: int, dim: int) -> WorkEstimate:
    """The Muon particle flow on the student–teacher task: per step every particle's gradient
    over the training inputs. Units: 2 S N n p (p parameters per particle)."""
    return WorkEstimate(
        steps * particles * train * dim * MUON_WEIGHT,
        ("particles", "steps", "task.n_train", "task.input_dim"),
        f"steps ({steps}) x particles ({particles}) x n_train ({train}) x parameters ({dim}) "
        f"x {MUON_WEIGHT}",
    )


def memory_retrieval_work(*, query: int, patterns: int, steps: int, dim: int) -> WorkEstimate:
    """Sinkhorn-memory retrieval: per step the query against every stored point and itself,
    :data:`MEMORY_STEP_ITERATIONS` iterations. Units: 600 S q (P + q) d."""
    return WorkEstimate(
        steps * query * (patterns + query) * dim * MEMORY_STEP_ITERATIONS,
        ("query.points", "steps"),
        f"steps ({steps}) x query points ({query}) x (stored points ({patterns}) + query) "
        f"x dim ({dim}) x {MEMORY_STEP_ITERATIONS}",
    )


def memory_store_work(*, sizes: list[int], dim: int) -> WorkEstimate:
    """Storing a Sinkhorn memory: each pattern's self-potentials, a symmetric problem over its
    own points. Units: 150 Σ_k P_k² d."""
    return WorkEstimate(
        sum(n * n for n in sizes) * dim * MEMORY_STORE_ITERATIONS,
        ("patterns",),
        f"sum over patterns of points^2 (largest pattern: {max(sizes, default=0)} points) "
        f"x dim ({dim}) x {MEMORY_STORE_ITERATIONS}",
    )


def generator_fit_work(
    *, samples: int, max_steps: int, points: int, dim: int, points_field: str
) -> WorkEstimate:
    """A generator fit: each energy evaluation scores every fit sample against every point,
    at most ``max_steps`` evaluations. Units: E B n (d + 8)."""
    return WorkEstimate(
        max_steps * samples * points * (dim + GENERATOR_PAIR_UNITS),
        ("fit.samples", "fit.max_steps", points_field),
        f"fit.max_steps ({max_steps}) x fit.samples ({samples}) x points ({points}) "
        f"x (dim ({dim}) + {GENERATOR_PAIR_UNITS})",
    )


def generator_sample_work(*, n: int, points: int, dim: int) -> WorkEstimate:
    """Sampling a generator: every sample scored against every point. Units: m n (d + 8)."""
    return WorkEstimate(
        n * points * (dim + GENERATOR_PAIR_UNITS),
        ("n",),
        f"n ({n}) x points ({points}) x (dim ({dim}) + {GENERATOR_PAIR_UNITS})",
    )
