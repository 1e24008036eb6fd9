"""Private releases: plan from public inputs, estimate, charge atomically, then read records.

Order of operations (privacy rules 2-4), the admission being :func:`service.actions.work.admit`:

1. Bind the utility to the dataset's public columns and plan the mechanism (λ, flow time,
   steps, particles, certificate) from public parameters only; bad input is 422 here. The
   plan's public work estimate (:func:`release_estimate`) is fixed here too, and a custom
   loss's kernel is compiled (or found in the cache) here, before any charge.
2. Admission: an estimate over the maximum is 413 ``too_expensive``; no worker slot in the
   release lane (or the key at its share) is 429; nothing charged either way.
3. One transaction: lock the dataset row, replay an ``Idempotency-Key`` if seen, apply the
   admission rule (refused: 409, nothing spent), add the charge, open a ``running`` ledger
   entry (and a job for ``async``), remember the idempotency key (:class:`_ReleaseCharge`).
4. In the worker: read the records, sample, store the release and close the entry. A crash
   leaves the entry ``running`` until the lease sweep marks it ``aborted``; the deadline or a
   cancellation stops the run and closes it ``failed`` or ``cancelled``: the charge stays.

Nothing computed from records other than the samples reaches a response, log or metric:
failures inside the run answer a fixed 500 ``internal`` and log only the exception type.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Connection

from dp_core.privacy.grid import GRID_POINTS
from dp_core.privacy.mechanism import ExponentialMechanism, Plan
from dp_core.privacy.utilities import (
    ClippedMean,
    CustomUtility,
    KMeans,
    LogisticRegression,
    Mode,
    Quantile,
)
from service.actions.access import visible_dataset
from service.actions.outcome import Outcome, Started
from service.actions.utilities import BoundUtility, bind_utility
from service.actions.work import CancelFn, ProgressFn, WorkOrder, admit, check_cost
from service.context import ServiceContext
from service.cost import SUMMARY_RECORDS, WorkEstimate, exact_release_work, shk_release_work
from service.errors import ApiError, problem_body
from service.schemas.releases import SampleRequest
from service.store.common import iso
from service.store.datasets import DatasetRecord, get_dataset
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

__all__ = [
    "get_release_body",
    "passes_over_records",
    "record_weight",
    "release_estimate",
    "start_release",
]

_INTERNAL = problem_body(
    500, "internal", "The release failed inside the service; its charge stands."
)

RECORD_WEIGHTS = {
    ("mean", "gradient_norm"): 6,
    ("mean", "loss"): 1,
    ("logistic_regression", "gradient_norm"): 8,
    ("logistic_regression", "loss"): 12,
    ("kmeans", "gradient_norm"): 2,
    ("kmeans", "loss"): 2,
}
"""Work units per coordinate of one particle-record term of a family's record pass, measured
against the rate of a kernel pair (bench/bench_work_rate.py, loss evaluations at 2000 particles
over 20,000 records; docs/service.md, "Work limits"). The gradient form's pass sums the gradient
and its Jacobian, and a binding clip adds a second pass for the curvature of the clipped records
(:data:`BINDING_CLIP_WEIGHT` for k-means; the mean passes over the records only then)."""

BINDING_CLIP_WEIGHT = 5
"""k-means in the gradient form with a clip that binds (measured 4.0e8 units/s at weight 1)."""

CUSTOM_WEIGHTS = {"gradient_norm": 2, "loss": 2}
"""A custom loss's record pass: per coordinate in the loss form, per coordinate and per
dimension + 1 in the gradient form (it sums a d x d Jacobian per record). Measured against the
built-in record passes in the same run (bench/bench_custom_utility.py: the 2-D mean with a binding
clip, gradient form, custom 0.6-0.8x the built-in's time at weight 6; loss form 1.2-1.8x the
built-in's at weight 1). Longer expressions cost more than this estimate."""


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


def passes_over_records(family: Any) -> bool:
    """Whether evaluating the family's utility passes over every record (else it reads exact
    summaries). Public: it depends on the family, its dimension and clip only, and for a custom
    loss on whether its summary is proved from those public parameters (privacy.md, "Cost grows
    with the records only where a family cannot be summarised")."""
    if isinstance(family, CustomUtility):
        return family.summary_proof() is None
    if isinstance(family, (LogisticRegression, KMeans)):
        return True
    if isinstance(family, ClippedMean):
        return family.domain.dim > 1 and math.isfinite(family.effective_clip)
    return False  # quantile (sorted records), linear regression (sufficient statistics)


def record_weight(family: Any) -> int:
    """Work units per coordinate of one particle-record term of the family's record pass
    (:data:`RECORD_WEIGHTS`); 1 for families that do not pass over the records."""
    if not passes_over_records(family):
        return 1
    form = getattr(family, "form", "loss")
    if isinstance(family, CustomUtility):
        dim_factor = family.dim + 1 if form == "gradient_norm" else 1
        return CUSTOM_WEIGHTS[form] * dim_factor
    kmeans_clip = isinstance(family, KMeans) and math.isfinite(family.effective_clip)
    if kmeans_clip and form == "gradient_norm":
        return BINDING_CLIP_WEIGHT
    return RECORD_WEIGHTS.get((family.family, form), 1)


def release_estimate(family: Any, plan: Plan, size_bound: int) -> WorkEstimate:
    """The public work estimate of a planned release (``service.cost``): the dataset's public
    ``size_bound`` stands for the records, never their number."""
    if plan.method == "exact":
        if isinstance(family, Mode):
            kind, candidates, dim = "mode", len(family.categories), 1
        elif isinstance(family, Quantile):
            kind, candidates, dim = "quantile", size_bound + 1, 1
        else:
            kind, candidates, dim = "grid", GRID_POINTS, family.domain.dim
        return exact_release_work(
            candidates=candidates,
            records=size_bound,
            dim=dim,
            n_samples=plan.n_samples,
            kind=kind,
        )
    schedule = plan.schedule
    assert schedule is not None
    passes = passes_over_records(family)
    return shk_release_work(
        particles=schedule.particles,
        flow_steps=schedule.n_steps,
        relaxation_moves=schedule.relaxation.moves,
        dim=family.domain.dim,
        records=size_bound if passes else SUMMARY_RECORDS,
        record_weight=record_weight(family),
    )


def start_release(
    ctx: ServiceContext,
    key: KeyRecord,
    body: SampleRequest,
    idem_key: str | None,
    request_digest: str,
    *,
    dataset_id: str,
) -> Started:
    """Step 1 above, then :func:`~service.actions.work.admit` (steps 2-4)."""
    with ctx.store.read() as conn:
        dataset = visible_dataset(conn, key, dataset_id)
    bound, mechanism, plan = _plan(body, dataset)
    estimate = release_estimate(bound.family, plan, int(dataset.size_bound))
    if isinstance(bound.family, CustomUtility):
        check_cost(ctx, estimate)  # 413 before seconds of compiling
        _compile_custom(ctx, bound.family, plan.method)
    work_view = estimate.as_dict(ctx.settings.work_units_per_second)
    charge = _ReleaseCharge(ctx, key, dataset_id, plan, body.utility.model_dump())

    def work(progress: ProgressFn, cancel: CancelFn | None) -> dict[str, Any]:
        entry, charged = charge.entry, charge.charged
        records = ctx.records.get(ctx.store, charged)
        release = mechanism.sample(
            bound.extract(records), body.n_samples, plan=plan, progress=progress, cancel=cancel
        )
        budget = budget_view(charged)
        return {
            "release_id": entry.release_id,
            "dataset_id": entry.dataset_id,
            "samples": bound.to_json(release.samples),
            "certificate": entry.certificate,
            "charged": {"epsilon": entry.charged_epsilon, "delta": entry.charged_delta},
            "budget": {"spent": budget["spent"], "remaining": budget["remaining"]},
            "sampler": plan.sampler,
            "work": work_view,
            "created_at": iso(entry.created_at),
        }

    schedule = plan.schedule
    order = WorkOrder(
        kind="release",
        lane="release",
        estimate=estimate,
        work=work,
        status=201,
        run_async=body.run_async,
        charge=charge,
        throughput=(
            ("shk", schedule.particles * (schedule.n_steps + schedule.relaxation.moves))
            if schedule is not None
            else None
        ),
    )
    return admit(ctx, key, order, idem_key, request_digest)


def _compile_custom(ctx: ServiceContext, family: CustomUtility, method: str) -> None:
    """Compile (or find cached) the custom loss's kernel before anything is charged: a loss
    that cannot compile in time is 422 ``utility.loss`` with nothing spent."""
    seconds = family.compile(method)
    if seconds is not None:
        ctx.metrics.custom_compile_seconds.observe(seconds)


class _ReleaseCharge:
    """Step 3's budget side (:class:`service.actions.work.Charge`): the dataset row's lock, the
    charge and its ledger entry, closed with the run's state."""

    failure = _INTERNAL

    def __init__(
        self,
        ctx: ServiceContext,
        key: KeyRecord,
        dataset_id: str,
        plan: Plan,
        utility: dict[str, Any],
    ) -> None:
        self.ctx, self.key, self.dataset_id, self.plan = ctx, key, dataset_id, plan
        self.utility = utility
        self.certificate = plan.certificate.as_dict()
        self._entry: LedgerEntry | None = None
        self._charged: DatasetRecord | None = None

    @property
    def entry(self) -> LedgerEntry:
        assert self._entry is not None, "read before the charge was taken"
        return self._entry

    @property
    def charged(self) -> DatasetRecord:
        assert self._charged is not None, "read before the charge was taken"
        return self._charged

    @property
    def release_id(self) -> str | None:
        return None if self._entry is None else self._entry.release_id

    def lock(self, conn: Connection) -> None:
        if get_dataset(conn, self.dataset_id, for_update=True) is None:
            raise ApiError(404, "not_found", f"No dataset with id {self.dataset_id!r}.")

    def reserve(self, conn: Connection) -> Outcome | None:
        try:
            self._entry, self._charged = reserve(  # LookupError: the grant was removed meanwhile
                conn,
                dataset_id=self.dataset_id,
                key_id=self.key.id,
                needs_grant=self.key.role != "admin",
                charge=self.plan.charge,
                utility=self.utility,
                method=self.plan.method,
                certificate=self.certificate,
                runner=RUNNER,
            )
        except LookupError:
            raise ApiError(403, "forbidden", "This key has no grant on the dataset.") from None
        except BudgetRefused as refused:
            return _budget_refusal(refused.scope)
        return None

    def committed(self) -> None:
        metrics = self.ctx.metrics
        metrics.releases.labels(self.dataset_id, self.plan.method).inc()
        metrics.epsilon_charged.labels(self.dataset_id).inc(self.plan.charge.pure_epsilon)

    def close(self, conn: Connection, state: str, outcome: Outcome) -> None:
        ok = state == "succeeded"
        finish_entry(conn, self.entry.release_id, state, outcome.body if ok else None)


def _budget_refusal(scope: str) -> Outcome:
    detail = (
        "The dataset's remaining budget cannot afford this release; nothing was spent."
        if scope == "dataset"
        else "This key's cap on the dataset cannot afford this release; nothing was spent."
    )
    return Outcome(409, problem_body(409, "budget_exceeded", detail))


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
