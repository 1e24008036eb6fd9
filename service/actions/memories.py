"""Sinkhorn associative memories: store patterns, retrieve from a query (flows note §4).

``POST /v1/memories`` validates the patterns by building the memory once (its self-potentials
are solved there, so a bad pattern is 422) and stores them; the build is public work admitted
like a retrieval (``service.actions.work.admit``: work estimate, compute lane, per-key share,
deadline). Retrieval rebuilds the memory from the store (kept in a small per-process cache)
and runs in the worker pool. A key reads the memories it created; admins read all.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from dp_core.flows.sinkhorn_memory import DEFAULT_STEP_SIZE, DEFAULT_STEPS, SinkhornMemory
from service.actions.flows import as_cloud, check_points
from service.actions.outcome import Started
from service.actions.work import CancelFn, ProgressFn, start_work
from service.context import ServiceContext
from service.cost import memory_retrieval_work, memory_store_work
from service.errors import ApiError
from service.schemas.flows import MemoryCreate, MemoryRetrieve, WeightedPoints
from service.store import memories as store
from service.store.keys import KeyRecord

__all__ = ["start_create", "start_retrieval"]

_CACHE_SIZE = 16
_cache: OrderedDict[str, SinkhornMemory] = OrderedDict()
_cache_lock = threading.Lock()


def _measure(cloud: WeightedPoints, field: str) -> tuple[np.ndarray, np.ndarray | None]:
    points = as_cloud(cloud.points, f"{field}.points")
    if cloud.weights is None:
        return points, None
    if len(cloud.weights) != points.shape[0]:
        raise ApiError.invalid(f"{field}.weights", "needs one weight per point")
    return points, np.asarray(cloud.weights, dtype=np.float64)


def _check_dims(patterns: list[tuple[np.ndarray, np.ndarray | None]]) -> int:
    dims = {p.shape[1] for p, _ in patterns}
    if len(dims) != 1:
        raise ApiError.invalid("patterns", "all patterns must have the same dimension")
    return dims.pop()


def _build(
    patterns: list[tuple[np.ndarray, np.ndarray | None]], blur: float, beta: float
) -> SinkhornMemory:
    _check_dims(patterns)
    return SinkhornMemory.store(patterns, blur, beta)


def start_create(
    ctx: ServiceContext,
    key: KeyRecord,
    body: MemoryCreate,
    idem_key: str | None = None,
    digest: str = "",
) -> Started:
    """Build and store a memory (201); a retry with the same ``Idempotency-Key`` returns the
    first answer and stores nothing more. Bad input is 422 before admission; a pattern the
    solver refuses is 422 from the run (``InvalidParameter``)."""
    check_points(ctx, *(p.points for p in body.patterns))
    clouds = [_measure(p, f"patterns[{k}]") for k, p in enumerate(body.patterns)]
    dim = _check_dims(clouds)
    estimate = memory_store_work(sizes=[points.shape[0] for points, _ in clouds], dim=dim)

    def work(progress: ProgressFn, cancel: CancelFn | None) -> dict[str, Any]:
        memory = SinkhornMemory.store(clouds, body.blur, body.beta)
        with ctx.store.transaction() as conn:
            record = store.create_memory(
                conn,
                key.id,
                [p.model_dump() for p in body.patterns],
                body.blur,
                body.beta,
                memory.dim,
            )
        with _cache_lock:
            _cache[record.id] = memory
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
        return {"memory_id": record.id, "n_patterns": record.n_patterns}

    return start_work(
        ctx,
        key,
        "sinkhorn_memory_store",
        work,
        estimate=estimate,
        status=201,
        idem_key=idem_key,
        digest=digest,
    )


def _memory(ctx: ServiceContext, key: KeyRecord, memory_id: str) -> SinkhornMemory:
    with _cache_lock:
        cached = _cache.get(memory_id)
    with ctx.store.read() as conn:
        record = store.get_memory(conn, memory_id)
    if record is None or (key.role != "admin" and record.key_id != key.id):
        raise ApiError(404, "not_found", f"No memory with id {memory_id!r}.")
    if cached is not None:
        return cached
    clouds = [
        _measure(WeightedPoints.model_validate(p), f"patterns[{k}]")
        for k, p in enumerate(record.patterns)
    ]
    memory = _build(clouds, record.blur, record.beta)
    with _cache_lock:
        _cache[memory_id] = memory
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return memory


def start_retrieval(
    ctx: ServiceContext,
    key: KeyRecord,
    body: MemoryRetrieve,
    idem_key: str | None,
    digest: str,
    *,
    memory_id: str,
) -> Started:
    check_points(ctx, body.query.points)
    memory = _memory(ctx, key, memory_id)
    query, weights = _measure(body.query, "query")
    if query.shape[1] != memory.dim:
        raise ApiError.invalid("query.points", f"points must have {memory.dim} coordinates")
    steps = DEFAULT_STEPS if body.steps is None else body.steps

    def work(progress: ProgressFn, cancel: CancelFn | None) -> dict[str, Any]:
        start = time.perf_counter()
        result = memory.retrieve(
            query,
            weights,
            steps=steps,
            step_size=body.step_size or DEFAULT_STEP_SIZE,
            weight_step=body.weight_step,
            progress=progress,
            cancel=cancel,
        )
        return {
            "points": result.points.tolist(),
            "weights": result.weights.tolist(),
            "nearest_pattern": int(result.nearest_pattern),
            "divergences": result.divergences.tolist(),
            "energy_trace": [float(e) for e in result.energy_trace],
            "converged": [bool(c) for c in result.converged],
            "warnings": list(result.warnings),
            "seconds": time.perf_counter() - start,
        }

    return start_work(
        ctx,
        key,
        "sinkhorn_memory",
        work,
        estimate=memory_retrieval_work(
            query=query.shape[0], patterns=memory.points.shape[0], steps=steps, dim=memory.dim
        ),
        run_async=body.run_async,
        idem_key=idem_key,
        digest=digest,
        particle_steps=query.shape[0] * steps,
    )
