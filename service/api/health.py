"""Health surface: ``/healthz``, ``/readyz`` and ``/metrics``, and the Readiness record they report.

``create_app`` puts a ``Readiness`` on ``app.state.readiness``; the lifespan and the kernel
warm-up thread write it and ``/readyz`` reads it. ``/readyz`` answers 200 once the store answers,
while the kernels still compile in the background (a request compiles what it calls and is not
yet compiled), and an RFC 9457 problem (code ``not_ready``) before, or when warm-up failed.
``/healthz`` and ``/readyz`` are open (probes); ``/metrics`` is for the operator only
(ARCHITECTURE.md, privacy rule 3): it needs an admin key or the scrape token of the setting
``metrics_key`` (401 without either, 403 for an analyst key).
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from service.api._body import JsonBodyRoute
from service.api._common import problems
from service.deps import MetricsReader
from service.metrics import render_metrics

__all__ = ["KernelState", "Readiness", "router"]

PROBLEM_MEDIA_TYPE = "application/problem+json"


class KernelState(StrEnum):
    """Where kernel warm-up stands."""

    WARMING = "warming"  # compiling (or loading from the Numba cache) in the background
    READY = "ready"  # every served signature is compiled
    SKIPPED = "skipped"  # warm_on_startup is false: kernels compile on first use
    FAILED = "failed"  # warm-up raised; the error is in the log and /readyz answers 503


_NOT_READY_DETAIL = {
    KernelState.FAILED: "Numerical kernel warm-up failed; see the service log.",
    "store": "The database is not answering (or not migrated yet); retry shortly.",
}


@dataclass(slots=True)
class Readiness:
    """What ``/readyz`` reports. One thread (warm-up) writes ``kernels``; requests only read it.

    Ready once the store is: kernels compiling in the background do not hold readiness back.
    """

    kernels: KernelState = KernelState.WARMING
    store: bool = False  # migrations applied and the bootstrap admin registered

    @property
    def ready(self) -> bool:
        return self.store and self.kernels is not KernelState.FAILED


def _not_ready_problem(state: KernelState | str) -> dict[str, Any]:
    return {
        "type": "/errors/not_ready",
        "title": "Service not ready",
        "status": 503,
        "detail": _NOT_READY_DETAIL[state],
        "code": "not_ready",
    }


router = APIRouter(route_class=JsonBodyRoute, tags=["health"])


@router.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database answers (kernels compile in the background)",
    response_class=JSONResponse,
    responses={
        200: {"content": {"application/json": {"example": {"status": "ready"}}}},
        503: {
            "description": "Not ready yet (or kernel warm-up failed)",
            "content": {PROBLEM_MEDIA_TYPE: {"example": _not_ready_problem("store")}},
        },
    },
)
async def readyz(request: Request) -> JSONResponse:
    readiness: Readiness = request.app.state.readiness
    store_answers = readiness.store and await run_in_threadpool(_store_answers, request)
    if store_answers and readiness.ready:
        return JSONResponse({"status": "ready"})
    problem = _not_ready_problem("store" if not store_answers else readiness.kernels)
    return JSONResponse(problem, status_code=503, media_type=PROBLEM_MEDIA_TYPE)


def _store_answers(request: Request) -> bool:
    try:
        request.app.state.ctx.store.ping()
    except Exception:
        return False
    return True


@router.get(
    "/metrics",
    summary="Prometheus exposition of this process's metrics (admin key or scrape token)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **problems(401, 403)},
)
async def metrics(request: Request, _: MetricsReader) -> Response:
    body, content_type = render_metrics(request.app.state.metrics, request.headers.get("accept"))
    return Response(body, media_type=content_type)
