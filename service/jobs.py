"""The bounded worker pool: private releases and long jobs run here, off the event loop.

A request first takes a slot (:meth:`JobPool.try_acquire`); with every slot taken the answer is
429 ``overloaded`` with a ``Retry-After`` estimated from recent durations, and nothing is
charged. The Numba kernels release the GIL and use every core, so a small number of worker
threads keeps the machine busy; the slots beyond them are the queue.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["JobPool", "Slot"]

T = TypeVar("T")


class Slot:
    """A reserved place in the pool; submit work with it exactly once, or give it back."""

    def __init__(self, pool: JobPool) -> None:
        self._pool = pool
        self._open = True

    def release(self) -> None:
        if self._open:
            self._open = False
            self._pool._free()


class JobPool:
    """``workers`` threads and at most ``capacity`` items waiting or running."""

    def __init__(self, workers: int, capacity: int) -> None:
        self.workers = workers
        self.capacity = max(capacity, workers)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="privflow-job")
        self._lock = threading.Lock()
        self._in_use = 0
        self._recent: deque[float] = deque(maxlen=32)

    @property
    def depth(self) -> int:
        """Items waiting or running."""
        return self._in_use

    def try_acquire(self) -> Slot | None:
        with self._lock:
            if self._in_use >= self.capacity:
                return None
            self._in_use += 1
        return Slot(self)

    def _free(self) -> None:
        with self._lock:
            self._in_use -= 1

    def submit(self, slot: Slot, work: Callable[[], T]) -> Future[T]:
        """Run ``work`` on a worker; the slot is released when it finishes.

        The returned future only reports: cancelling it (a request handler cancelled while the
        work waits in the queue, e.g. its client timed out) does not cancel the work, which
        was admitted and charged and must still run and record its outcome.
        """

        def run() -> T:
            start = time.perf_counter()
            try:
                return work()
            finally:
                with self._lock:
                    self._recent.append(time.perf_counter() - start)
                slot.release()

        try:
            queued = self._executor.submit(run)
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

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: queue length x mean recent duration / workers."""
        with self._lock:
            mean = sum(self._recent) / len(self._recent) if self._recent else 1.0
            return max(1, math.ceil(self._in_use * mean / self.workers))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
