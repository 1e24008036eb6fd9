"""Job reads and cancellation; a key sees its own jobs, an admin every job."""

from __future__ import annotations

from typing import Any

from service.context import ServiceContext
from service.errors import ApiError
from service.store import jobs as store
from service.store.keys import KeyRecord
from service.store.leases import sweep_orphans

__all__ = ["cancel_job", "get_job"]


def _visible(ctx: ServiceContext, key: KeyRecord, job_id: str) -> store.JobRecord:
    with ctx.store.transaction() as conn:
        sweep_orphans(conn, ctx.settings.lease_seconds)
        job = store.get_job(conn, job_id)
    if job is None or (key.role != "admin" and job.key_id != key.id):
        raise ApiError(404, "not_found", f"No job with id {job_id!r}.")
    return job


def job_out(job: store.JobRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "progress": job.progress,
        "work": job.work,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
    }
    if job.result is not None:
        out["result"] = job.result
    if job.error is not None:
        out["error"] = job.error
    return out


def get_job(ctx: ServiceContext, key: KeyRecord, job_id: str) -> dict[str, Any]:
    return job_out(_visible(ctx, key, job_id))


def cancel_job(ctx: ServiceContext, key: KeyRecord, job_id: str) -> dict[str, Any]:
    """Ask a job to stop (idempotent; a finished job is left as it is)."""
    job = _visible(ctx, key, job_id)
    if job.status not in store.TERMINAL:
        with ctx.store.transaction() as conn:
            store.request_cancel(conn, job_id)
            job = store.get_job(conn, job_id) or job
    return job_out(job)
