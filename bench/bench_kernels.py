"""Pairwise engine kernels against the machine's exp+FMA ceiling, and the accuracy of fastexp.

Prints one markdown section (the command, the machine, a noise probe, then these tables):

1. **Ceiling micro-benchmarks** over N = M = 4096 pairs, rows split over the Numba threads
   (``prange``): the fused loop ``s += w[j] * exp(a[i] - b[j])`` with the engine's vectorisable
   ``fastexp.exp`` compiled with ``fastmath=True`` (reassociation lets LLVM vectorise the
   reduction: the best this machine does per pair; the engine itself never uses fastmath), the
   same loop with only ``reassoc`` allowed (a diagnostic: how much of the ceiling comes from
   fastmath inside the exp), with ``math.exp`` (glibc: the "plain" anchor of
   research/baselines.md) and an FMA-only loop.
2. **Engine kernels** at N = M = 4000 for d in {1, 2, 10}: pairs/s and the fraction of the
   exp+FMA ceiling measured above, in the same run.
   Probes and kernels are timed in interleaved rounds (the machine is shared and noisy).
3. The same on **one thread** (a diagnostic without the second core), and the throughput of
   ``fastexp.exp`` by argument range (arguments below -708 take a slower path).
4. **Accuracy** of ``fastexp.exp`` against ``math.exp`` (glibc) on dense grids.

Run from the repository root: ``.venv/bin/python bench/bench_kernels.py`` (``--quick`` for a
smoke run with fewer repeats). The njit functions below are benchmark probes, not engine code.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (
    command_line,
    fmt_rate,
    fmt_seconds,
    machine_description,
    markdown_table,
    time_call,
    wakeup_probe,
)

from dp_core.engine import kde, kernels
from dp_core.engine.fastexp import exp as fast_exp

CEILING_N = 4096
KERNEL_N = 4000
DIMS = (1, 2, 10)
SELF_NAME = "`kernel_sum_self` gaussian (symmetric)"
GRAD_SELF_NAME = "`kernel_grad_sum_self` gaussian (antisymmetric)"


# --------------------------------------------------------------------------- ceiling probes
def _pair_loop(term, fastmath):
    """out[i] = Σ_j w[j] term(a[i] - b[j]) over all pairs, rows in parallel: one ``term`` and one
    FMA per pair and no other memory traffic than b[j] and w[j] (the ceiling's shape)."""

    @njit(parallel=True, fastmath=fastmath, nogil=True)
    def loop(a, b, w, out):  # pragma: no cover - compiled
        for i in prange(a.shape[0]):
            ai = a[i]
            s = 0.0
            for j in range(b.shape[0]):
                s += w[j] * term(ai - b[j])
            out[i] = s

    return loop


@njit(inline="always")
def _glibc_exp(z):  # pragma: no cover - compiled
    return math.exp(z)


@njit(inline="always")
def _identity(z):  # pragma: no cover - compiled
    return z


# The ceiling: the engine's polynomial exp, fastmath so that LLVM vectorises the reduction.
_ceiling_fastexp = _pair_loop(fast_exp, True)
# Diagnostic: only reassociation allowed.
_ceiling_fastexp_reassoc = _pair_loop(fast_exp, {"reassoc"})
# The baselines.md "plain Numba" anchor: a glibc call per pair (not vectorised).
_ceiling_mathexp = _pair_loop(_glibc_exp, True)
# FMA only (no exp).
_ceiling_fma = _pair_loop(_identity, True)


@njit(nogil=True)
def _exp_both(x, fast, ref):  # pragma: no cover - compiled
    """fast[i] = fastexp.exp(x[i]), ref[i] = math.exp(x[i]) (glibc), no fastmath."""
    for i in range(x.shape[0]):
        fast[i] = fast_exp(x[i])
        ref[i] = math.exp(x[i])


# --------------------------------------------------------------------------- sections
def _ceiling_probes() -> list[tuple[str, object]]:
    return [
        ("exp + FMA, engine `fastexp.exp`, fastmath (**the ceiling**)", _ceiling_fastexp),
        (
            "exp + FMA, `fastexp.exp`, fastmath={'reassoc'} only (diagnostic)",
            _ceiling_fastexp_reassoc,
        ),
        ("exp + FMA, `math.exp` (glibc), fastmath", _ceiling_mathexp),
        ("FMA only, fastmath", _ceiling_fma),
    ]


def _ceiling_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    n = CEILING_N
    a = rng.uniform(-10.0, 0.0, n)  # a - b in [-20, 0]: the kernel range
    b = rng.uniform(0.0, 10.0, n)
    w = rng.uniform(0.5, 1.5, n)
    return a, b, w, np.empty(n)


def _check_probes() -> None:
    """The probes compute the same sums (the fastmath exp is still an exp)."""
    a, b, w, out = _ceiling_inputs()
    _ceiling_fastexp(a, b, w, out)
    ref = out.copy()
    _ceiling_mathexp(a, b, w, out)
    assert np.allclose(out, ref, rtol=1e-12), "fastexp and math.exp probes disagree"


def _engine_cases(d: int) -> list[tuple[str, int, object]]:
    """(name, d, call) for every engine kernel on N = 4000 uniform points in [-4, 4]^d."""
    rng = np.random.default_rng(100 + d)
    n = KERNEL_N
    x = np.ascontiguousarray(rng.uniform(-4.0, 4.0, (n, d)))
    w = np.full(n, 1.0 / n)
    zeros = np.zeros(n)
    log_w = np.full(n, -math.log(n))
    h = _bandwidth(d)
    cases = [
        ("`kernel_sum` gaussian", d, lambda: kernels.kernel_sum(x, x, w, kernels.GAUSSIAN, h)),
        ("`kernel_sum` imq", d, lambda: kernels.kernel_sum(x, x, w, kernels.IMQ, h)),
        (
            "`kernel_grad_sum` gaussian",
            d,
            lambda: kernels.kernel_grad_sum(x, x, w, kernels.GAUSSIAN, h),
        ),
        ("`kde.log_kde_self`", d, lambda: kde.log_kde_self(x, h)),
        ("`logsumexp_cost`", d, lambda: kernels.logsumexp_cost(x, x, log_w, zeros, h * h)),
        (
            "`softmax_barycentre`",
            d,
            lambda: kernels.softmax_barycentre(x, x, log_w, zeros, h * h),
        ),
    ]
    # At the points themselves: each pair evaluated once (symmetric P1, antisymmetric P2).
    cases.append((SELF_NAME, d, lambda: kernels.kernel_sum_self(x, w, kernels.GAUSSIAN, h)))
    cases.append(
        (GRAD_SELF_NAME, d, lambda: kernels.kernel_grad_sum_self(x, w, kernels.GAUSSIAN, h))
    )
    return cases


def _bandwidth(d: int) -> float:
    """The default public bandwidth rule h = 0.1 · 8 · N^(-1/(d+4)) on [-4, 4]^d."""
    return 0.8 * KERNEL_N ** (-1.0 / (d + 4))


def _underflow_share(d: int) -> float:
    """Share of pairs whose Gaussian exp argument is below -708 (fastexp's flush-to-0 range)."""
    rng = np.random.default_rng(100 + d)
    x = rng.uniform(-4.0, 4.0, (KERNEL_N, d))
    limit = 2.0 * 708.0 * _bandwidth(d) ** 2
    count = 0
    for i0 in range(0, KERNEL_N, 500):
        d2 = ((x[i0 : i0 + 500, None, :] - x[None, :, :]) ** 2).sum(axis=2)
        count += int((d2 > limit).sum())
    return count / KERNEL_N**2


def _time_once(fn, calls: int) -> float:
    """Best of ``calls`` back-to-back calls (seconds)."""
    best = math.inf
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_interleaved(rounds: int, dims: tuple[int, ...], names: tuple[str, ...] | None):
    """Time the ceiling probes and the engine kernels in interleaved rounds.

    Every round times each probe (best of 3 calls) and then each engine kernel once, so slow
    phases of a shared machine hit both. Returns ``(probe_times, case_times, ceiling_per_round)``
    with lists of per-round seconds keyed by probe name and by ``(kernel, d)``.
    """
    a, b, w, out = _ceiling_inputs()
    probes = _ceiling_probes()
    cases = [c for d in dims for c in _engine_cases(d) if names is None or c[0] in names]
    for _, fn in probes:  # warm-up (compiles)
        fn(a, b, w, out)
    for _, _, fn in cases:
        fn()
    probe_times: dict[str, list[float]] = {name: [] for name, _ in probes}
    case_times: dict[tuple[str, int], list[float]] = {(n, d): [] for n, d, _ in cases}
    for _ in range(rounds):
        for name, fn in probes:
            probe_times[name].append(_time_once(lambda fn=fn: fn(a, b, w, out), 3))
        for name, d, fn in cases:
            case_times[(name, d)].append(_time_once(fn, 1))
    return probe_times, case_times


def _rate(pairs: int, seconds: list[float]) -> tuple[float, float]:
    return pairs / min(seconds), pairs / statistics.median(seconds)


def ceiling_table(probe_times: dict[str, list[float]]) -> tuple[float, str]:
    """The probe table; returns the exp+FMA ceiling (best pairs/s) too."""
    pairs = CEILING_N * CEILING_N
    rows = []
    for name, ts in probe_times.items():
        best, med = _rate(pairs, ts)
        rows.append(
            [
                name,
                fmt_seconds(min(ts)),
                fmt_seconds(statistics.median(ts)),
                fmt_rate(best),
                fmt_rate(med),
            ]
        )
    ceiling = _rate(pairs, probe_times[_ceiling_probes()[0][0]])[0]
    table = markdown_table(
        ["fused loop, N = M = 4096", "best", "median", "pairs/s (best)", "pairs/s (median)"], rows
    )
    return ceiling, table


def engine_table(
    probe_times: dict[str, list[float]],
    case_times: dict[tuple[str, int], list[float]],
    underflow: dict[int, float] | None = None,
) -> tuple[str, dict[tuple[str, int], tuple[float, float]]]:
    """Engine kernels against the ceiling of the same run.

    "of ceiling (best)" divides the best rates; "paired median" is the median over rounds of
    (kernel rate / ceiling rate of the same round). Returns the table and both fractions.
    """
    ceiling_ts = probe_times[_ceiling_probes()[0][0]]
    ceiling = CEILING_N * CEILING_N / min(ceiling_ts)
    pairs = KERNEL_N * KERNEL_N
    rows = []
    fractions: dict[tuple[str, int], tuple[float, float]] = {}
    for (name, d), ts in case_times.items():
        best, med = _rate(pairs, ts)
        paired = statistics.median(
            (pairs / t) / (CEILING_N * CEILING_N / c) for t, c in zip(ts, ceiling_ts, strict=True)
        )
        fractions[(name, d)] = (best / ceiling, paired)
        row = [name, d]
        if underflow is not None:
            row.append(f"{100 * underflow[d]:.1f}%")
        row += [
            fmt_seconds(min(ts)),
            fmt_seconds(statistics.median(ts)),
            fmt_rate(best),
            fmt_rate(med),
            f"{100 * best / ceiling:.0f}%",
            f"{100 * paired:.0f}%",
        ]
        rows.append(row)
    header = ["kernel (N = M = 4000)", "d"]
    if underflow is not None:
        header.append("pairs below -708")
    header += [
        "best",
        "median",
        "pairs/s (best)",
        "pairs/s (median)",
        "of ceiling (best)",
        "of ceiling (paired median)",
    ]
    return markdown_table(header, rows), fractions


@njit(nogil=True)
def _exp_loop(x, out):  # pragma: no cover - compiled
    """out[i] = fastexp.exp(x[i]), no fastmath (an elementwise throughput probe)."""
    for i in range(x.shape[0]):
        out[i] = fast_exp(x[i])


def exp_range_table(repeats: int) -> str:
    """Throughput of fastexp.exp by argument range, one thread (shows a data-dependent cost)."""
    rng = np.random.default_rng(3)
    rows = []
    m = 1 << 20
    out = np.empty(m)
    for lo, hi in ((-20.0, 0.0), (-700.0, -600.0), (-745.0, -709.0), (-2000.0, -746.0)):
        x = rng.uniform(lo, hi, m)
        t = time_call(lambda x=x: _exp_loop(x, out), repeats=repeats, warmup=1)
        rows.append([f"[{lo:g}, {hi:g}]", fmt_rate(m / t.best), fmt_rate(m / t.median)])
    return markdown_table(["argument range", "exp/s (best)", "exp/s (median)"], rows)


def _errors(x: np.ndarray) -> tuple[float, float, float]:
    """Max relative error, max ulp error, fraction exactly equal; fastexp vs math.exp on x."""
    fast = np.empty_like(x)
    ref = np.empty_like(x)
    _exp_both(x, fast, ref)
    # spot-check that the compiled math.exp is Python's (glibc) math.exp
    for v in x[:: max(1, x.size // 1000)]:
        assert math.exp(float(v)) == ref[np.searchsorted(x, v)]
    diff = np.abs(fast - ref)
    rel = diff / ref
    ulp = diff / np.spacing(ref)
    return float(rel.max()), float(ulp.max()), float(np.mean(fast == ref))


def bench_accuracy(points: int) -> str:
    """Accuracy table of fastexp.exp against math.exp on two dense grids."""
    rows = []
    for lo, hi in ((-708.0, 709.0), (-50.0, 0.0)):
        x = np.linspace(lo, hi, points)
        rel, ulp, same = _errors(x)
        rows.append(
            [f"[{lo:g}, {hi:g}]", f"{points:.1e}", f"{rel:.2e}", f"{ulp:.2f}", f"{100 * same:.1f}%"]
        )
    return markdown_table(
        ["grid", "points", "max relative error", "max ulp error", "bit-identical to glibc"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds (smoke run)")
    args = parser.parse_args()
    rounds = 3 if args.quick else 15
    threads = min(2, numba.config.NUMBA_NUM_THREADS)
    _check_probes()
    noise = wakeup_probe(3.0)

    numba.set_num_threads(threads)
    probe_times, case_times = bench_interleaved(rounds, DIMS, None)
    ceiling, probe_table = ceiling_table(probe_times)
    underflow = {d: _underflow_share(d) for d in DIMS}
    kernel_table, fractions = engine_table(probe_times, case_times, underflow)

    numba.set_num_threads(1)
    req_names = (
        "`kernel_sum` gaussian",
        "`kernel_grad_sum` gaussian",
        "`kde.log_kde_self`",
        SELF_NAME,
        GRAD_SELF_NAME,
    )
    probe_1, case_1 = bench_interleaved(max(3, rounds // 2), (1, 2), req_names)
    ceiling_1, probe_table_1 = ceiling_table(probe_1)
    kernel_table_1, _ = engine_table(probe_1, case_1)
    numba.set_num_threads(threads)

    exp_table = exp_range_table(5 if args.quick else 15)
    accuracy_table = bench_accuracy(2_000_000 if args.quick else 20_000_000)
    noise_end = wakeup_probe(3.0)

    print("## Pairwise kernels against the exp+FMA ceiling\n")
    print(f"Command: `{command_line()}`\n")
    print("\n".join([*machine_description(), noise + " (start)", noise_end + " (end)"]) + "\n")
    print(
        f"Ceiling probes and engine kernels are timed in {rounds} interleaved rounds (each probe "
        "best of 3 calls, each kernel one call per round), so slow phases of the shared machine "
        "hit both; best = fastest round, median = median round. Paired median = median over "
        "rounds of (kernel pairs/s ÷ ceiling pairs/s in the same round).\n"
    )
    print(f"### Ceiling micro-benchmarks ({threads} threads, prange over rows)\n")
    print(probe_table + "\n")
    print(f"exp+FMA ceiling for the ratios below: **{fmt_rate(ceiling)} pairs/s** (best).\n")
    print(f"### Engine kernels, {threads} threads (no fastmath; fraction of the ceiling above)\n")
    print(
        "Points uniform on [-4, 4]^d, bandwidth h = 0.8 N^(-1/(d+4)); 'pairs below -708' is the "
        "share of Gaussian pairs whose exp argument is in fastexp's flush-to-zero range. "
        "pairs/s counts N·M pairs per call for every kernel (for the symmetric "
        "`kernel_sum_self` and the antisymmetric `kernel_grad_sum_self` these are pairs served: "
        "they evaluate each pair once and use it for both points).\n"
    )
    print(kernel_table + "\n")
    parts = [
        f"{label} d={d}: {100 * fractions[(name, d)][0]:.0f}% "
        f"(paired median {100 * fractions[(name, d)][1]:.0f}%)"
        for name, label in (
            ("`kernel_sum` gaussian", "Gaussian kernel sum"),
            ("`kde.log_kde_self`", "log KDE"),
            ("`kernel_grad_sum` gaussian", "kernel-gradient sum (cross)"),
            (GRAD_SELF_NAME, "kernel-gradient sum at the points (antisymmetric)"),
        )
        for d in (1, 2)
    ]
    print("Requirement (>= 50% of the ceiling): " + "; ".join(parts) + ".\n")
    print("### One thread (diagnostic: the same ratios without the second core)\n")
    print(probe_table_1 + "\n")
    print(f"One-thread exp+FMA ceiling: {fmt_rate(ceiling_1)} pairs/s (best).\n")
    print(kernel_table_1 + "\n")
    print("### `fastexp.exp` throughput by argument range (one thread, elementwise loop)\n")
    print(exp_table + "\n")
    print("### Accuracy of `fastexp.exp` against `math.exp` (glibc)\n")
    print(accuracy_table + "\n")


if __name__ == "__main__":
    main()
