"""MMD witness gradient against vectorised NumPy, and the cost of one step of each flow.

Prints one markdown section (the command, the machine, a noise probe, two tables):

1. **MMD witness gradient** (Gaussian kernel, flows note (F 7)),
   ``g_i = Σ_j a_j ∇_1k(x_i, z_j) − Σ_m b_m ∇_1k(x_i, y_m)`` with N = M, uniform weights, timed in
   interleaved rounds (one call of each per round):
   - engine, plain (x = z, β = 0): ``PointKernel.witness_gradient`` — the antisymmetric self
     sum plus one cross sum (N ≥ 1024), or one stacked cross sum;
   - engine, noisy (x = z + βu): one fused cross sum over the stacked ``[z; y]``;
   - NumPy, BLAS expansion: ``dp_core.reference.mmd.witness_gradient_numpy`` — blocks of rows,
     ``|x|² + |s|² − 2x·sᵀ`` by one matrix product, ``np.exp``, two matrix-vector products
     (the fastest vectorised NumPy we know; OpenBLAS with its default threads);
   - NumPy, explicit differences: ``witness_gradient_reference`` (chunked ``x − s``, no
     cancellation; the reference the tests use).
   Ratio = NumPy / engine in the same run (best / best, and median / median).
2. **One step of each flow** (engine only, informational): MMD (N = M = 4000, d = 2; plain and
   noisy), DrMMD (fixed λ: witness sum, one kernel sum at the targets, two triangular solves),
   the DrMMD set-up (target Gram + Cholesky, once per run), Muon on the paper-sized
   student–teacher task (N = 1000 units of 3×51, 1000 inputs, full batch; regularised and
   Newton–Schulz), and the noisy MMD flow on the same task (minibatch of 100).

Run from the repository root: ``.venv/bin/python bench/bench_flows.py`` (``--quick``: fewer
rounds). Numba runs on min(2, available) threads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import command_line, fmt_seconds, machine_description, markdown_table, wakeup_probe

from dp_core.flows.drmmd import DrMMDFlow
from dp_core.flows.mmd import MMDFlow
from dp_core.flows.muon import MuonFlow, default_eps
from dp_core.flows.student_teacher import StudentTeacherTask
from dp_core.flows.witness import NoiseSchedule, PointKernel
from dp_core.reference.mmd import witness_gradient_numpy, witness_gradient_reference

CASES = ((1000, 2), (4000, 2), (4000, 10))
NAMES = (
    "engine, plain (x = z)",
    "engine, noisy (x = z + βu)",
    "NumPy, BLAS expansion",
    "NumPy, explicit differences",
)


def _problem(n: int, d: int):
    gen = np.random.default_rng(100 + d)
    z = gen.normal(size=(n, d))
    y = gen.normal(size=(n, d)) + 0.5
    a = np.full(n, 1.0 / n)
    sigma = 0.5 * np.sqrt(d)
    at = z + 0.1 * sigma * gen.normal(size=(n, d))
    return z, a, y, a.copy(), at, sigma


def witness_calls(n: int, d: int) -> dict[str, Callable[[], object]]:
    z, a, y, b, at, sigma = _problem(n, d)
    k = PointKernel("gaussian", sigma)
    return {
        NAMES[0]: lambda: k.witness_gradient(z, z, a, y, b, True),
        NAMES[1]: lambda: k.witness_gradient(at, z, a, y, b, False),
        NAMES[2]: lambda: witness_gradient_numpy(z, z, a, y, b, sigma),
        NAMES[3]: lambda: witness_gradient_reference(z, z, a, y, b, "gaussian", sigma),
    }


def check_agreement(n: int, d: int) -> float:
    """Largest relative difference between the engine and the NumPy anchor (plain case)."""
    calls = witness_calls(n, d)
    eng, ref = calls[NAMES[0]](), calls[NAMES[3]]()
    return float(np.abs(eng - ref).max() / np.abs(ref).max())


def bench_witness(rounds: int) -> tuple[str, dict[tuple[int, int], dict[str, list[float]]]]:
    times: dict[tuple[int, int], dict[str, list[float]]] = {}
    for n, d in CASES:
        calls = witness_calls(n, d)
        for fn in calls.values():
            fn()  # warm-up (compile or load, first-touch)
        cell = {name: [] for name in calls}
        for _ in range(rounds):
            for name, fn in calls.items():
                start = time.perf_counter()
                fn()
                cell[name].append(time.perf_counter() - start)
        times[(n, d)] = cell
    rows = []
    for (n, d), cell in times.items():
        fastest_np = min(cell[NAMES[2]]), statistics.median(cell[NAMES[2]])
        for name in NAMES:
            best, med = min(cell[name]), statistics.median(cell[name])
            pairs = n * 2 * n
            ratio = (
                f"{fastest_np[0] / best:.1f}x / {fastest_np[1] / med:.1f}x"
                if name.startswith("engine")
                else "—"
            )
            rows.append(
                [n, d, name, fmt_seconds(best), fmt_seconds(med), f"{pairs / best:.2e}", ratio]
            )
    header = [
        "N = M",
        "d",
        "implementation",
        "best",
        "median",
        "pairs/s (best)",
        "NumPy BLAS ÷ this (best / median)",
    ]
    return markdown_table(header, rows), times


def _time_steps(step, state, steps: int) -> tuple[float, float]:
    state, _ = step(state)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, _ = step(state)
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def bench_steps(steps: int) -> str:
    rows = []
    z, _, y, b, _, sigma = _problem(4000, 2)
    kernel = PointKernel("gaussian", sigma)
    for beta in (0.0, 0.1):
        flow = MMDFlow(kernel, y, b, 0.1, NoiseSchedule(level=beta))
        best, med = _time_steps(flow.build_step(), flow.init(z, seed=0), steps)
        rows.append(
            [f"MMD step, N = M = 4000, d = 2, β = {beta:g}", fmt_seconds(best), fmt_seconds(med)]
        )
    dr = DrMMDFlow(kernel, y, b, 1e-3, 0.1)
    start = time.perf_counter()
    dr.solver()
    setup = time.perf_counter() - start
    best, med = _time_steps(dr.build_step(), dr.init(z, seed=0), steps)
    rows.append(["DrMMD step (fixed λ), N = M = 4000, d = 2", fmt_seconds(best), fmt_seconds(med)])
    rows.append(["DrMMD set-up: K_YY (4000²) + Cholesky, once", fmt_seconds(setup), "—"])
    task = StudentTeacherTask(batch_size=100)
    units = task.init_particles(1000, seed=0)
    eps = default_eps(task.value_and_gradient(units)[1])
    for update in ("regularized", "newton_schulz"):
        flow = MuonFlow(task, eps=eps, update=update)
        best, med = _time_steps(flow.build_step(), flow.init(units), max(3, steps // 4))
        rows.append(
            [
                f"Muon step ({update}), student–teacher N = 1000, 3×51, 1000 inputs",
                fmt_seconds(best),
                fmt_seconds(med),
            ]
        )
    mmd = MMDFlow(task.kernel(), task.targets, task.teacher_weights, 0.05, NoiseSchedule.authors())
    best, med = _time_steps(mmd.build_step(), mmd.init(units.reshape(1000, -1), 0), steps)
    rows.append(
        [
            "MMD + noise step, student–teacher N = 1000, batch 100",
            fmt_seconds(best),
            fmt_seconds(med),
        ]
    )
    return markdown_table(["one step", "best", "median"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    args = parser.parse_args()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    rounds = 3 if args.quick else 9
    agreement = {case: check_agreement(*case) for case in CASES}
    noise = wakeup_probe(3.0)
    witness, times = bench_witness(rounds)
    steps = bench_steps(4 if args.quick else 20)
    noise_end = wakeup_probe(3.0)

    print("## MMD witness gradient and flow steps\n")
    print(f"Command: `{command_line()}`\n")
    print("\n".join([*machine_description(), noise + " (start)", noise_end + " (end)"]) + "\n")
    print("### MMD witness gradient (Gaussian kernel): engine vs vectorised NumPy\n")
    print(
        f"{rounds} interleaved rounds, one call of each implementation per round (after one "
        "untimed call); particles N(0, I_d), targets N(0.5, I_d), uniform weights, σ = 0.5√d; "
        "pairs/s counts N·(N + M) pairs. Largest relative difference engine vs the NumPy "
        "reference: "
        + ", ".join(f"{e:.1e} (N = {n}, d = {d})" for (n, d), e in agreement.items())
        + ".\n"
    )
    print(witness + "\n")
    cell = times[(4000, 2)]
    need = []
    for n, d in ((4000, 2), (4000, 10)):
        cell = times[(n, d)]
        for name in NAMES[:2]:
            need.append(
                f"{name} d = {d}: {min(cell[NAMES[2]]) / min(cell[name]):.1f}x (best), "
                f"{statistics.median(cell[NAMES[2]]) / statistics.median(cell[name]):.1f}x "
                "(median)"
            )
    print("Requirement (>= 10x the vectorised NumPy version at N = 4000): " + "; ".join(need))
    print()
    print("### One step of each flow (engine)\n")
    print(steps + "\n")


if __name__ == "__main__":
    main()
