"""Flow actions: MMD and DrMMD flows on caller-supplied (public) point clouds, and the Muon
particle flow on a public student–teacher task.

Each request becomes a :data:`~service.actions.work.WorkFn` run in the worker pool by
:func:`~service.actions.work.start_work`, synchronously or as a job. Inputs are public, so the
answer carries the trace, the seed actually used (a fresh one when none was sent) and timings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from dp_core.errors import NumericalFailure
from dp_core.flows.base import RunResult
from dp_core.flows.drmmd import DEFAULT_LAMBDA, run_drmmd_flow
from dp_core.flows.mmd import run_mmd_flow
from dp_core.flows.muon import run_muon_flow
from dp_core.flows.student_teacher import StudentTeacherTask
from dp_core.flows.witness import NoiseSchedule
from service.actions.outcome import Started
from service.actions.work import CancelFn, ProgressFn, start_work
from service.context import ServiceContext
from service.cost import WorkEstimate, drmmd_work, mmd_work, muon_work
from service.errors import ApiError
from service.schemas.flows import DrMMDRequest, FlowOptions, MMDRequest, MuonRequest
from service.store.keys import KeyRecord

__all__ = [
    "DEFAULT_MMD_STEP",
    "as_cloud",
    "check_points",
    "flow_answer",
    "start_drmmd",
    "start_mmd",
    "start_muon",
    "trace_every",
]

DEFAULT_MMD_STEP = 0.1
"""γ of (F 7) when the request names none."""
DEFAULT_DRMMD_STEP = 1.0
"""s of (F 13) when the request names none (γ = λ s)."""
TRACE_ROWS = 50


def as_cloud(points: list[list[float]], field: str) -> np.ndarray:
    """A (n, d) float64 array; 422 naming ``field`` when rows differ in length."""
    width = len(points[0])
    for i, row in enumerate(points):
        if len(row) != width:
            raise ApiError.invalid(f"{field}[{i}]", f"expected {width} coordinates like row 0")
    return np.ascontiguousarray(points, dtype=np.float64)


def check_points(ctx: ServiceContext, *clouds: list[list[float]]) -> None:
    """413 when the request carries more points than the ``max_points`` setting."""
    total = sum(len(c) for c in clouds)
    if total > ctx.settings.max_points:
        raise ApiError(413, "too_large", f"At most {ctx.settings.max_points} points per request.")


def trace_every(options: FlowOptions) -> int:
    return options.record_every or max(1, options.steps // TRACE_ROWS)


def flow_answer(run: RunResult[Any], seconds: float) -> dict[str, Any]:
    """API.md's flow result: particles, trace, seconds, plus the seed and run description.

    JSON has no NaN or infinity: a result holding one fails here, inside the work (500
    ``internal``, the job marked failed), not later while the response is being encoded.
    """
    description = run.description.as_dict()
    particles = np.asarray(run.particles)
    if not (np.isfinite(particles).all() and _all_finite([run.trace, description])):
        raise NumericalFailure("the flow's result holds a non-finite number")
    return {
        "particles": particles.tolist(),
        "trace": run.trace,
        "seconds": seconds,
        "seed": description.get("seed"),
        "description": description,
    }


def _all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_all_finite(v) for v in value)
    return True


FlowRunner = Callable[[np.ndarray, np.ndarray, ProgressFn, CancelFn | None], RunResult[Any]]


def _start_pair_flow(
    ctx: ServiceContext,
    key: KeyRecord,
    kind: str,
    body: MMDRequest | DrMMDRequest,
    run: FlowRunner,
    idem_key: str | None,
    digest: str,
) -> Started:
    """Validate a source/target request and submit ``run(source, target, progress, cancel)``."""
    check_points(ctx, body.source, body.target)
    source, target = as_cloud(body.source, "source"), as_cloud(body.target, "target")
    if source.shape[1] != target.shape[1]:
        raise ApiError.invalid("target", "source and target points must have the same dimension")
    estimate_fn = drmmd_work if kind == "drmmd" else mmd_work
    estimate: WorkEstimate = estimate_fn(
        source=source.shape[0], target=target.shape[0], steps=body.steps, dim=source.shape[1]
    )

    def work(progress: ProgressFn, cancel: CancelFn | None) -> dict[str, Any]:
        start = time.perf_counter()
        result = run(source, target, progress, cancel)
        return flow_answer(result, time.perf_counter() - start)

    return start_work(
        ctx,
        key,
        kind,
        work,
        estimate=estimate,
        run_async=body.run_async,
        idem_key=idem_key,
        digest=digest,
        particle_steps=source.shape[0] * body.steps,
    )


def start_mmd(
    ctx: ServiceContext, key: KeyRecord, body: MMDRequest, idem_key: str | None, digest: str
) -> Started:
    """The MMD flow (F 7) with noise level β = ``noise_level`` (authors' halving schedule)."""

    def run(
        source: np.ndarray, target: np.ndarray, progress: ProgressFn, cancel: CancelFn | None
    ) -> RunResult[Any]:
        return run_mmd_flow(
            source,
            target,
            step_size=body.step_size or DEFAULT_MMD_STEP,
            n_steps=body.steps,
            kernel=body.kernel.name,
            bandwidth=body.kernel.bandwidth,
            noise=NoiseSchedule(level=body.noise_level),
            seed=body.seed,
            progress=progress,
            cancel=cancel,
            trace_every=trace_every(body),
        )

    return _start_pair_flow(ctx, key, "mmd", body, run, idem_key, digest)


def start_drmmd(
    ctx: ServiceContext, key: KeyRecord, body: DrMMDRequest, idem_key: str | None, digest: str
) -> Started:
    """The DrMMD flow (F 12)-(F 14); ``"lambda": "adaptive"`` is the schedule (F 14) from λ₀ =
    ``DEFAULT_LAMBDA``."""
    adaptive = body.lambda_ == "adaptive"
    lmbda = DEFAULT_LAMBDA if adaptive else float(body.lambda_)

    def run(
        source: np.ndarray, target: np.ndarray, progress: ProgressFn, cancel: CancelFn | None
    ) -> RunResult[Any]:
        return run_drmmd_flow(
            source,
            target,
            step_size=body.step_size or DEFAULT_DRMMD_STEP,
            n_steps=body.steps,
            lmbda=lmbda,
            adaptive=adaptive,
            kernel=body.kernel.name,
            bandwidth=body.kernel.bandwidth,
            seed=body.seed,
            progress=progress,
            cancel=cancel,
            trace_every=trace_every(body),
        )

    return _start_pair_flow(ctx, key, "drmmd", body, run, idem_key, digest)


DEFAULT_MUON_STEP = 0.02
"""η of (F 25) when the request names none (Keller Jordan's Muon learning rate)."""


def start_muon(
    ctx: ServiceContext, key: KeyRecord, body: MuonRequest, idem_key: str | None, digest: str
) -> Started:
    """Regularised (or standard Newton–Schulz) Muon on the student–teacher task; trace rows hold
    ``loss`` and ``hamiltonian`` (F 27) with γ = (1 − β)/η."""
    spec = body.task
    task = StudentTeacherTask(
        input_dim=spec.input_dim,
        hidden=spec.hidden,
        teachers=spec.teachers,
        n_train=spec.n_train,
        n_valid=1,
        batch_size=spec.n_train,
        output=spec.output,
        data_seed=spec.data_seed,
    )
    lr = body.step_size or DEFAULT_MUON_STEP
    if not math.isfinite((1.0 - body.momentum) / lr):
        raise ApiError.invalid(
            "step_size", "is too small: the momentum rate (1 - momentum) / step_size overflows"
        )
    cells = body.particles * task.dim
    if cells > ctx.settings.max_points:
        raise ApiError(
            413, "too_large", f"particles x dim may be at most {ctx.settings.max_points}."
        )

    def work(progress: ProgressFn, cancel: CancelFn | None) -> dict[str, Any]:
        start = time.perf_counter()
        result = run_muon_flow(
            task,
            n_particles=body.particles,
            n_steps=body.steps,
            lr=lr,
            momentum=body.momentum,
            eps=body.regularization,
            update=body.update,
            seed=body.seed,
            progress=progress,
            cancel=cancel,
            trace_every=trace_every(body),
        )
        return flow_answer(result, time.perf_counter() - start)

    return start_work(
        ctx,
        key,
        "muon",
        work,
        estimate=muon_work(
            particles=body.particles, steps=body.steps, train=spec.n_train, dim=task.dim
        ),
        run_async=body.run_async,
        idem_key=idem_key,
        digest=digest,
        particle_steps=body.particles * body.steps,
    )
