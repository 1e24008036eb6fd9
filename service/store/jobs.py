"""Job rows: status, progress, result or error, and the cancellation flag any replica may set."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from service.store.common import new_id, now
from service.store.tables import jobs

__all__ = [
    "CANCELLED_PROBLEM",
    "TERMINAL",
    "JobRecord",
    "cancel_requested",
    "create_job",
    "finish_job",
    "get_job",
    "request_cancel",
    "set_progress",
    "start_job",
]

TERMINAL = ("succeeded", "failed", "cancelled")

CANCELLED_PROBLEM = {
    "type": "/errors/cancelled",
    "title": "Cancelled",
    "status": 409,
    "detail": "The job was cancelled before it finished.",
    "code": "cancelled",
}
"""The ``error`` of every cancelled job, whether it was queued or running."""


@dataclass(frozen=True)
class JobRecord:
    id: str
    key_id: str
    kind: str
    status: str
    progress: float
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    cancel_requested: bool
    release_id: str | None
    created_at: datetime
    finished_at: datetime | None
    work: dict[str, Any] | None


def _record(row: Any) -> JobRecord:
    return JobRecord(**{name: getattr(row, name) for name in JobRecord.__dataclass_fields__})


def create_job(
    conn: Connection,
    key_id: str,
    kind: str,
    runner: str,
    release_id: str | None = None,
    *,
    work: dict[str, Any] | None = None,
) -> str:
    job_id = new_id("job")
    stamp = now()
    conn.execute(
        jobs.insert().values(
            id=job_id,
            key_id=key_id,
            kind=kind,
            status="queued",
            progress=0.0,
            cancel_requested=False,
            release_id=release_id,
            runner=runner,
            heartbeat_at=stamp,
            created_at=stamp,
            work=work,
        )
    )
    return job_id


def get_job(conn: Connection, job_id: str) -> JobRecord | None:
    row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
    return None if row is None else _record(row)


def start_job(conn: Connection, job_id: str) -> bool:
    """queued -> running; False when it was cancelled while queued."""
    result = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == "queued", jobs.c.cancel_requested.is_(False))
        .values(status="running", heartbeat_at=now())
    )
    return bool(result.rowcount)


def set_progress(conn: Connection, job_id: str, progress: float) -> None:
    """Record progress (also the heartbeat of the job's lease)."""
    conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == "running")
        .values(progress=progress, heartbeat_at=now())
    )


def cancel_requested(conn: Connection, job_id: str) -> bool:
    return bool(conn.execute(select(jobs.c.cancel_requested).where(jobs.c.id == job_id)).scalar())


def request_cancel(conn: Connection, job_id: str) -> None:
    """Ask the job to stop; a queued job is cancelled at once, a running one at its next step."""
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(cancel_requested=True))
    conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == "queued")
        .values(status="cancelled", finished_at=now(), error=CANCELLED_PROBLEM)
    )


def finish_job(
    conn: Connection,
    job_id: str,
    status: str,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> None:
    values: dict[str, Any] = {
        "status": status,
        "finished_at": now(),
        "result": result,
        "error": error,
    }
    if status == "succeeded":
        values["progress"] = 1.0
    conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status.in_(("queued", "running")))
        .values(**values)
    )
