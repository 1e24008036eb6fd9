"""The application factory: builds the FastAPI app, its context, metrics, readiness and lifespan.

``create_app(settings)`` builds everything an app needs and keeps it on ``app.state``
(``settings``, ``ctx``, ``metrics``, ``readiness``); nothing is created at import. The lifespan
migrates the store and registers the bootstrap admin key (the store is then ready: ``/readyz``
answers 200), marks runs orphaned by a dead process ``aborted``, starts the lease sweeper and a
daemon thread that compiles the Numba kernels family by family in the background
(``dp_core.engine.warm_family``, in the order of ``dp_core.engine.SIGNATURES``), logging each
family's compile time and pausing between families while work is running. A request that calls
a kernel not compiled yet compiles that kernel itself (Numba compiles lazily; its global
compiler lock lets it wait at most for the one kernel the background thread is compiling), so
it never waits for the other families (docs/service.md, "Start-up and kernel compilation").
"""

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.api import ROUTERS
from service.api.health import KernelState, Readiness
from service.auth import authenticate
from service.context import ServiceContext
from service.dashboard import router as dashboard_router
from service.errors import PROBLEM_MEDIA_TYPE, install_error_handlers
from service.jobs import JobPool
from service.limits import BodyLimits, RequestGate
from service.logs import route_warnings
from service.metrics import BudgetCollector, Metrics, MetricsMiddleware, build_metrics
from service.schemas.problem import Problem
from service.settings import Settings
from service.store.db import Store
from service.store.keys import ensure_bootstrap_admin
from service.store.leases import heartbeat_own, sweep_orphans
from service.store.ledger import list_budgets

__all__ = ["create_app"]

_T = TypeVar("_T")

logger = logging.getLogger(__name__)

