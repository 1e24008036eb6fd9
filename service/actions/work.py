"""Public work — flows, memories, generators: no budget, seeds allowed, run in the worker pool.

:func:`start_work` takes a worker slot (429 ``overloaded`` with Retry-After when none is free),
honours ``Idempotency-Key`` (a retry gets the first answer; another body is 422
``idempotency_conflict``) and either returns a future of the answer (synchronous call) or
creates a job row and answers 202 ``{"job_id"}``; the job then reports progress, can be
cancelled between steps, and ends with the same object the synchronous call returns.
Errors inside the work: ``InvalidParameter`` is 422 naming its field (inputs are public here),
anything else a fixed 500 ``internal`` body with only the exception type in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from dp_core.errors import Cancelled, InvalidParameter
from service.actions.outcome import Outcome, Started
from service.context import ServiceContext
from service.errors import ApiError, problem_body
from service.store import idempotency, jobs
from service.store.jobs import CANCELLED_PROBLEM
from service.store.keys import KeyRecord
from service.store.leases import RUNNER
from service.store.ledger import get_release

__all__ = [
    "JobHooks",
    "ProgressFn",
    "WorkFn",
    "overloaded",
    "replay_or_conflict",
    "start_work",
    "wait_for_answer",
]

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]
WorkFn = Callable[[ProgressFn, CancelFn | None], dict[str, Any]]
"""Runs the computation; calls ``progress(done, total)`` and stops when ``cancel()`` is True."""

PROGRESS_SECONDS = 1.0
CANCEL_POLL_SECONDS = 0.5


def overloaded(ctx: ServiceContext) -> ApiError:
    return ApiError(
        429,
        "overloaded",
        "The work queue is full; retry later.",
        headers={"Retry-After": str(ctx.pool.retry_after())},
    )


def start_work(
    ctx: ServiceContext,
    key: KeyRecord,
    kind: str,
    work: WorkFn,
    *,
    status: int = 200,
    run_async: bool = False,
    idem_key: str | None = None,
    digest: str = "",
    particle_steps: int = 0,
) -> Started:
    """Submit ``work``; see the module docstring. ``status`` is the synchronous success code."""
    slot = ctx.pool.try_acquire()
    if slot is None:
        raise overloaded(ctx)
    try:
        job_id = None
        with ctx.store.transaction() as conn:
            if idem_key is not None:
                seen = idempotency.lookup(conn, key.id, idem_key)
                if seen is not None:
                    slot.release()
                    outcome = replay_or_conflict(seen, digest)
                    return Started(outcome=outcome) if outcome else Started(replay=True)
            if run_async:
                job_id = jobs.create_job(conn, key.id, kind, RUNNER)
            accepted = Outcome(202, {"job_id": job_id}) if job_id is not None else None
            if idem_key is not None:
                idempotency.record(
                    conn,
                    key.id,
                    idem_key,
                    digest,
                    status_code=accepted.status if accepted else None,
                    response=accepted.body if accepted else None,
                )
    except BaseException:
        slot.release()
        raise
    run = _WorkRun(ctx, kind, work, status, job_id, idem_key, key.id, particle_steps)
    future = ctx.pool.submit(slot, run)
    return Started(outcome=accepted) if accepted is not None else Started(future=future)


def replay_or_conflict(seen: idempotency.IdempotencyRecord, digest: str) -> Outcome | None:
    """The stored answer for a retried request (None while the first is still running); 422
    ``idempotency_conflict`` when the key came with another body."""
    if seen.request_hash != digest:
        raise ApiError(
            422, "idempotency_conflict", "This Idempotency-Key was used with a different request."
        )
    if seen.status_code is not None and seen.response is not None:
        return Outcome(seen.status_code, seen.response)
    return None


def wait_for_answer(ctx: ServiceContext, key: KeyRecord, idem_key: str, timeout: float) -> Outcome:
    """The answer of the first request with ``idem_key`` once it has one (else 429 at timeout).

    A release whose run ended without an answer (its process died: the entry is ``aborted``)
    is answered 500 ``internal``; its charge stands.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with ctx.store.read() as conn:
            seen = idempotency.lookup(conn, key.id, idem_key)
            found = get_release(conn, seen.release_id) if seen and seen.release_id else None
        if seen is not None and seen.status_code is not None and seen.response is not None:
            return Outcome(seen.status_code, seen.response)
        if found is not None and found[0].status in ("aborted", "failed", "cancelled"):
            return Outcome(500, _ABANDONED)
        time.sleep(0.1)
    return Outcome(
        429,
        problem_body(429, "overloaded", "The first request with this key is still running."),
        {"Retry-After": "5"},
    )


