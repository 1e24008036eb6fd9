"""How the engine uses threads: Numba's threading layer, how idle workers wait, and how many
threads one sampler run may use.

Numba fixes its threading layer, and OpenMP reads its wait policy, when the first parallel
kernel runs; :func:`configure` runs when ``dp_core.engine`` is imported, before any kernel can,
and only fills in what the environment leaves unset, so every choice stays overridable
(docs/engine.md "Threads", docs/deploy.md):

``NUMBA_THREADING_LAYER_PRIORITY`` (default ``omp tbb workqueue``)
    With ``NUMBA_THREADING_LAYER`` unset (Numba's ``default``), the first of these that loads.
    OpenMP (GNU libgomp, which Numba's wheels link; the image installs it): a parallel region
    with one thread runs inline on the caller (about 2 µs), and every calling thread gets its
    own team, so releases in several job threads never wait for each other's workers. TBB is
    taken only where installed and loadable; ``workqueue``, the last resort, pays a worker
    hand-off (about 75 µs here) even with one thread and is not safe for concurrent callers.
    ``NUMBA_THREADING_LAYER`` names one layer outright.
``OMP_WAIT_POLICY`` (default ``PASSIVE``)
    Idle OpenMP workers sleep at once instead of spinning for up to 300 000 iterations (GNU's
    default), which would take CPU from the thread that has the work whenever the machine has
    more runnable threads than cores.
``NUMBA_NUM_THREADS``
    Numba's own (default: the number of cores); the most any call uses.
``PRIVFLOW_SERIAL_WORK`` (default :data:`DEFAULT_SERIAL_WORK`)
    A sampler run whose work per step (:func:`step_work`) is below this runs every kernel on its
    calling thread (:func:`run_threads`): there a step's kernels take microseconds to a
    millisecond, no more than waking a worker costs on a busy machine (a scheduler tick,
    1-4 ms), and a single thread loses only its fair share of the CPU under contention instead
    of stalling at every parallel region. ``0`` lets every run use all threads.

Results never depend on the number of threads (per-particle streams, fixed reduction orders), so
none of this changes a sample, only how fast it is drawn.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "DEFAULTS",
    "DEFAULT_SERIAL_WORK",
    "configure",
    "current_threads",
    "run_threads",
    "serial_work",
    "step_work",
    "threads",
]

DEFAULTS = {
    "NUMBA_THREADING_LAYER_PRIORITY": "omp tbb workqueue",
    "OMP_WAIT_POLICY": "PASSIVE",
}
"""Environment defaults applied by :func:`configure` where the variable is unset."""

DEFAULT_SERIAL_WORK = 4_000_000
"""Work per step (:func:`step_work`) below which a sampler run is single-threaded: measured on
this 2-core machine (docs/benchmarks.md, "Release speed"), two threads gain nothing in 1-D up to
N = 32768 (work 2.1e6) and 12% in 2-D at N = 2000 (8e6), 46% at N = 4000."""


def configure() -> None:
    """Fill in :data:`DEFAULTS` where the environment leaves them unset (idempotent).

    Called on ``import dp_core.engine``. If Numba was imported first it has read its
    configuration already, so the priority is set on ``numba.config`` too, as long as no
    parallel kernel has run (after that the layer is fixed and this changes nothing).
    """
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    config = sys.modules.get("numba.core.config")
    if config is not None:
        config.THREADING_LAYER_PRIORITY = os.environ["NUMBA_THREADING_LAYER_PRIORITY"].split()


def serial_work() -> int:
    """``PRIVFLOW_SERIAL_WORK``: the work per step below which a run is single-threaded."""
    raw = os.environ.get("PRIVFLOW_SERIAL_WORK", "").strip()
    if not raw:
        return DEFAULT_SERIAL_WORK
    try:
        value = int(float(raw))
    except ValueError:
        raise ValueError(f"PRIVFLOW_SERIAL_WORK must be a number, got {raw!r}") from None
    return max(0, value)


def step_work(n_particles: int, dim: int) -> int:
    """A size for one SHK step's work: the KDE's pair terms N² d in d >= 2, and 64 N in 1-D,
    where the cell expansion is linear in N (about the cost of 64 pair terms per particle)."""
    return 64 * n_particles if dim == 1 else n_particles * n_particles * dim


def run_threads(n_particles: int, dim: int) -> int | None:
    """Threads for a sampler run of ``n_particles`` in ``dim`` dimensions: 1 when its
    :func:`step_work` is below :func:`serial_work`, else ``None`` (every thread Numba has)."""
    return 1 if step_work(n_particles, dim) < serial_work() else None


def current_threads() -> int:
    """The number of threads a kernel called from this thread may use now."""
    import numba

    return numba.get_num_threads()


@contextmanager
def threads(count: int | None) -> Iterator[None]:
    """Run the body's kernels on at most ``count`` threads (``None``: leave as is).

    Numba's thread count is per calling thread, so this affects only the caller (a job thread
    of the service, say) and is restored on exit.
    """
    if count is None:
        yield
        return
    import numba

    before = numba.get_num_threads()
    wanted = max(1, min(int(count), numba.config.NUMBA_NUM_THREADS))
    if wanted == before:
        yield
        return
    numba.set_num_threads(wanted)
    try:
        yield
    finally:
        numba.set_num_threads(before)
