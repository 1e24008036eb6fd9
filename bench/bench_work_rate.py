"""Work units per second of each kind of work the service admits (service/cost.py).

Each row runs one piece of work the way the service runs it (the same dp_core entry points and
defaults), estimates its units with the service's own cost function and prints units / seconds.
The service turns units into ``estimated_seconds`` with one rate,
``PRIVFLOW_WORK_UNITS_PER_SECOND``; this table is what that rate and the cost model's weights
(record weights, flow and exact-draw weights) are read from: a kind whose rate sits far from the
others needs its weight changed. The "loss evaluation" rows time one utility evaluation at 2000
particles, the unit of an SHK step's record pass. Sizes suit a small, shared machine (a few
minutes); on a loaded machine read the ratios between rows, not the absolute rates.

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
from dp_core.flows.muon import run_muon_flow
from dp_core.flows.sinkhorn_memory import SinkhornMemory
from dp_core.flows.student_teacher import StudentTeacherTask
from dp_core.generators import fit_generator
from dp_core.privacy.mechanism import ExponentialMechanism
from dp_core.privacy.utilities import (
    ClippedMean,
    KMeans,
    LogisticRegression,
    Mode,
    Quantile,
)
from service import cost
from service.actions.releases import record_weight, release_estimate

Case = tuple[str, Callable[[], tuple[int, Callable[[], object]]]]


def _release(family: object, records: np.ndarray, n_samples: int = 1, **kw: object) -> tuple:
    n = records.shape[0]
    mechanism = ExponentialMechanism(family, 1.0, n_max=n, **kw)  # type: ignore[arg-type]
    plan = mechanism.plan(n_samples)
    return release_estimate(family, plan, n).units, lambda: mechanism.sample(
        records, n_samples, plan=plan
    )


def _loss(family: object, records: np.ndarray, points: np.ndarray) -> tuple:
    prepared = family.prepare(records)  # type: ignore[attr-defined]
    n, dim = records.shape[0], points.shape[1]
    units = points.shape[0] * n * dim * record_weight(family)
    return units, lambda: family.loss(prepared, points)  # type: ignore[attr-defined]


def cases(rng: np.random.Generator) -> list[Case]:
    one_d = rng.uniform(0, 100, (1000, 1))
    two_d = rng.uniform(0, 1, (20_000, 2))
    labelled = np.column_stack([two_d, rng.integers(0, 2, 20_000)])
    box = ((0.0, 0.0), (1.0, 1.0))
    centres, ball = rng.uniform(0, 1, (2000, 2)), rng.uniform(-0.5, 0.5, (2000, 2))
    pairs = rng.uniform(0, 1, (2000, 4))
    out: list[Case] = [
        ("SHK quantile release, N = 2000", lambda: _release(Quantile(0.5, 0, 100), one_d[:, 0])),
        (
            "SHK 2-means release (record pass), N = 200",
            lambda: _release(KMeans(*box, k=2), two_d, particles=200),
        ),
        (
            "exact grid mean d = 2, 1 sample",
            lambda: _release(ClippedMean(*box), two_d[:2000], method="exact"),
        ),
        (
            "exact grid mean d = 2, 20 samples",
            lambda: _release(ClippedMean(*box), two_d[:2000], 20, method="exact"),
        ),
        (
            "exact quantile, 200 samples",
            lambda: _release(Quantile(0.5, 0, 100), one_d[:, 0], 200, method="exact"),
        ),
    ]
    letters = np.array(list("abcdefgh"))[rng.integers(0, 8, 20_000)]
    out.append(
        (
            "exact mode, 8 categories, 200 samples",
            lambda: _release(Mode(tuple("abcdefgh")), letters, 200, method="exact"),
        )
    )
    for name, family, records, points in (
        ("mean d = 2, clip 0.2, gradient", ClippedMean(*box, clip=0.2), two_d, centres),
        ("mean d = 2, clip 0.2, loss", ClippedMean(*box, clip=0.2, form="loss"), two_d, centres),
        ("logistic d = 2, gradient", LogisticRegression(*box, radius=1.0), labelled, ball),
        (
            "logistic d = 2, loss",
            LogisticRegression(*box, radius=1.0, form="loss"),
            labelled,
            ball,
        ),
        ("2-means d = 2, gradient", KMeans(*box, k=2), two_d, pairs),
        ("2-means d = 2, clip 0.2, gradient", KMeans(*box, k=2, clip=0.2), two_d, pairs),
        ("2-means d = 2, loss", KMeans(*box, k=2, form="loss"), two_d, pairs),
    ):
        out.append(
            (
                f"loss evaluation, {name}, n = 20000",
                lambda f=family, r=records, p=points: _loss(f, r, p),  # type: ignore[misc]
            )
        )
    source, target = rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2)) + 1.0

    def mmd() -> tuple[int, Callable[[], object]]:
        units = cost.mmd_work(source=1000, target=1000, steps=500, dim=2).units
        return units, lambda: run_mmd_flow(
            source, target, step_size=0.1, n_steps=500, kernel="gaussian", bandwidth=1.0,
            trace_every=10,  # the service's spacing: about 50 trace rows
        )  # fmt: skip

    def muon() -> tuple[int, Callable[[], object]]:
        task = StudentTeacherTask(input_dim=50, hidden=3, n_train=1000, n_valid=1, batch_size=1000)
        units = cost.muon_work(particles=256, steps=10, train=1000, dim=task.dim).units
        return units, lambda: run_muon_flow(task, n_particles=256, n_steps=10, seed=1)

    patterns = [(rng.normal(size=(300, 2)) + 3 * k, None) for k in range(3)]
    query = rng.normal(size=(200, 2))

    def memory() -> tuple[int, Callable[[], object]]:
        stored = SinkhornMemory.store(patterns, 0.5, 1.0)
        units = cost.memory_retrieval_work(query=200, patterns=900, steps=10, dim=2).units
        return units, lambda: stored.retrieve(query, None, steps=10)

    def memory_store() -> tuple[int, Callable[[], object]]:
        units = cost.memory_store_work(sizes=[300, 300, 300], dim=2).units
        return units, lambda: SinkhornMemory.store(patterns, 0.5, 1.0)

    cloud = rng.normal(size=(2000, 2))

    def fit() -> tuple[int, Callable[[], object]]:
        units = cost.generator_fit_work(
            samples=16384, max_steps=20, points=2000, dim=2, points_field="points"
        ).units
        return units, lambda: fit_generator(cloud, samples=16384, max_steps=20, tolerance=1e-12)

    generator = fit_generator(cloud, samples=4096, max_steps=20)

    def sample() -> tuple[int, Callable[[], object]]:
        units = cost.generator_sample_work(n=200_000, points=2000, dim=2).units
        return units, lambda: generator.sample(200_000, 1)

    out += [
        ("MMD flow, N = M = 1000, d = 2, 500 steps", mmd),
        ("Muon flow, 256 particles, 153 parameters, 1000 inputs, 10 steps", muon),
        ("memory retrieval, 200 query points, 3 x 300 stored, 10 steps", memory),
        ("memory storing, 3 x 300 points", memory_store),
        ("generator fit, 2000 points, 16384 samples, 20 evaluations (at most)", fit),
        ("generator samples, 200000 from 2000 points", sample),
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", default="", help="run the rows whose name contains this")
    args = parser.parse_args()
    print("## Work units per second (service/cost.py)\n")
    print(f"Command: `{command_line()}`\n")
    for line in machine_description():
        print(line)
    print(f"- Load average at start: {load_average()}", flush=True)
    rows: list[list[object]] = []
    for name, build in cases(np.random.default_rng(0)):
        if args.only not in name:
            continue
        units, run = build()
        timing = time_call(run, repeats=args.repeats, warmup=1)  # the warm-up compiles
        rate = units / timing.best
        rows.append([name, f"{units:.3g}", fmt_seconds(timing.best), fmt_rate(rate)])
        print(f"{name}: {fmt_rate(rate)} units/s", file=sys.stderr, flush=True)
    print(f"- Load average at end: {load_average()}\n")
    print(markdown_table(["work", "units", "best", "units/s"], rows))


if __name__ == "__main__":
    main()
