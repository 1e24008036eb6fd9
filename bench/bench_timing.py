"""Release time against the private record count n, at fixed public parameters (threat model).

An analyst sees its own request latency. This script measures how much of a release's wall time
depends on the private n, family by family, at fixed public parameters (ε = 1, size bound 10^6,
the default schedule except a fixed particle count), so that docs/privacy.md can state what the
latency channel reveals. For each family and n it reports

* ``prepare``: building the private summary (sorting, prefix sums, sufficient statistics, or the
  transposed records) — once per release;
* ``per evaluation``: one evaluation of the utility and its gradient at every particle, which a
  release repeats (steps + relaxation moves) times;
* ``release``: a whole ``ExponentialMechanism.sample`` (method ``shk``), and for the families
  that have one the ``exact`` method.

Families evaluated from summaries (quantile, mean, linear regression) have a per-evaluation cost
that does not depend on n (binary searches add log n); the others pass over the records.

Run: ``.venv/bin/python bench/bench_timing.py [--particles 500] [--max-n 100000] [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (
    command_line,
    fmt_seconds,
    load_average,
    machine_description,
    markdown_table,
    time_call,
)

from dp_core.privacy.mechanism import ExponentialMechanism
from dp_core.privacy.utilities import (
    ClippedMean,
    KMeans,
    LinearRegression,
    LogisticRegression,
    Quantile,
)

SIZE_BOUND = 10**6


def _records(family: str, n: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.uniform(-1.0, 1.0, (n, 2))
    if family in ("quantile", "mean 1-D"):
        return rng.normal(0.0, 0.4, (n, 1))
    if family == "linear regression":
        return np.column_stack([x, x @ [0.5, -0.3] + rng.normal(0, 0.2, n)])
    if family == "logistic regression":
        return np.column_stack([x, (x[:, 0] + x[:, 1] > 0).astype(float)])
    return x


FAMILIES = {
    "quantile": Quantile(0.5, -1.0, 1.0),
    "mean 1-D": ClippedMean((-1.0,), (1.0,)),
    "mean 2-D": ClippedMean((-1.0, -1.0), (1.0, 1.0)),
    "linear regression": LinearRegression((-1.0, -1.0), (1.0, 1.0), -2.0, 2.0, 1.0),
    "logistic regression": LogisticRegression((-1.0, -1.0), (1.0, 1.0), 2.0),
    "2-means": KMeans((-1.0, -1.0), (1.0, 1.0), 2),
}
SUMMARISED = {"quantile", "mean 1-D", "mean 2-D", "linear regression"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=500)
    parser.add_argument("--max-n", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="n <= 10^4, one release each")
    args = parser.parse_args()
    max_n = 10_000 if args.quick else args.max_n
    sizes = [n for n in (100, 1_000, 10_000, 100_000, 1_000_000) if n <= max_n]
    repeats = 1 if args.quick else 3
    rng = np.random.default_rng(0)

    print("## Release time against the private record count\n")
    print(f"Command: `{command_line()}`\n")
    print("\n".join(machine_description()))
    print(f"- load average at start: {load_average()}\n")
    print(
        f"ε = 1, size bound {SIZE_BOUND:,}, {args.particles} particles, default steps and "
        "relaxation moves; median of "
        f"{repeats} release(s) after one warm-up. `exact` is the exact method (grid EM for the "
        "2-D families, the continuous exact quantile).\n"
    )
    rows = []
    for name, utility in FAMILIES.items():
        mechanism = ExponentialMechanism(utility, 1.0, n_max=SIZE_BOUND, particles=args.particles)
        plan = mechanism.plan(1)
        assert plan.schedule is not None
        evaluations = plan.schedule.n_steps + plan.schedule.relaxation.moves
        exact_mech = (
            ExponentialMechanism(utility, 1.0, n_max=SIZE_BOUND, method="exact")
            if utility.domain.dim <= 3
            else None
        )
        for n in sizes:
            if name not in SUMMARISED and n > 100_000:
                continue
            records = _records(name, n, rng)
            prepare = time_call(lambda u=utility, r=records: u.prepare(r), repeats=3)
            prepared = utility.prepare(records)
            points = np.ascontiguousarray(
                np.random.default_rng(1).uniform(-0.5, 0.5, (args.particles, utility.domain.dim))
            )
            evaluation = time_call(lambda u=utility, p=prepared, x=points: u.loss(p, x), repeats=5)
            release = time_call(
                lambda m=mechanism, r=records: m.sample(r), repeats=repeats, warmup=1
            )
            exact = math.nan
            if exact_mech is not None:
                start = time.perf_counter()
                exact_mech.sample(records)
                exact = time.perf_counter() - start
            rows.append(
                [
                    name,
                    f"{n:,}",
                    fmt_seconds(prepare.median),
                    fmt_seconds(evaluation.median),
                    evaluations,
                    fmt_seconds(release.median),
                    fmt_seconds(exact) if math.isfinite(exact) else "—",
                ]
            )
            print(" | ".join(str(c) for c in rows[-1]), file=sys.stderr)
    header = ["family", "n", "prepare", "per evaluation", "evaluations", "release (shk)", "exact"]
    print(markdown_table(header, rows))
    print(f"\n- load average at end: {load_average()}")


if __name__ == "__main__":
    main()
