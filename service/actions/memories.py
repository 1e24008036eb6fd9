"""Sinkhorn associative memories: store patterns, retrieve from a query (flows note §4).

``POST /v1/memories`` validates the patterns by building the memory once (its self-potentials
are solved there, so a bad pattern is 422 at once) and stores them; retrieval rebuilds the
memory from the store (kept in a small per-process cache) and runs in the worker pool.
A key reads the memories it created; admins read all.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from dp_core.flows.sinkhorn_memory import DEFAULT_STEP_SIZE, DEFAULT_STEPS, SinkhornMemory
from service.actions.flows import as_cloud, check_points
from service.actions.outcome import Outcome, Started
from service.actions.work import CancelFn, ProgressFn, replay_or_conflict, start_work
from service.context import ServiceContext
from service.errors import ApiError
from service.schemas.flows import MemoryCreate, MemoryRetrieve, WeightedPoints
from service.store import idempotency
from service.store import memories as store
from service.store.keys import KeyRecord

__all__ = ["create_memory", "start_retrieval"]

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


def _build(
    patterns: list[tuple[np.ndarray, np.ndarray | None]], blur: float, beta: float
) -> SinkhornMemory:
    dims = {p.shape[1] for p, _ in patterns}
    if len(dims) != 1:
        raise ApiError.invalid("patterns", "all patterns must have the same dimension")
    return SinkhornMemory.store(patterns, blur, beta)


def create_memory(
    ctx: ServiceContext,
    key: KeyRecord,
    body: MemoryCreate,
    idem_key: str | None = None,
    digest: str = "",
) -> Outcome:
    """Store a memory (201); a retry with the same ``Idempotency-Key`` returns the first answer
    and stores nothing more."""
    check_points(ctx, *(p.points for p in body.patterns))
    if idem_key is not None:
        with ctx.store.read() as conn:
            seen = idempotency.lookup(conn, key.id, idem_key)
        if seen is not None:
            return replay_or_conflict(seen, digest)
    clouds = [_measure(p, f"patterns[{k}]") for k, p in enumerate(body.patterns)]
    memory = _build(clouds, body.blur, body.beta)  # InvalidParameter -> 422
    with ctx.store.transaction() as conn:
        if idem_key is not None and (seen := idempotency.lookup(conn, key.id, idem_key)):
            return replay_or_conflict(seen, digest)  # a concurrent twin stored it first
        record = store.create_memory(
            conn,
            key.id,
            [p.model_dump() for p in body.patterns],
            body.blur,
            body.beta,
            memory.dim,
        )
        answer = {"memory_id": record.id, "n_patterns": record.n_patterns}
        if idem_key is not None:
            idempotency.record(conn, key.id, idem_key, digest, status_code=201, response=answer)
    with _cache_lock:
        _cache[record.id] = memory
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return Outcome(201, answer)


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
            "seconds": time.perf_counter() - start,
        }

    return start_work(
        ctx,
        key,
        "sinkhorn_memory",
        work,
        run_async=body.run_async,
        idem_key=idem_key,
        digest=digest,
        particle_steps=query.shape[0] * steps,
    )
