"""The cost model's pure functions and the worker pool's lanes and per-key shares, without HTTP."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from dp_core.privacy.mechanism import ExponentialMechanism
from dp_core.privacy.utilities import (
    ClippedMean,
    KMeans,
    LinearRegression,
    LogisticRegression,
    Mode,
    Quantile,
)
from service import cost
from service.actions.releases import passes_over_records, release_estimate
from service.jobs import Busy, JobPool, Slot

# --------------------------------------------------------------------------- cost model


def test_cost_module_imports_no_numerics() -> None:
    code = (
        "import sys, service.cost; "
        "assert not [m for m in sys.modules if m.split('.')[0] in ('dp_core', 'numpy')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shk_release_units_are_the_documented_formula() -> None:
    estimate = cost.shk_release_work(
        particles=100, flow_steps=7, relaxation_moves=3, dim=2, records=1000, record_weight=2
    )
    assert estimate.units == 100 * (7 + 3) * 1000 * 2 * 2 + 100 * 100 * 7 * 2
    assert estimate.drivers[0] == "sampler.particles"
    assert estimate.as_dict(1e6) == {"units": estimate.units, "estimated_seconds": 4.14}


@pytest.mark.parametrize(
    ("function", "base"),
    [
        (cost.shk_release_work, {"particles": 50, "flow_steps": 9, "relaxation_moves": 4,
                                 "dim": 2, "records": 300}),
        (cost.mmd_work, {"source": 30, "target": 40, "steps": 10, "dim": 3}),
        (cost.drmmd_work, {"source": 30, "target": 40, "steps": 10, "dim": 3}),
        (cost.muon_work, {"particles": 8, "steps": 10, "train": 100, "dim": 12}),
        (cost.memory_retrieval_work, {"query": 20, "patterns": 60, "steps": 5, "dim": 2}),
        (cost.generator_fit_work, {"samples": 256, "max_steps": 10, "points": 50, "dim": 2,
                                   "points_field": "points"}),
        (cost.generator_sample_work, {"n": 100, "points": 50, "dim": 2}),
        (cost.exact_release_work, {"candidates": 64, "records": 500, "dim": 2, "n_samples": 3,
                                   "kind": "grid"}),
    ],
)  # fmt: skip
def test_every_estimate_grows_with_each_of_its_sizes(
    function: Callable[..., cost.WorkEstimate], base: dict[str, Any]
) -> None:
    units = function(**base).units
    assert units > 0
    for name, value in base.items():
        if isinstance(value, int):
            assert function(**{**base, name: value * 2}).units > units, name


def test_which_families_pass_over_the_records() -> None:
    box = ((0.0, 0.0), (1.0, 1.0))
    assert passes_over_records(LogisticRegression(*box, radius=1.0))
    assert passes_over_records(KMeans(*box, k=2))
    assert passes_over_records(ClippedMean(*box, clip=0.5))  # the clip binds in 2-D
    assert not passes_over_records(ClippedMean(*box, clip=5.0))  # >= diameter: centred sums
    assert not passes_over_records(ClippedMean((0.0,), (1.0,), clip=0.1))  # 1-D: sorted
    assert not passes_over_records(Quantile(0.5, 0.0, 1.0))
    assert not passes_over_records(LinearRegression((0.0,), (1.0,), 0.0, 1.0, radius=1.0))


def test_release_estimates_follow_the_plan_and_the_size_bound() -> None:
    family = ClippedMean((0.0, 0.0), (1.0, 1.0), clip=0.5)
    plan = ExponentialMechanism(family, 1.0, n_max=1000, particles=64).plan(1)
    schedule = plan.schedule
    assert schedule is not None
    estimate = release_estimate(family, plan, 1000)
    steps, moves = schedule.n_steps, schedule.relaxation.moves
    weight = 6  # the gradient form's pass with a binding clip (RECORD_WEIGHTS)
    assert estimate.units == 64 * (steps + moves) * 1000 * 2 * weight + 64 * 64 * steps * 2
    exact = ExponentialMechanism(family, 1.0, n_max=1000, method="exact")
    one, many = (release_estimate(family, exact.plan(m), 1000).units for m in (1, 100))
    assert many > 50 * (one - 1000 * 4096 * 2 * cost.GRID_SCORE_UNITS)
    mode = Mode(("a", "b", "c"))
    mode_plan = ExponentialMechanism(mode, 1.0, n_max=1000, method="exact").plan(2)
    assert release_estimate(mode, mode_plan, 1000).drivers == ("n_samples",)


# --------------------------------------------------------------------------- pool


def test_lanes_are_separate_and_shares_span_both() -> None:
    pool = JobPool(1, 1, compute_workers=1, compute_capacity=2, per_key=2)
    try:
        release = pool.admit("release", "a")
        assert isinstance(release, Slot)
        full = pool.admit("release", "b")
        assert isinstance(full, Busy) and full.reason == "queue" and full.retry_after >= 1
        compute = pool.admit("compute", "a")  # the release lane being full does not matter
        assert isinstance(compute, Slot)
        share = pool.admit("compute", "a")  # "a" holds 2 over both lanes
        assert isinstance(share, Busy) and share.reason == "key"
        other = pool.admit("compute", "b")
        assert isinstance(other, Slot)
        assert pool.depth == 3 and pool.lane_depth("compute") == 2
        compute.release()
        compute.release()  # idempotent
        assert isinstance(pool.admit("compute", "a"), Slot)
    finally:
        pool.shutdown()


def test_a_claim_counts_an_admitted_slot_against_its_key() -> None:
    pool = JobPool(1, 4, per_key=1)
    try:
        first, second = pool.admit("release"), pool.admit("release")
        assert isinstance(first, Slot) and isinstance(second, Slot)
        assert pool.claim(first, "a") is None
        assert pool.claim(first, "a") is None  # already counted
        busy = pool.claim(second, "a")
        assert isinstance(busy, Busy) and busy.reason == "key"
        assert pool.claim(second, "b") is None
        first.release()
        assert isinstance(pool.admit("release", "a"), Slot)
    finally:
        pool.shutdown()


def test_a_blocked_compute_worker_does_not_block_releases() -> None:
    pool = JobPool(1, 4, compute_workers=1, compute_capacity=4)
    gate = threading.Event()
    try:
        blocked = pool.submit(pool.try_acquire("compute"), lambda: gate.wait(30))
        done = pool.submit(pool.try_acquire("release"), lambda: "released")
        assert done.result(timeout=30) == "released"
        assert not blocked.done()
    finally:
        gate.set()
        pool.shutdown()
