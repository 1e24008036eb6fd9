"""Reproduction of flows note §4.6: Sinkhorn-memory retrieval vs a Euclidean Hopfield baseline.

Memories: K = 50 clouds of m = 16 i.i.d. N(0, I_8) points, uniform weights (memory seed 0).
Queries: memory k (drawn by the query generator) with every point perturbed by N(0, σ² I_8) and
the points randomly permuted; 10 queries per σ in {0.5, 1, 1.5, 2}, query seeds 100 + 10σ.
Retrieval: ``SinkhornMemory.retrieve`` with ε = 0.5 (blur √0.5), β = 20, η = 0.5, τ = 0.003
(fixed, as in the note's table; ``--backtracking`` uses the default Armijo rule instead), 30
steps, Sinkhorn stop 1e-9 / 1000 iterations. Success: argmin_k S_ε(ν_T, μ_k) = k.
Baseline: modern Hopfield on the flattened 128-vector, ξ ← Σ_k softmax(−|ξ − y_k|²/2) y_k,
5 iterations, on the unpermuted and the permuted query.

Run from the repository root: ``.venv/bin/python bench/repro_sinkhorn_memory.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import command_line, machine_description, markdown_table

from dp_core.flows.sinkhorn_memory import SinkhornMemory

K, M, D = 50, 16, 8
SIGMAS = (0.5, 1.0, 1.5, 2.0)


def hopfield(patterns: np.ndarray, query: np.ndarray, iterations: int = 5) -> int:
    """Modern Hopfield on flattened clouds; returns the index of the nearest stored vector."""
    flat = patterns.reshape(K, -1)
    xi = query.ravel()
    for _ in range(iterations):
        z = -0.5 * ((flat - xi) ** 2).sum(axis=1)
        w = np.exp(z - z.max())
        xi = (w / w.sum()) @ flat
    return int(np.argmin(((flat - xi) ** 2).sum(axis=1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--backtracking", action="store_true", help="Armijo τ instead of 0.003")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    patterns = rng.normal(size=(K, M, D))
    start = time.perf_counter()
    memory = SinkhornMemory.store([(p, None) for p in patterns], blur=0.5**0.5, beta=20.0)
    store_s = time.perf_counter() - start
    weight_step = None if args.backtracking else 0.003
    rows = {
        k: []
        for k in (
            "SHK retrieval correct",
            "nearest memory by S_ε at t = 0",
            "retrieved = S_ε-nearest at t = 0",
            "median final S_ε(ν_T, μ_k)",
            "energy non-increasing (queries)",
            "Euclidean Hopfield, unpermuted query",
            "Euclidean Hopfield, permuted query",
            "seconds per query",
        )
    }
    for sigma in SIGMAS:
        qrng = np.random.default_rng(int(100 + 10 * sigma))
        correct = nearest0 = same = monotone = hop_u = hop_p = 0
        finals, secs = [], []
        for _ in range(args.queries):
            k = int(qrng.integers(K))
            noisy = patterns[k] + sigma * qrng.normal(size=(M, D))
            query = noisy[qrng.permutation(M)]
            t0 = time.perf_counter()
            s0 = memory.solve(query, np.full(M, 1.0 / M)).divergences
            res = memory.retrieve(query, steps=30, step_size=0.5, weight_step=weight_step)
            secs.append(time.perf_counter() - t0)
            correct += res.nearest_pattern == k
            nearest0 += int(np.argmin(s0)) == k
            same += res.nearest_pattern == int(np.argmin(s0))
            monotone += bool(np.all(np.diff(res.energy_trace) <= 0))
            finals.append(float(res.divergences[k]))
            hop_u += hopfield(patterns, noisy) == k
            hop_p += hopfield(patterns, query) == k
        n = args.queries
        rows["SHK retrieval correct"].append(f"{correct}/{n}")
        rows["nearest memory by S_ε at t = 0"].append(f"{nearest0}/{n}")
        rows["retrieved = S_ε-nearest at t = 0"].append(f"{same}/{n}")
        rows["median final S_ε(ν_T, μ_k)"].append(f"{statistics.median(finals):.2g}")
        rows["energy non-increasing (queries)"].append(f"{monotone}/{n}")
        rows["Euclidean Hopfield, unpermuted query"].append(f"{hop_u}/{n}")
        rows["Euclidean Hopfield, permuted query"].append(f"{hop_p}/{n}")
        rows["seconds per query"].append(f"{statistics.median(secs):.2f}")
    tau = "Armijo backtracking (τ₀ = 1e-2)" if weight_step is None else "τ = 0.003"
    print("## Sinkhorn-memory retrieval (flows note §4.6)\n")
    print(f"Command: `{command_line()}`\n")
    print("\n".join(machine_description()) + "\n")
    print(
        f"K = {K} memories of m = {M} N(0, I_{D}) points; ε = 0.5, β = 20, η = 0.5, {tau}, "
        f"30 steps, Sinkhorn stop 1e-9 / 1000 iterations; {args.queries} permuted queries per σ. "
        f"Storing the memory (50 symmetric potentials) took {store_s:.2f} s.\n"
    )
    header = ["σ", *[f"{s:g}" for s in SIGMAS]]
    print(markdown_table(header, [[name, *vals] for name, vals in rows.items()]))
    print()


if __name__ == "__main__":
    main()
