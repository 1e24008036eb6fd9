"""Which process runs what: runner ids, heartbeats and the sweep that marks orphans ``aborted``.

Each process has a runner id ``host:pid:nonce``. A ``running`` ledger entry or job whose runner
is a dead process on this host, or whose heartbeat is older than the lease, is marked
``aborted`` (jobs: ``failed`` with code ``aborted``); its charge stays spent (privacy rule 4).
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import timedelta

from sqlalchemy import Connection, or_, select, update

from service.store.common import now
from service.store.tables import jobs, ledger

__all__ = ["RUNNER", "heartbeat_own", "runner_is_dead", "sweep_orphans"]

RUNNER = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
"""This process's runner id (a new nonce per process, so a reused pid is not mistaken)."""


def runner_is_dead(runner: str) -> bool:
    """True for a runner on this host whose process is gone (or is another process's pid)."""
    host, _, rest = runner.partition(":")
    pid_text, _, _nonce = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another host: only the lease can tell
    if runner == RUNNER:
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True  # our pid with another nonce: an earlier process with a reused pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def heartbeat_own(conn: Connection) -> None:
    """Renew the lease of every entry and job this process holds (running or queued).

    A live process keeps its work alive, queued or not; only a process that stopped renewing
    (it died, or lost the database for a whole lease) has its work swept.
    """
    stamp = now()
    conn.execute(
        update(ledger)
        .where(ledger.c.runner == RUNNER, ledger.c.status == "running")
        .values(heartbeat_at=stamp)
    )
    conn.execute(
        update(jobs)
        .where(jobs.c.runner == RUNNER, jobs.c.status.in_(("queued", "running")))
        .values(heartbeat_at=stamp)
    )


def sweep_orphans(conn: Connection, lease_seconds: float) -> int:
    """Mark orphaned running entries and jobs; returns how many rows changed."""
    cutoff = now() - timedelta(seconds=lease_seconds)
    changed = 0
    for table, status_value, extra in (
        (ledger, "aborted", {}),
        (jobs, "failed", {"error": _ABORTED_ERROR}),
    ):
        running = (
            table.c.status.in_(("running", "queued"))
            if table is jobs
            else table.c.status == "running"
        )
        rows = conn.execute(select(table.c.runner, table.c.heartbeat_at).where(running)).all()
        dead = sorted({r.runner for r in rows if runner_is_dead(r.runner)})
        result = conn.execute(
            update(table)
            .where(running, or_(table.c.heartbeat_at < cutoff, table.c.runner.in_(dead)))
            .values(status=status_value, finished_at=now(), **extra)
        )
        changed += result.rowcount or 0
    return changed


_ABORTED_ERROR = {
    "type": "/errors/internal",
    "title": "Internal error",
    "status": 500,
    "detail": "The process running this job stopped before it finished.",
    "code": "internal",
}
