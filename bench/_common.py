"""Shared helpers for the benchmark scripts: timing, a machine description, markdown tables.

Not part of the package: the scripts in ``bench/`` import this module by path (``bench`` is put
on ``sys.path`` by each script), and nothing in ``dp_core`` imports it.
"""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit, prange

__all__ = [
    "Timing",
    "command_line",
    "fmt_rate",
    "fmt_seconds",
    "machine_description",
    "markdown_table",
    "time_call",
    "wakeup_probe",
]

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Timing:
    """Wall-clock times of repeated calls, in seconds."""

    best: float
    median: float
    repeats: int


def time_call(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed calls (``perf_counter``).

    Returns the best and the median of the timed calls. The best is the least disturbed by other
    load on a noisy machine; the median is the typical cost.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return Timing(best=min(times), median=statistics.median(times), repeats=len(times))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "dp_core"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    changed = sorted(line[3:] for line in dirty if line.strip())
    return f"commit {head}" + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")


def machine_description() -> list[str]:
    """One-line facts about the machine, the library versions and the code, as markdown items."""
    import numba

    names = ("OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER")
    env = {k: os.environ[k] for k in names if k in os.environ}
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        layer = numba.config.THREADING_LAYER
    return [
        f"- CPU: {_cpu_model()}; os.cpu_count() = {os.cpu_count()}; "
        f"numba threads = {numba.get_num_threads()} (threading layer {layer!r})"
        + (f"; env {env}" if env else ""),
        f"- Python {platform.python_version()}, NumPy {np.__version__}, "
        f"Numba {numba.__version__}, {platform.system()} {platform.release()}",
        f"- Code: {_git_state()}",
    ]


@njit(parallel=True, nogil=True)
def _tiny_parallel(x):  # pragma: no cover - compiled
    for i in prange(x.shape[0]):
        x[i] += 1.0


def wakeup_probe(seconds: float = 3.0) -> str:
    """A noise indicator: latency of an almost empty parallel region, sampled for ``seconds``.

    On a virtual machine whose idle vCPU must be woken by the host, a parallel region can wait
    one or two scheduler ticks (4–8 ms) for its worker thread in "slow phases"; every engine
    kernel call pays that once. Returns a markdown list item with percentiles and the share of
    samples above 1 ms.
    """
    x = np.zeros(64)
    _tiny_parallel(x)
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        _tiny_parallel(x)
        samples.append(time.perf_counter() - start)
        time.sleep(0.01)
    arr = np.array(samples) * 1e6
    p50, p90 = np.percentile(arr, [50, 90])
    return (
        f"- Noise probe (empty 2-thread parallel region, {len(arr)} samples over {seconds:g} s): "
        f"median {p50:.0f} µs, p90 {p90:.0f} µs, {100 * np.mean(arr > 1000):.0f}% of samples "
        "above 1 ms (slow phase: the worker thread waits for a scheduler tick)"
    )


def command_line() -> str:
    """The command that ran this script, relative to the repository root."""
    script = os.path.relpath(sys.argv[0])
    return " ".join([".venv/bin/python", shlex.quote(script), *map(shlex.quote, sys.argv[1:])])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table (cells converted with ``str``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_seconds(t: float) -> str:
    """A duration with a unit chosen for readability (µs, ms or s)."""
    if t < 1e-3:
        return f"{t * 1e6:.0f} µs"
    if t < 1.0:
        return f"{t * 1e3:.1f} ms" if t < 0.1 else f"{t * 1e3:.0f} ms"
    return f"{t:.2f} s"


def fmt_rate(x: float) -> str:
    """A rate such as pairs/s in scientific notation with three significant digits."""
    return f"{x:.2e}"


def load_average() -> str:
    """The machine's 1/5/15-minute load averages from ``uptime`` (printed beside timings)."""
    out = subprocess.run(["uptime"], capture_output=True, text=True).stdout
    return out.strip().split("load average:")[-1].strip()