class JobHooks:
    """A job's link to its row: start it, report progress (at most once a second) and poll
    the cancellation flag (at most every half second). Without a job id, every hook is a
    no-op, so synchronous work runs to the end."""

    def __init__(self, ctx: ServiceContext, job_id: str | None) -> None:
        self.ctx, self.job_id = ctx, job_id
        self._last_progress = 0.0
        self._last_poll = 0.0
        self._cancelled = False

    def start(self) -> bool:
        """queued -> running; False when the job was cancelled while it waited."""
        if self.job_id is None:
            return True
        with self.ctx.store.transaction() as conn:
            return jobs.start_job(conn, self.job_id)

    def progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.job_id is None or now - self._last_progress < PROGRESS_SECONDS:
            return
        self._last_progress = now
        with self.ctx.store.transaction() as conn:
            jobs.set_progress(conn, self.job_id, done / total if total else 0.0)

    @property
    def cancel(self) -> CancelFn | None:
        """The cancellation poll for a job (None for synchronous work: nothing can cancel it)."""
        return None if self.job_id is None else self._poll_cancel

    def _poll_cancel(self) -> bool:
        now = time.monotonic()
        if self._cancelled or now - self._last_poll < CANCEL_POLL_SECONDS:
            return self._cancelled
        self._last_poll = now
        assert self.job_id is not None
        with self.ctx.store.read() as conn:
            self._cancelled = jobs.cancel_requested(conn, self.job_id)
        return self._cancelled

    def finish(self, conn: Any, state: str, outcome: Outcome) -> None:
        """Record the job's end in ``conn``'s transaction (result on success, else the error)."""
        if self.job_id is None:
            return
        ok = state == "succeeded"
        jobs.finish_job(
            conn,
            self.job_id,
            state if state in ("succeeded", "cancelled") else "failed",
            result=outcome.body if ok else None,
            error=None if ok else outcome.body,
        )


class _WorkRun:
    """The body of one submitted piece of work, run on a worker thread."""

    def __init__(
        self,
        ctx: ServiceContext,
        kind: str,
        work: WorkFn,
        status: int,
        job_id: str | None,
        idem_key: str | None,
        key_id: str,
        particle_steps: int,
    ) -> None:
        self.ctx, self.kind, self.work, self.status = ctx, kind, work, status
        self.job, self.idem_key, self.key_id = JobHooks(ctx, job_id), idem_key, key_id
        self.particle_steps = particle_steps

    def __call__(self) -> Outcome:
        start = time.perf_counter()
        if not self.job.start():
            return self._close("cancelled", Outcome(409, CANCELLED_PROBLEM))
        try:
            body = self.work(self.job.progress, self.job.cancel)
            outcome, state = Outcome(self.status, body), "succeeded"
        except Cancelled:
            outcome, state = Outcome(409, CANCELLED_PROBLEM), "cancelled"
        except InvalidParameter as exc:
            error = ApiError.invalid(exc.field, exc.message)
            outcome, state = Outcome(422, error.body()), "failed"
        except Exception as exc:
            logger.error("work failed", extra={"kind": self.kind, "error_type": type(exc).__name__})
            outcome, state = Outcome(500, _INTERNAL), "failed"
        seconds = time.perf_counter() - start
        self.ctx.metrics.job_seconds.labels(self.kind).observe(seconds)
        if state == "succeeded" and self.particle_steps:
            self.ctx.metrics.particle_steps.labels(self.kind).inc(self.particle_steps)
            self.ctx.metrics.sampler_seconds.labels(self.kind).inc(seconds)
        return self._close(state, outcome)

    def _close(self, state: str, outcome: Outcome) -> Outcome:
        if self.job.job_id is None and self.idem_key is None:
            return outcome
        try:
            self._record(state, outcome)
        except Exception as exc:  # e.g. a result the store cannot hold: fail the job, not hang
            logger.error("work result not stored", extra={"error_type": type(exc).__name__})
            outcome, state = Outcome(500, _INTERNAL), "failed"
            self._record(state, outcome)
        return outcome

    def _record(self, state: str, outcome: Outcome) -> None:
        with self.ctx.store.transaction() as conn:
            if self.job.job_id is not None:
                self.job.finish(conn, state, outcome)
            elif self.idem_key is not None:
                idempotency.complete(conn, self.key_id, self.idem_key, outcome.status, outcome.body)


_INTERNAL = problem_body(500, "internal", "The work failed inside the service.")
_ABANDONED = problem_body(
    500, "internal", "The first request with this key ended without an answer; its charge stands."
)
