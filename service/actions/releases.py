"""Private releases: plan from public inputs, charge atomically, then read records and sample.

Order of operations (privacy rules 2-4):

1. Bind the utility to the dataset's public columns and plan the mechanism (λ, flow time,
   steps, particles, certificate) from public parameters only; bad input is 422 here.
2. Take a worker slot (none free: 429, nothing charged).
3. One transaction: lock the dataset row, replay an ``Idempotency-Key`` if seen, apply the
   admission rule (refused: 409, nothing spent), add the charge, open a ``running`` ledger
   entry (and a job for ``async``), remember the idempotency key.
4. In the worker: read the records, sample, store the release and close the entry. A crash
   leaves the entry ``running`` until the lease sweep marks it ``aborted``: the charge stays.

Nothing computed from records other than the samples reaches a response, log or metric:
failures inside the run answer a fixed 500 ``internal`` and log only the exception type.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from dp_core.errors import Cancelled
from dp_core.privacy.mechanism import ExponentialMechanism, Plan
from service.actions.access import visible_dataset
from service.actions.outcome import Outcome, Started
from service.actions.utilities import BoundUtility, bind_utility
from service.actions.work import JobHooks, overloaded, replay_or_conflict
from service.context import ServiceContext
from service.errors import ApiError, problem_body
from service.schemas.releases import SampleRequest
from service.store import idempotency, jobs
from service.store.common import iso
from service.store.datasets import DatasetRecord, get_dataset
from service.store.jobs import CANCELLED_PROBLEM
from service.store.keys import KeyRecord
from service.store.leases import RUNNER
from service.store.ledger import (
    BudgetRefused,
    LedgerEntry,
    budget_view,
    finish_entry,
    get_release,
    reserve,
)

__all__ = ["get_release_body", "start_release"]

logger = logging.getLogger(__name__)

_INTERNAL = problem_body(
    500, "internal", "The release failed inside the service; its charge stands."
)


def _plan(
    body: SampleRequest, dataset: DatasetRecord
) -> tuple[BoundUtility, ExponentialMechanism, Plan]:
    bound = bind_utility(body.utility, dataset.columns)
    sampler = body.sampler
    mechanism = ExponentialMechanism(
        bound.family,
        body.epsilon,
        delta=body.delta,
        n_max=int(dataset.size_bound),
        neighbouring=dataset.neighbouring,
        method=body.method,
        particles=sampler.particles if sampler else None,
        step_size=sampler.step_size if sampler else None,
        relaxation_moves=sampler.relaxation_moves if sampler else None,
    )
    return bound, mechanism, mechanism.plan(body.n_samples)


def start_release(
    ctx: ServiceContext,
    key: KeyRecord,
    body: SampleRequest,
    idem_key: str | None,
    request_digest: str,
    *,
    dataset_id: str,
) -> Started:
    """Steps 1-3 above, then submit step 4; see the module docstring."""
    with ctx.store.read() as conn:
        dataset = visible_dataset(conn, key, dataset_id)
    bound, mechanism, plan = _plan(body, dataset)
    certificate = plan.certificate.as_dict()
    utility_json = body.utility.model_dump()

    slot = ctx.pool.try_acquire()
    if slot is None:
        raise overloaded(ctx)
    try:
        with ctx.store.transaction() as conn:
            if get_dataset(conn, dataset_id, for_update=True) is None:  # lock first
                raise ApiError(404, "not_found", f"No dataset with id {dataset_id!r}.")
            if idem_key is not None:
                seen = idempotency.lookup(conn, key.id, idem_key)
                if seen is not None:
                    slot.release()
                    return _replay(seen, request_digest)
            try:
                entry, charged = reserve(  # LookupError: the grant was removed meanwhile
                    conn,
                    dataset_id=dataset_id,
                    key_id=key.id,
                    needs_grant=key.role != "admin",
                    charge=plan.charge,
                    utility=utility_json,
                    method=plan.method,
                    certificate=certificate,
                    runner=RUNNER,
                )
            except LookupError:
                raise ApiError(403, "forbidden", "This key has no grant on the dataset.") from None
            except BudgetRefused as refused:
                outcome = _budget_refusal(refused.scope)
                if idem_key is not None:
                    idempotency.record(
                        conn,
                        key.id,
                        idem_key,
                        request_digest,
                        status_code=outcome.status,
                        response=outcome.body,
                    )
                slot.release()
                ctx.metrics.refusals.labels("budget_exceeded").inc()
                return Started(outcome=outcome)
            job_id = None
            if body.run_async:
                job_id = jobs.create_job(conn, key.id, "release", RUNNER, entry.release_id)
            accepted = (
                Outcome(202, {"job_id": job_id, "release_id": entry.release_id})
                if job_id is not None
                else None
            )
            if idem_key is not None:
                idempotency.record(
                    conn,
                    key.id,
                    idem_key,
                    request_digest,
                    status_code=accepted.status if accepted else None,
                    response=accepted.body if accepted else None,
                    release_id=entry.release_id,
                )
    except BaseException:
        slot.release()
        raise

    _observe_charge(ctx, dataset_id, plan)
    run = _ReleaseRun(ctx, entry, charged, bound, mechanism, plan, body, job_id, idem_key, key.id)
    future = ctx.pool.submit(slot, run)
    if accepted is not None:
        return Started(outcome=accepted)
    return Started(future=future)


def _budget_refusal(scope: str) -> Outcome:
    detail = (
        "The dataset's remaining budget cannot afford this release; nothing was spent."
        if scope == "dataset"
        else "This key's cap on the dataset cannot afford this release; nothing was spent."
    )
    return Outcome(409, problem_body(409, "budget_exceeded", detail))


def _replay(seen: idempotency.IdempotencyRecord, digest: str) -> Started:
    outcome = replay_or_conflict(seen, digest)
    return Started(outcome=outcome) if outcome is not None else Started(replay=True)


def _observe_charge(ctx: ServiceContext, dataset_id: str, plan: Plan) -> None:
    ctx.metrics.releases.labels(dataset_id, plan.method).inc()
    ctx.metrics.epsilon_charged.labels(dataset_id).inc(plan.charge.pure_epsilon)


class _ReleaseRun:
    """Step 4, run on a worker thread; returns the Outcome (also stored for replays/jobs)."""

    def __init__(
        self,
        ctx: ServiceContext,
        entry: LedgerEntry,
        charged: DatasetRecord,
        bound: BoundUtility,
        mechanism: ExponentialMechanism,
        plan: Plan,
        body: SampleRequest,
        job_id: str | None,
        idem_key: str | None,
        key_id: str,
    ) -> None:
        self.ctx, self.entry, self.charged, self.bound = ctx, entry, charged, bound
        self.mechanism, self.plan, self.body = mechanism, plan, body
        self.job, self.idem_key, self.key_id = JobHooks(ctx, job_id), idem_key, key_id

    def __call__(self) -> Outcome:
        start = time.perf_counter()
        try:
            if not self.job.start():
                return self._close("cancelled", Outcome(409, CANCELLED_PROBLEM))
            records = self.ctx.records.get(self.ctx.store, self.charged)
            release = self.mechanism.sample(
                self.bound.extract(records),
                self.body.n_samples,
                plan=self.plan,
                progress=self.job.progress,
                cancel=self.job.cancel,
            )
            outcome = Outcome(201, self._body(release.samples))
            result = self._close("succeeded", outcome)
        except Cancelled:
            result = self._close("cancelled", Outcome(409, CANCELLED_PROBLEM))
        except Exception as exc:  # never echo text: it may quote private values
            logger.error(
                "release failed",
                extra={"release_id": self.entry.release_id, "error_type": type(exc).__name__},
            )
            result = self._close("failed", Outcome(500, _INTERNAL))
        seconds = time.perf_counter() - start
        self.ctx.metrics.job_seconds.labels("release").observe(seconds)
        schedule = self.plan.schedule
        if schedule is not None and result.status == 201:
            self.ctx.metrics.particle_steps.labels("shk").inc(
                schedule.particles * (schedule.n_steps + schedule.relaxation.moves)
            )
            self.ctx.metrics.sampler_seconds.labels("shk").inc(seconds)
        return result

    def _body(self, samples: Any) -> dict[str, Any]:
        budget = budget_view(self.charged)
        return {
            "release_id": self.entry.release_id,
            "dataset_id": self.entry.dataset_id,
            "samples": self.bound.to_json(samples),
            "certificate": self.entry.certificate,
            "charged": {"epsilon": self.entry.charged_epsilon, "delta": self.entry.charged_delta},
            "budget": {"spent": budget["spent"], "remaining": budget["remaining"]},
            "sampler": self.plan.sampler,
            "created_at": iso(self.entry.created_at),
        }

    def _close(self, status: str, outcome: Outcome) -> Outcome:
        ok = status == "succeeded"
        with self.ctx.store.transaction() as conn:
            finish_entry(conn, self.entry.release_id, status, outcome.body if ok else None)
            if self.idem_key is not None and self.job.job_id is None:
                idempotency.complete(conn, self.key_id, self.idem_key, outcome.status, outcome.body)
            self.job.finish(conn, status, outcome)
        return outcome


def get_release_body(ctx: ServiceContext, key: KeyRecord, release_id: str) -> dict[str, Any]:
    """A stored release; analysts read only their own."""
    with ctx.store.read() as conn:
        found = get_release(conn, release_id)
    if found is None or (key.role != "admin" and found[0].key_id != key.id):
        raise ApiError(404, "not_found", f"No release with id {release_id!r}.")
    entry, body = found
    if body is None:
        raise ApiError(404, "not_found", f"Release {release_id!r} has no samples ({entry.status}).")
    return body
