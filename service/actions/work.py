"""Admission and running of all work — private releases and public compute — in one routine.

:func:`admit` takes a :class:`WorkOrder` built by an action from validated, public inputs and
goes, in this order (privacy rule 4; ARCHITECTURE "Service"):

1. **cost** — the order's public work estimate (``service.cost``) over ``max_work_units`` is 413
   ``too_expensive``, its ``errors`` naming the request fields that drive the estimate;
2. **slot** — a place in the order's lane of the pool (a full lane is 429 ``overloaded`` with
   ``Retry-After``);
3. **one transaction** — the order's :class:`Charge` (releases only) locks its dataset row; an
   ``Idempotency-Key`` seen before replays the first answer (another body: 422
   ``idempotency_conflict``); otherwise the slot is counted against the key's share (a key that
   already holds ``max_jobs_per_key`` places is 429 ``overloaded``: a retry waiting for its
   first answer is not new work and never counts); the charge is taken (a refusal is answered,
   remembered for replays and spends nothing); an ``async`` order gets its job row (with the
   estimate); the idempotency key is remembered;
4. **run** — on a worker of the lane, awaited by the request or as the job, which reports
   progress, can be cancelled between steps and is stopped by the **deadline**
   (``job_deadline_seconds`` of running time) through the same cancellation path: it then
   fails with code ``deadline`` (a release's charge stays spent).

Nothing is charged before step 3 and nothing runs before it commits. Errors inside public work:
``InvalidParameter`` is 422 naming its field (its inputs are public); anything else, and every
error inside a private release, a fixed 500 body with only the exception type in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection

from dp_core.errors import Cancelled, InvalidParameter
from service.actions.outcome import Outcome, Started
from service.context import ServiceContext
from service.cost import WorkEstimate
from service.errors import ApiError, problem_body
from service.jobs import Busy, Lane
from service.store import idempotency, jobs
from service.store.jobs import CANCELLED_PROBLEM
from service.store.keys import KeyRecord
from service.store.leases import RUNNER
from service.store.ledger import get_release

__all__ = [
    "DEADLINE_PROBLEM",
    "CancelFn",
    "Charge",
    "JobHooks",
    "ProgressFn",
    "WorkFn",
    "WorkOrder",
    "admit",
    "check_cost",
    "overloaded",
    "replay_or_conflict",
    "request_digest",
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

DEADLINE_PROBLEM = problem_body(
    504, "deadline", "The work ran past this service's deadline and was stopped."
)
"""The answer (and a job's ``error``) of work stopped by the deadline."""

_INTERNAL = problem_body(500, "internal", "The work failed inside the service.")
_ABANDONED = problem_body(
    500, "internal", "The first request with this key ended without an answer; its charge stands."
)


class Charge(Protocol):
    """The budget side of an order (private releases), run inside :func:`admit`'s transaction
    and the run's closing one."""

    failure: dict[str, Any]
    """The fixed body answered when the run fails (it must not quote anything private)."""

    def lock(self, conn: Connection) -> None:
        """Lock what the charge updates, before the idempotency lookup."""

    def reserve(self, conn: Connection) -> Outcome | None:
        """Take the charge (None) or refuse it (the answer; nothing spent)."""

    @property
    def release_id(self) -> str | None:
        """The ledger entry the charge opened (after :meth:`reserve`)."""

    def committed(self) -> None:
        """Called once the charge is committed (metrics)."""

    def close(self, conn: Connection, state: str, outcome: Outcome) -> None:
        """Record the run's end (``succeeded``, ``failed`` or ``cancelled``)."""


@dataclass(frozen=True)
class WorkOrder:
    """What :func:`admit` admits: the work, its lane and public estimate, how it answers."""

    kind: str
    lane: Lane
    estimate: WorkEstimate
    work: WorkFn
    status: int = 200
    run_async: bool = False
    charge: Charge | None = None
    throughput: tuple[str, int] | None = None
    """``(flow label, particle steps)`` counted in the sampler metrics when the run succeeds."""


def check_cost(ctx: ServiceContext, estimate: WorkEstimate) -> None:
    """413 ``too_expensive`` when ``estimate`` is over the ``max_work_units`` setting."""
    limit = ctx.settings.max_work_units
    if estimate.units <= limit:
        return
    rate = ctx.settings.work_units_per_second
    fields = ", ".join(estimate.drivers)
    raise ApiError(
        413,
        "too_expensive",
        f"The public work estimate is {estimate.units:.3g} units (about "
        f"{_seconds(estimate.seconds(rate))}), over this service's maximum of {limit:.3g} "
        f"units (about {_seconds(limit / rate)}); lower {fields}. Nothing was charged or run.",
        errors=[
            {"field": field, "message": f"drives the work estimate: {estimate.formula}"}
            for field in estimate.drivers
        ],
    )


def _seconds(value: float) -> str:
    return f"{value:,.0f} s" if value >= 10 else f"{value:.2g} s"


def overloaded(ctx: ServiceContext, busy: Busy | None = None) -> ApiError:
    """429 ``overloaded`` for a full lane or a key at its share of the pool."""
    if busy is not None and busy.reason == "key":
        detail = (
            f"This key already has {ctx.settings.max_jobs_per_key} work items waiting or "
            "running; retry when one has finished."
        )
    else:
        detail = "The work queue is full; retry later."
    retry_after = busy.retry_after if busy is not None else ctx.pool.retry_after()
    return ApiError(429, "overloaded", detail, headers={"Retry-After": str(retry_after)})


def admit(
    ctx: ServiceContext,
    key: KeyRecord,
    order: WorkOrder,
    idem_key: str | None,
    digest: str,
) -> Started:
    """Steps 1-3 of the module docstring, then submit step 4."""
    check_cost(ctx, order.estimate)
    slot = ctx.pool.admit(order.lane)
    if isinstance(slot, Busy):
        raise overloaded(ctx, slot)
    work = order.estimate.as_dict(ctx.settings.work_units_per_second)
    charge = order.charge
    try:
        with ctx.store.transaction() as conn:
            if charge is not None:
                charge.lock(conn)
            if idem_key is not None:
                seen = idempotency.lookup(conn, key.id, idem_key)
                if seen is not None:
                    slot.release()
                    outcome = replay_or_conflict(seen, digest)
                    return Started(outcome=outcome) if outcome else Started(replay=True)
            busy = ctx.pool.claim(slot, key.id)
            if busy is not None:
                raise overloaded(ctx, busy)
            release_id = None
            if charge is not None:
                refused = charge.reserve(conn)
                if refused is not None:
                    if idem_key is not None:
                        idempotency.record(
                            conn,
                            key.id,
                            idem_key,
                            digest,
                            status_code=refused.status,
                            response=refused.body,
                        )
                    slot.release()
                    ctx.metrics.refusals.labels(refused.body["code"]).inc()
                    return Started(outcome=refused)
                release_id = charge.release_id
            job_id = None
            accepted = None
            if order.run_async:
                job_id = jobs.create_job(conn, key.id, order.kind, RUNNER, release_id, work=work)
                ids = {"job_id": job_id} | ({"release_id": release_id} if release_id else {})
                accepted = Outcome(202, ids)
            if idem_key is not None:
                idempotency.record(
                    conn,
                    key.id,
                    idem_key,
                    digest,
                    status_code=accepted.status if accepted else None,
                    response=accepted.body if accepted else None,
                    release_id=release_id,
                )
    except BaseException:
        slot.release()
        raise
    if charge is not None:
        charge.committed()
    run = _Run(ctx, order, JobHooks(ctx, job_id), idem_key, key.id)
    future = ctx.pool.submit(slot, run)
    return Started(outcome=accepted) if accepted is not None else Started(future=future)


def start_work(
    ctx: ServiceContext,
    key: KeyRecord,
    kind: str,
    work: WorkFn,
    *,
    estimate: WorkEstimate,
    status: int = 200,
    run_async: bool = False,
    idem_key: str | None = None,
    digest: str = "",
    particle_steps: int = 0,
) -> Started:
    """Admit public compute (a flow, memory retrieval or generator) in the compute lane."""
    order = WorkOrder(
        kind=kind,
        lane="compute",
        estimate=estimate,
        work=work,
        status=status,
        run_async=run_async,
        throughput=(kind, particle_steps) if particle_steps else None,
    )
    return admit(ctx, key, order, idem_key, digest)


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


def request_digest(path: str, body: dict[str, Any]) -> str:
    """The digest an ``Idempotency-Key`` is bound to: the method, path and decoded body of a
    work-starting POST (a retry must send the same request)."""
    return idempotency.request_hash("POST", path, body)


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
    """A run's link to its job row and its deadline: start it, report progress (at most once a
    second) and poll for cancellation — the deadline at every call, the job's flag at most every
    half second. Without a job id only the deadline can stop the run."""

    def __init__(self, ctx: ServiceContext, job_id: str | None) -> None:
        self.ctx, self.job_id = ctx, job_id
        self.deadline_seconds = ctx.settings.job_deadline_seconds
        self._deadline = float("inf")
        self._last_progress = 0.0
        self._last_poll = 0.0
        self._cancelled = False
        self.expired = False

    def start(self) -> bool:
        """queued -> running and start the deadline clock; False when the job was cancelled
        while it waited."""
        self._deadline = time.monotonic() + self.deadline_seconds
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

    def cancel(self) -> bool:
        """True once the deadline has passed or the job was asked to stop."""
        now = time.monotonic()
        if now >= self._deadline:
            self.expired = True
            return True
        if self.job_id is None or self._cancelled or now - self._last_poll < CANCEL_POLL_SECONDS:
            return self._cancelled
        self._last_poll = now
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


class _Run:
    """Step 4, on a worker thread: run the order, record its end, return its answer."""

    def __init__(
        self,
        ctx: ServiceContext,
        order: WorkOrder,
        hooks: JobHooks,
        idem_key: str | None,
        key_id: str,
    ) -> None:
        self.ctx, self.order, self.hooks = ctx, order, hooks
        self.idem_key, self.key_id = idem_key, key_id
        charge = order.charge
        self.failure = charge.failure if charge is not None else _INTERNAL

    def __call__(self) -> Outcome:
        start = time.perf_counter()
        order = self.order
        try:
            if not self.hooks.start():
                return self._close("cancelled", Outcome(409, CANCELLED_PROBLEM))
            body = order.work(self.hooks.progress, self.hooks.cancel)
            outcome, state = Outcome(order.status, body), "succeeded"
        except Cancelled:
            if self.hooks.expired:
                outcome, state = Outcome(504, DEADLINE_PROBLEM), "failed"
            else:
                outcome, state = Outcome(409, CANCELLED_PROBLEM), "cancelled"
        except InvalidParameter as exc:
            if order.charge is None:  # public inputs: the field and message may be shown
                error = ApiError.invalid(exc.field, exc.message)
                outcome, state = Outcome(422, error.body()), "failed"
            else:
                outcome, state = self._failed(exc)
        except Exception as exc:  # never echo text: it may quote private values
            outcome, state = self._failed(exc)
        seconds = time.perf_counter() - start
        self.ctx.metrics.job_seconds.labels(order.kind).observe(seconds)
        if state == "succeeded" and order.throughput is not None:
            label, particle_steps = order.throughput
            self.ctx.metrics.particle_steps.labels(label).inc(particle_steps)
            self.ctx.metrics.sampler_seconds.labels(label).inc(seconds)
        return self._close(state, outcome)

    def _failed(self, exc: Exception) -> tuple[Outcome, str]:
        charge = self.order.charge
        logger.error(
            "work failed",
            extra={
                "kind": self.order.kind,
                "release_id": charge.release_id if charge is not None else None,
                "error_type": type(exc).__name__,
            },
        )
        return Outcome(500, self.failure), "failed"

    def _close(self, state: str, outcome: Outcome) -> Outcome:
        if self.hooks.job_id is None and self.idem_key is None and self.order.charge is None:
            return outcome
        try:
            self._record(state, outcome)
        except Exception as exc:  # e.g. a result the store cannot hold: fail the job, not hang
            logger.error("work result not stored", extra={"error_type": type(exc).__name__})
            outcome, state = Outcome(500, self.failure), "failed"
            self._record(state, outcome)
        return outcome

    def _record(self, state: str, outcome: Outcome) -> None:
        with self.ctx.store.transaction() as conn:
            if self.order.charge is not None:
                self.order.charge.close(conn, state, outcome)
            if self.hooks.job_id is not None:
                self.hooks.finish(conn, state, outcome)
            elif self.idem_key is not None:
                idempotency.complete(conn, self.key_id, self.idem_key, outcome.status, outcome.body)
