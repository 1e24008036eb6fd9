"""Work units per second of each kind of work the service admits (service/cost.py).

Each row runs one piece of work the way the service runs it (the same dp_core entry points),
estimates its units with the service's own cost function and prints units / seconds. The
service turns units into ``estimated_seconds`` with one rate, ``PRIVFLOW_WORK_UNITS_PER_SECOND``;
this table is what that rate and the cost model's weights (``GRID_SCORE_UNITS``,
``EXACT_DRAW_UNITS``, ``LOGISTIC_RECORD_WEIGHT``) are read from. Sizes are small enough for a
loaded 2-core machine (about 2 minutes); ``--repeats`` trades time for less noise. On a loaded
machine read the ratios between rows, not the absolute rates.

    .venv/bin/python bench/bench_work_rate.py
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (
    command_line,
    fmt_rate,
    fmt_seconds,
    load_average,
    machine_description,
    markdown_table,
    time_call,
)

from dp_core.flows.mmd import run_mmd_flow
from dp_core.privacy.mechanism import ExponentialMechanism
from dp_core.privacy.utilities import (
    ClippedMean,
    KMeans,
    LogisticRegression,
    Mode,
    Quantile,
)
from service import cost
from service.actions.releases import release_estimate


def _release(family: object, records: np.ndarray, n_samples: int = 1, **kw: object) -> tuple:
    n = records.shape[0]
    mechanism = ExponentialMechanism(family, 1.0, n_max=n, **kw)  # type: ignore[arg-type]
    plan = mechanism.plan(n_samples)
    estimate = release_estimate(family, plan, n)

    def run() -> None:
        mechanism.sample(records, n_samples, plan=plan)

    return estimate.units, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows: list[list[object]] = []
    cases: list[tuple[str, Callable[[], tuple[int, Callable[[], None]]]]] = []

    def shk(name: str, family: object, records: np.ndarray, **kw: object) -> None:
        cases.append((name, lambda: _release(family, records, **kw)))

    one_d = rng.uniform(0, 100, (1000, 1))
    two_d = rng.uniform(0, 1, (20_000, 2))
    labelled = np.column_stack([rng.uniform(0, 1, (20_000, 2)), rng.integers(0, 2, 20_000)])
    shk("SHK quantile, N = 2000 (summary; KDE dominates)", Quantile(0.5, 0, 100), one_d[:, 0])
    shk(
        "SHK mean d = 2, clip 0.2 (record pass), N = 200",
        ClippedMean((0.0, 0.0), (1.0, 1.0), clip=0.2),
        two_d,
        particles=200,
    )
    shk(
        "SHK logistic d = 2 (record pass), N = 200",
        LogisticRegression((0.0, 0.0), (1.0, 1.0), radius=1.0),
        labelled,
        particles=200,
    )
    shk(
        "SHK 2-means d = 2 (record pass), N = 200",
        KMeans((0.0, 0.0), (1.0, 1.0), k=2),
        two_d,
        particles=200,
    )
    shk(
        "exact grid mean d = 2, 1 sample",
        ClippedMean((0.0, 0.0), (1.0, 1.0)),
        two_d[:2000],
        method="exact",
    )
    cases.append(
        (
            "exact grid mean d = 2, 20 samples",
            lambda: _release(ClippedMean((0.0, 0.0), (1.0, 1.0)), two_d[:2000], 20, method="exact"),
        )
    )
    cases.append(
        (
            "exact quantile, 200 samples",
            lambda: _release(Quantile(0.5, 0, 100), one_d[:, 0], 200, method="exact"),
        )
    )
    letters = np.array(list("abcdefgh"))[rng.integers(0, 8, 20_000)]
    cases.append(
        (
            "exact mode, 8 categories, 200 samples",
            lambda: _release(Mode(tuple("abcdefgh")), letters, 200, method="exact"),
        )
    )
    source, target = rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2)) + 1.0

    def mmd() -> tuple[int, Callable[[], None]]:
        estimate = cost.mmd_work(source=1000, target=1000, steps=20, dim=2)
        return estimate.units, lambda: run_mmd_flow(
            source, target, step_size=0.1, n_steps=20, kernel="gaussian", bandwidth=1.0
        )

    cases.append(("MMD flow, N = M = 1000, d = 2, 20 steps", mmd))

    for name, build in cases:
        units, run = build()
        timing = time_call(run, repeats=args.repeats, warmup=1)
        rows.append([name, f"{units:.3g}", fmt_seconds(timing.best), fmt_rate(units / timing.best)])
    print("## Work units per second (service/cost.py)\n")
    print(f"Command: `{command_line()}`\n")
    for line in machine_description():
        print(line)
    print(f"- Load average at end: {load_average()}\n")
    print(markdown_table(["work", "units", "best", "units/s"], rows))


if __name__ == "__main__":
    main()
