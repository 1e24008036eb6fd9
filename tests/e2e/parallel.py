"""Fire many HTTP requests at once at one or more servers, and measure that they overlapped.

:func:`burst` gives every request its own thread and sync httpx client, opens each client's
keep-alive connection beforehand (``GET /healthz``) and builds each request, then releases all
threads together from a barrier: all that is left to do per request is writing a few hundred
bytes, so the requests reach the servers together instead of one after another. (An
``asyncio.gather`` over one ``AsyncClient`` spends about a millisecond of event-loop time per
request before it writes, and on a small, busy machine the server has answered the first
requests before the last ones are sent.)

From httpcore's trace events it reports ``peak_in_flight``: the largest number of requests whose
body had been sent while their response headers had not yet arrived, i.e. requests the servers
held at the same moment. Even so, on a loaded machine a fast server answers the first requests
before the client has written the last; to have every request in flight at once, hold what
they all wait for (:class:`DatasetLock`: the dataset's row, or SQLite's write lock) and pass its
``release`` to :func:`burst`, which calls it once every request has been sent.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
import sqlalchemy as sa

from service.store.db import normalise_url

__all__ = ["Burst", "Call", "DatasetLock", "burst"]

SEND_TIMEOUT_S = 60.0

_SENT = "http11.send_request_body.complete"
_ANSWERED = "http11.receive_response_headers.complete"


@dataclass(frozen=True)
class Call:
    """One request: ``method`` (POST) ``base_url + path`` with a JSON body."""

    base_url: str
    path: str
    json: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"


@dataclass(frozen=True)
class Burst:
    responses: list[httpx.Response]  # in the order of the calls
    peak_in_flight: int

    def statuses(self) -> Counter[int]:
        return Counter(r.status_code for r in self.responses)

    def codes(self) -> Counter[str]:
        """``code`` of every problem+json answer."""
        return Counter(r.json()["code"] for r in self.responses if r.status_code >= 400)


def burst(
    calls: list[Call], timeout: float = 120.0, release: Callable[[], None] | None = None
) -> Burst:
    """Send every call at the same moment, then call ``release`` once all have been sent (or
    after :data:`SEND_TIMEOUT_S`); see the module docstring."""
    events: list[tuple[float, int]] = []
    lock = threading.Lock()
    all_sent = threading.Event()

    def trace(name: str, info: dict[str, Any]) -> None:
        if name in (_SENT, _ANSWERED):
            with lock:
                events.append((time.perf_counter(), +1 if name == _SENT else -1))
                if sum(step > 0 for _, step in events) == len(calls):
                    all_sent.set()

    clients = [httpx.Client(base_url=c.base_url, timeout=timeout) for c in calls]
    responses: list[httpx.Response | BaseException | None] = [None] * len(calls)
    barrier = threading.Barrier(len(calls), timeout=timeout)

    def run(i: int, request: httpx.Request) -> None:
        try:
            barrier.wait()
            responses[i] = clients[i].send(request)
        except BaseException as exc:  # reported below, in the test's thread
            barrier.abort()
            responses[i] = exc

    try:
        for client in clients:
            assert client.get("/healthz").status_code == 200
        requests = [
            client.build_request(
                c.method, c.path, json=c.json, headers=c.headers, extensions={"trace": trace}
            )
            for client, c in zip(clients, calls, strict=True)
        ]
        threads = [
            threading.Thread(target=run, args=(i, request), name=f"burst-{i}")
            for i, request in enumerate(requests)
        ]
        for thread in threads:
            thread.start()
        if release is not None:
            all_sent.wait(SEND_TIMEOUT_S)
            release()
            release = None
        for thread in threads:
            thread.join()
    finally:
        if release is not None:
            release()
        for client in clients:
            client.close()
    failures = [r for r in responses if not isinstance(r, httpx.Response)]
    if failures:
        raise AssertionError(f"{len(failures)} requests got no response: {failures[:3]!r}")
    in_flight = peak = 0
    for _, step in sorted(events):
        in_flight += step
        peak = max(peak, in_flight)
    return Burst([r for r in responses if isinstance(r, httpx.Response)], peak)


class DatasetLock:
    """Hold what every release on a dataset must take, until :meth:`release` (or exit).

    PostgreSQL: the dataset's row (``SELECT ... FOR UPDATE``, as the charge does); SQLite: the
    database's write lock (``BEGIN IMMEDIATE``; every service transaction begins so). A request
    then waits in the server, at the charge or before, until the lock is released.
    """

    def __init__(self, database_url: str, dataset_id: str) -> None:
        url = sa.make_url(normalise_url(database_url))
        self._sqlite: sqlite3.Connection | None = None
        self._pg: sa.Connection | None = None
        if url.get_backend_name() == "sqlite":
            assert url.database
            self._sqlite = sqlite3.connect(url.database, isolation_level=None, timeout=60)
            self._sqlite.execute("BEGIN IMMEDIATE")
        else:
            self._engine = sa.create_engine(url)
            self._pg = self._engine.connect()
            query = sa.text("SELECT id FROM datasets WHERE id = :id FOR UPDATE")
            assert self._pg.execute(query, {"id": dataset_id}).scalar_one() == dataset_id

    def release(self) -> None:
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
            self._sqlite = None
        if self._pg is not None:
            self._pg.rollback()
            self._pg.close()
            self._pg = None
            self._engine.dispose()

    def __enter__(self) -> DatasetLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
