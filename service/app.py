"""The application factory: builds the FastAPI app, its metrics, readiness and lifespan.

``create_app(settings)`` builds everything an app needs and keeps it on ``app.state``
(``settings``, ``metrics``, ``readiness``); nothing is created at import. The lifespan starts a
daemon thread that compiles every Numba kernel signature the service uses
(``dp_core.engine.warm``); ``/readyz`` answers 503 until it is done, so no request pays for JIT.
"""

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI

from service.api import ROUTERS
from service.api.health import KernelState, Readiness
from service.metrics import Metrics, MetricsMiddleware, build_metrics
from service.settings import Settings

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


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

    app = FastAPI(title="privflow", version=_package_version(), lifespan=_lifespan)
    app.state.settings = settings
    app.state.metrics = build_metrics()
    app.state.readiness = readiness
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if settings.warm_on_startup:
        threading.Thread(
            target=_warm_kernels,
            args=(app.state.readiness, app.state.metrics),
            name="privflow-warm-kernels",
            daemon=True,  # warm() cannot be interrupted; never hold up shutdown for it
        ).start()
    else:
        logger.info("kernel warm-up skipped (warm_on_startup is false); ready at once")
    yield


def _warm_kernels(readiness: Readiness, metrics: Metrics) -> None:
    """Compile every served kernel signature, then mark the app ready; on error stay not ready."""
    try:
        from dp_core import engine  # imports Numba: kept off the import path of the app

        report = engine.warm()
    except Exception:
        readiness.kernels = KernelState.FAILED
        logger.exception("kernel warm-up failed; /readyz stays 503")
        return
    metrics.kernel_warm_seconds.set(report.seconds)
    metrics.kernels_ready.set(1)
    readiness.kernels = KernelState.READY
    logger.info("compiled %d kernel signatures in %.1f s; ready", report.signatures, report.seconds)


def _package_version() -> str:
    try:
        return version("privflow")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
