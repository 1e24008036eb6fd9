"""Generators (research/aeot.md): fit on public points or a stored release's samples, sample.

A generator is post-processing of public outputs: fitting on a release charges nothing and the
generator carries the release's certificate as provenance; a dataset's records are never used
(a ``dataset_id`` in the request is 422). Fits run as public work (sync or a job with progress
and cancellation); the fitted state is stored, so any replica can sample from it. A key sees the
generators it fitted; admins see all.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from dp_core.errors import Cancelled
from dp_core.generators import Generator, fit_generator, release_points
from service.actions.access import check_page
from service.actions.flows import as_cloud, check_points
from service.actions.outcome import Started
from service.actions.releases import get_release_body
from service.actions.work import CancelFn, ProgressFn, start_work
from service.context import ServiceContext
from service.cost import generator_fit_work, generator_sample_work
from service.errors import ApiError
from service.schemas.generators import GeneratorCreate, GeneratorSamplesRequest
from service.store import generators as store
from service.store.common import iso
from service.store.keys import KeyRecord
from service.store.ledger import get_release

__all__ = [
    "delete_generator",
    "generator_out",
    "get_generator",
    "list_generators",
    "start_fit",
    "start_sampling",
]

_CACHE_SIZE = 8
_cache: OrderedDict[str, Generator] = OrderedDict()
_cache_lock = threading.Lock()


def generator_out(record: store.GeneratorRecord) -> dict[str, Any]:
    return {
        "generator_id": record.id,
        "n_points": record.n_points,
        "dim": record.dim,
        "epsilon": record.epsilon,
        "method": record.method,
        "source": record.source,
        "fit": record.fit,
        "provenance": record.provenance,
        "charged": {"epsilon": 0.0, "delta": 0.0},
        "created_at": iso(record.created_at),
    }


def _release_points(
    ctx: ServiceContext, key: KeyRecord, release_id: str
) -> tuple[np.ndarray, dict[str, Any]]:
    """The release's samples as points (k-means centres canonically ordered) and provenance."""
    body = get_release_body(ctx, key, release_id)  # 404 unless the key may read it
    with ctx.store.read() as conn:
        found = get_release(conn, release_id)
    assert found is not None
    utility = found[0].utility
    samples = body["samples"]
    if any(isinstance(v, str) for row in samples for v in row):
        raise ApiError.invalid("release_id", "the release's samples are categories, not points")
    k = int(utility["k"]) if utility.get("family") == "kmeans" else None
    provenance = {
        "kind": "release",
        "release_id": release_id,
        "dataset_id": body["dataset_id"],
        "certificate": body["certificate"],
    }
    return release_points(samples, kmeans_k=k), provenance


def start_fit(
    ctx: ServiceContext, key: KeyRecord, body: GeneratorCreate, idem_key: str | None, digest: str
) -> Started:
    if (body.points is None) == (body.release_id is None):
        raise ApiError.invalid("points", "give exactly one of points and release_id")
    if body.points is not None:
        check_points(ctx, body.points)
        points, provenance = as_cloud(body.points, "points"), {"kind": "points"}
    else:
        assert body.release_id is not None
        points, provenance = _release_points(ctx, key, body.release_id)
    weights = None
    if body.weights is not None:
        if len(body.weights) != points.shape[0]:
            raise ApiError.invalid("weights", "needs one weight per point")
        weights = np.asarray(body.weights, dtype=np.float64)

    def work(progress: ProgressFn, cancel: CancelFn | None) -> dict[str, Any]:
        def report(fraction: float) -> None:
            progress(int(1000 * fraction), 1000)
            if cancel is not None and cancel():
                raise Cancelled("generator fit cancelled")

        generator = fit_generator(
            points,
            weights=weights,
            source=body.source,
            epsilon=body.epsilon,
            method=body.method,
            samples=body.fit.samples,
            max_steps=body.fit.max_steps,
            tolerance=body.fit.tolerance,
            seed=body.seed,
            progress=report,
        )
        with ctx.store.transaction() as conn:
            record = store.create_generator(
                conn,
                key.id,
                n_points=generator.n_points,
                dim=generator.dim,
                epsilon=generator.epsilon,
                method=generator.method,
                source=generator.source,
                fit=generator.report.to_dict(),
                provenance=provenance,
                state=generator.to_dict(compact=True),
            )
        _remember(record.id, generator)
        return generator_out(record)

    return start_work(
        ctx,
        key,
        "generator_fit",
        work,
        estimate=generator_fit_work(
            samples=body.fit.samples,
            max_steps=body.fit.max_steps,
            points=points.shape[0],
            dim=points.shape[1],
            points_field="points" if body.points is not None else "release_id",
        ),
        status=201,
        run_async=body.run_async,
        idem_key=idem_key,
        digest=digest,
    )


def _remember(generator_id: str, generator: Generator) -> None:
    with _cache_lock:
        _cache[generator_id] = generator
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)


def _visible(ctx: ServiceContext, key: KeyRecord, generator_id: str) -> store.GeneratorRecord:
    with ctx.store.read() as conn:
        record = store.get_generator(conn, generator_id)
    if record is None or (key.role != "admin" and record.key_id != key.id):
        raise ApiError(404, "not_found", f"No generator with id {generator_id!r}.")
    return record


def get_generator(ctx: ServiceContext, key: KeyRecord, generator_id: str) -> dict[str, Any]:
    return generator_out(_visible(ctx, key, generator_id))


def list_generators(
    ctx: ServiceContext, key: KeyRecord, limit: int, cursor: str | None
) -> dict[str, Any]:
    check_page(limit, cursor)
    with ctx.store.read() as conn:
        rows, next_cursor = store.list_generators(
            conn, None if key.role == "admin" else key.id, limit, cursor
        )
    return {"items": [generator_out(r) for r in rows], "next_cursor": next_cursor}


def delete_generator(ctx: ServiceContext, key: KeyRecord, generator_id: str) -> None:
    _visible(ctx, key, generator_id)
    with ctx.store.transaction() as conn:
        store.delete_generator(conn, generator_id)
    with _cache_lock:
        _cache.pop(generator_id, None)


def start_sampling(
    ctx: ServiceContext,
    key: KeyRecord,
    body: GeneratorSamplesRequest,
    idem_key: str | None,
    digest: str,
    *,
    generator_id: str,
) -> Started:
    """``n`` samples from the generator's map; the same seed gives the same samples."""
    record = _visible(ctx, key, generator_id)
    if body.n * record.dim > ctx.settings.max_points:
        raise ApiError(
            413, "too_large", f"n x dim may be at most {ctx.settings.max_points} per request."
        )
    with _cache_lock:
        generator = _cache.get(generator_id)
    if generator is None:
        generator = Generator.from_dict(record.state)
        _remember(generator_id, generator)

    def work(progress: ProgressFn, cancel: CancelFn | None) -> dict[str, Any]:
        samples = generator.sample(body.n, body.seed)
        return {"generator_id": generator_id, "seed": body.seed, "samples": samples.tolist()}

    estimate = generator_sample_work(n=body.n, points=record.n_points, dim=record.dim)
    return start_work(
        ctx, key, "generator_sample", work, estimate=estimate, idem_key=idem_key, digest=digest
    )
