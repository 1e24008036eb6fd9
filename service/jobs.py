"""The bounded worker pool: two lanes of worker threads, so public compute cannot starve releases.

Work runs off the event loop in one of two **lanes**, each a thread pool with its own size and
queue: ``release`` (private releases) and ``compute`` (flows, memories, generators). A long flow
therefore never holds the worker a release is waiting for. A request first takes a slot in its
lane (:meth:`JobPool.admit`) and counts it against its key's share (:meth:`JobPool.claim`, or
``admit`` with a key); it is refused, before anything is charged, when its lane is full
(``reason="queue"``) or when its key already holds ``per_key`` slots in either lane
(``reason="key"``). Both refusals are 429 ``overloaded`` with a ``Retry-After`` estimated from the
lane's recent durations. The Numba kernels release the GIL and use every core, so a small number
of worker threads keeps the machine busy; the slots beyond them are the queue.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, TypeVar

__all__ = ["LANES", "Busy", "JobPool", "Lane", "Slot"]

T = TypeVar("T")

Lane = Literal["release", "compute"]
LANES: tuple[Lane, ...] = ("release", "compute")


@dataclass(frozen=True)
class Busy:
    """Why no slot was given: the lane's queue is full, or the key holds its share."""

    reason: Literal["queue", "key"]
    retry_after: int


class Slot:
    """A reserved place in a lane; submit work with it exactly once, or give it back."""

    def __init__(self, pool: JobPool, lane: Lane, key_id: str | None) -> None:
        self._pool, self.lane, self.key_id = pool, lane, key_id
        self._open = True

    def release(self) -> None:
        if self._open:
            self._open = False
            self._pool._free(self)


class _Lane:
    def __init__(self, name: str, workers: int, capacity: int) -> None:
        self.workers = workers
        self.capacity = max(capacity, workers)
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix=f"privflow-{name}")
        self.in_use = 0
        self.recent: deque[float] = deque(maxlen=32)

    def retry_after(self, items: int) -> int:
        """Seconds until ``items`` running or queued items are likely done."""
        mean = sum(self.recent) / len(self.recent) if self.recent else 1.0
        return max(1, math.ceil(items * mean / self.workers))


class JobPool:
    """Two lanes: ``workers`` threads and at most ``capacity`` items waiting or running for
    releases, ``compute_workers`` and ``compute_capacity`` for public compute; each key holds
    at most ``per_key`` slots over both (None: no per-key limit)."""

    def __init__(
        self,
        workers: int,
        capacity: int,
        *,
        compute_workers: int | None = None,
        compute_capacity: int | None = None,
        per_key: int | None = None,
    ) -> None:
        self._lanes = {
            "release": _Lane("release", workers, capacity),
            "compute": _Lane(
                "compute",
                compute_workers or workers,
                compute_capacity if compute_capacity is not None else capacity,
            ),
        }
        self.per_key = per_key
        self._by_key: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def workers(self) -> int:
        return self._lanes["release"].workers

    @property
    def capacity(self) -> int:
        return self._lanes["release"].capacity

    @property
    def depth(self) -> int:
        """Items waiting or running, both lanes."""
        return sum(lane.in_use for lane in self._lanes.values())

    def lane_depth(self, lane: Lane) -> int:
        return self._lanes[lane].in_use

    def admit(self, lane: Lane = "release", key_id: str | None = None) -> Slot | Busy:
        """A slot in ``lane``, counted against ``key_id``'s share when given, or why there is
        none."""
        chosen = self._lanes[lane]
        with self._lock:
            if chosen.in_use >= chosen.capacity:
                return Busy("queue", chosen.retry_after(chosen.in_use))
            if key_id is not None:
                busy = self._over_share(chosen, key_id)
                if busy is not None:
                    return busy
                self._by_key[key_id] += 1
            chosen.in_use += 1
        return Slot(self, lane, key_id)

    def claim(self, slot: Slot, key_id: str) -> Busy | None:
        """Count an admitted ``slot`` against ``key_id``'s share (None), or refuse (the slot is
        kept: release it). Called once a request is known to be new work, not a replay."""
        with self._lock:
            if slot.key_id is not None:
                return None
            busy = self._over_share(self._lanes[slot.lane], key_id)
            if busy is not None:
                return busy
            self._by_key[key_id] += 1
            slot.key_id = key_id
        return None

    def _over_share(self, lane: _Lane, key_id: str) -> Busy | None:
        held = self._by_key[key_id]
        if self.per_key is None or held < self.per_key:
            return None
        return Busy("key", lane.retry_after(max(1, held)))

    def try_acquire(self, lane: Lane = "release", key_id: str | None = None) -> Slot | None:
        slot = self.admit(lane, key_id)
        return slot if isinstance(slot, Slot) else None

    def _free(self, slot: Slot) -> None:
        with self._lock:
            self._lanes[slot.lane].in_use -= 1
            if slot.key_id is not None:
                self._by_key[slot.key_id] -= 1
                if self._by_key[slot.key_id] <= 0:
                    del self._by_key[slot.key_id]

    def submit(self, slot: Slot, work: Callable[[], T]) -> Future[T]:
        """Run ``work`` on a worker of the slot's lane; the slot is released when it finishes.

        The returned future only reports: cancelling it (a request handler cancelled while the
        work waits in the queue, e.g. its client timed out) does not cancel the work, which
        was admitted and charged and must still run and record its outcome.
        """
        lane = self._lanes[slot.lane]

        def run() -> T:
            start = time.perf_counter()
            try:
                return work()
            finally:
                with self._lock:
                    lane.recent.append(time.perf_counter() - start)
                slot.release()

        try:
            queued = lane.executor.submit(run)
        except RuntimeError:
            slot.release()
            raise
        report: Future[T] = Future()

        def forward(done: Future[T]) -> None:
            if done.cancelled():  # only shutdown(cancel_futures=True): run() never started
                slot.release()
                report.cancel()
                return
            if not report.set_running_or_notify_cancel():
                return  # nobody waits for the answer any more
            error = done.exception()
            if error is not None:
                report.set_exception(error)
            else:
                report.set_result(done.result())

        queued.add_done_callback(forward)
        return report

    def retry_after(self, lane: Lane = "release") -> int:
        """Seconds until a slot of ``lane`` is likely free: its queue length x mean recent
        duration / workers."""
        chosen = self._lanes[lane]
        with self._lock:
            return chosen.retry_after(chosen.in_use)

    def shutdown(self) -> None:
        for lane in self._lanes.values():
            lane.executor.shutdown(wait=False, cancel_futures=True)