STORE_CONNECT_SECONDS = 60.0
WARM_THREAD_NAME = "privflow-warm-kernels"
WARM_YIELD_SECONDS = 60.0
"""Longest the background compilation waits for running work before its next family."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build a privflow app.

    Parameters
    ----------
    settings
        Process settings; ``Settings()`` (read from ``PRIVFLOW_*``) when omitted, which is how
        ``uvicorn --factory`` calls it.
    """
    settings = settings if settings is not None else Settings()
    readiness = Readiness()
    if not settings.warm_on_startup:
        readiness.kernels = KernelState.SKIPPED

    docs = settings.openapi_enabled  # off: /openapi.json, /docs and /redoc are 404
    app = FastAPI(
        title="privflow",
        version=_package_version(),
        lifespan=_lifespan,
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    metrics = build_metrics(dataset_labels=settings.metrics_dataset_labels)
    store = Store(settings.database_url)
    pool = JobPool(
        settings.job_workers,
        settings.job_queue,
        compute_workers=settings.compute_workers,
        compute_capacity=settings.compute_queue,
        per_key=settings.max_jobs_per_key,
    )
    metrics.queue_depth.set_function(lambda: pool.depth)
    metrics.registry.register(
        BudgetCollector(lambda: _read_budgets(store, readiness), settings.metrics_dataset_labels)
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.readiness = readiness
    app.state.ctx = ServiceContext(settings=settings, store=store, pool=pool, metrics=metrics)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(dashboard_router)
    install_error_handlers(app)
    app.add_middleware(
        RequestGate,
        authenticate=lambda authorization: authenticate(store, authorization),
        limits=BodyLimits(
            dataset_bytes=settings.max_body_bytes,
            request_bytes=min(settings.max_request_bytes, settings.max_body_bytes),
        ),
        on_refusal=lambda code: metrics.refusals.labels(code).inc(),
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    ctx: ServiceContext = app.state.ctx
    route_warnings()  # opacus/torch warnings become JSON log lines, not raw stderr text
    _open_store(ctx)
    app.state.readiness.store = True
    stop = threading.Event()
    threading.Thread(
        target=_sweep_forever, args=(ctx, stop), name="privflow-lease-sweeper", daemon=True
    ).start()
    if settings.warm_on_startup:
        threading.Thread(
            target=_warm_kernels,
            args=(app.state.readiness, app.state.metrics, ctx.pool, stop),
            name=WARM_THREAD_NAME,
            daemon=True,  # a family cannot be interrupted; never hold up shutdown for it
        ).start()
        logger.info("ready; compiling the kernels in the background, family by family")
    else:
        logger.info("kernel warm-up skipped (warm_on_startup is false); kernels compile on use")
    try:
        yield
    finally:
        stop.set()
        ctx.pool.shutdown()
        ctx.store.dispose()


def _open_store(ctx: ServiceContext) -> None:
    """Migrate, register the bootstrap admin and sweep orphans; retry while the DB starts."""
    deadline = time.monotonic() + STORE_CONNECT_SECONDS
    while True:
        try:
            ctx.store.migrate()
            with ctx.store.transaction() as conn:
                if ctx.settings.admin_key is not None:
                    ensure_bootstrap_admin(conn, ctx.settings.admin_key.get_secret_value())
                aborted = sweep_orphans(conn, ctx.settings.lease_seconds)
            break
        except Exception as exc:
            if time.monotonic() > deadline:
                raise
            logger.warning("store not ready; retrying", extra={"error_type": type(exc).__name__})
            time.sleep(1.0)
    if aborted:
        logger.warning("marked orphaned runs aborted", extra={"count": aborted})
    logger.info("store ready", extra={"backend": ctx.store.dialect})


def _sweep_forever(ctx: ServiceContext, stop: threading.Event) -> None:
    """Renew this process's leases and mark other processes' orphans, every lease / 4."""
    period = min(max(ctx.settings.lease_seconds / 4.0, 0.25), 30.0)
    while not stop.wait(period):
        try:
            with ctx.store.transaction() as conn:
                heartbeat_own(conn)
                sweep_orphans(conn, ctx.settings.lease_seconds)
        except Exception as exc:
            logger.warning("lease sweep failed", extra={"error_type": type(exc).__name__})


def _read_budgets(store: Store, readiness: Readiness) -> list[tuple[str, dict[str, Any]]]:
    if not readiness.store:
        return []
    with store.read() as conn:
        return list_budgets(conn)


def _warm_kernels(
    readiness: Readiness, metrics: Metrics, pool: JobPool, stop: threading.Event
) -> None:
    """Compile every served kernel family in the background; on error mark warm-up failed."""
    start = time.perf_counter()
    try:
        # The certificates' (ε, δ) conversion needs opacus (it imports torch: ~5 s). It is
        # imported lazily inside dp_core.privacy.accounting, under a lock that a release
        # importing it at the same time shares, so import it here first, the same way.
        from dp_core.privacy.accounting import preload_opacus

        _once_more_on_error(preload_opacus, "the accounting import")
        logger.info("imported the accounting library in %.1f s", time.perf_counter() - start)
        from dp_core import engine  # imports Numba: kept off the import path of the app

        for name in engine.SIGNATURES:
            _wait_while_busy(pool, stop)
            if stop.is_set():
                return
            report = _once_more_on_error(partial(engine.warm_family, name), f"family {name}")
            logger.info(
                "kernel family %s ready: %d signatures in %.1f s",
                report.family,
                report.signatures,
                report.seconds,
                extra={"family": report.family, "seconds": round(report.seconds, 3)},
            )
    except Exception:
        readiness.kernels = KernelState.FAILED
        logger.exception("kernel warm-up failed; /readyz answers 503")
        return
    seconds = time.perf_counter() - start
    metrics.kernel_warm_seconds.set(seconds)
    metrics.kernels_ready.set(1)
    readiness.kernels = KernelState.READY
    logger.info("every kernel family compiled in %.1f s", seconds)


def _once_more_on_error(step: Callable[[], _T], what: str) -> _T:
    """Run ``step``; after an error (e.g. an import racing one in a request thread) log it and
    run it once more, so a transient failure does not leave ``/readyz`` at 503."""
    try:
        return step()
    except Exception as exc:
        logger.warning(
            "kernel warm-up: %s failed; trying once more",
            what,
            extra={"error_type": type(exc).__name__},
        )
        time.sleep(1.0)
        return step()


def _wait_while_busy(pool: JobPool, stop: threading.Event) -> None:
    """Hold the next family back while work runs (at most ``WARM_YIELD_SECONDS``), so that a
    request compiling its own kernels does not queue behind the background thread."""
    deadline = time.monotonic() + WARM_YIELD_SECONDS
    while pool.depth > 0 and time.monotonic() < deadline and not stop.wait(0.1):
        pass


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with every error response as problem+json (API.md conventions)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem_schema.pop("$defs", {}))
    components["Problem"] = problem_schema
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            if "422" in responses:
                responses["422"] = {
                    "description": "Invalid request (invalid_request, idempotency_conflict)",
                    "content": problem,
                }
    app.openapi_schema = schema
    return schema


def _package_version() -> str:
    try:
        return version("privflow")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
