"""warm() compiles every served signature; a second process loads them all from the on-disk
cache; after warm-up, serving calls compile nothing new."""

from __future__ import annotations

import json

import numpy as np

from dp_core.engine import kde, kernels, langevin, warmup
from dp_core.engine.potentials import GaussianMixturePotential
from dp_core.engine.rng import new_streams
from dp_core.privacy.grid import grid_scores, public_grid
from dp_core.privacy.utilities import ClippedMean, KMeans, LinearRegression, LogisticRegression
from dp_core.types import Domain


def _served_utilities(rng: np.random.Generator):
    """Every utility path a release can take (both forms, clips that bind and that cannot),
    with records as the service hands them over."""
    x1, x2 = rng.normal(size=(40, 1)), rng.normal(size=(40, 2))
    labelled = np.column_stack([x2, rng.integers(0, 2, 40)])
    targets = np.column_stack([x2, rng.normal(size=40)])
    for form in ("gradient_norm", "loss"):
        for clip in (None, 0.5):
            yield ClippedMean((-1.0,), (1.0,), clip, form=form), x1
            yield ClippedMean((-1.0, -1.0), (1.0, 1.0), clip, form=form), x2
            yield KMeans((-1.0, -1.0), (1.0, 1.0), 2, clip, form=form), x2
        yield LinearRegression((-1.0, -1.0), (1.0, 1.0), -2.0, 2.0, 1.0, form=form), targets
        yield LogisticRegression((-1.0, -1.0), (1.0, 1.0), 1.0, form=form), labelled


def _dispatchers():
    return [d for _, ds in warmup.SIGNATURES.values() for d in ds]


def _signature_counts() -> dict[str, int]:
    return {d.py_func.__qualname__: len(d.signatures) for d in _dispatchers()}


def test_warm_reports_every_dispatcher():
    report = warmup.warm()
    assert report.signatures >= len(_dispatchers())
    assert report.seconds >= 0.0
    assert all(n >= 1 for n in _signature_counts().values())
    stats = warmup.compile_stats()
    assert set(stats) == set(_signature_counts())
    # compile_stats keys by __qualname__: two dispatchers sharing a name would hide one
    assert len(stats) == len(_dispatchers())


def test_served_calls_after_warm_compile_nothing():
    """Calls with the served types (other sizes, dimensions, kinds, domains) reuse the warmed
    signatures: the number of compiled signatures per dispatcher does not grow."""
    warmup.warm()
    before = _signature_counts()
    rng = np.random.default_rng(4)
    x = rng.normal(size=(17, 3))
    y = rng.normal(size=(300, 3))
    w = rng.normal(size=300)
    for code in kernels.KERNELS.values():
        kernels.kernel_sum(x, y, w, code, 0.7)
        kernels.kernel_grad_sum(x, y, w, code, 0.7)
    kernels.softmax_barycentre(x, y, w, np.zeros(300), 0.2)
    kde.log_kde(x, y, 0.3)
    kde.kde_score_self(x, 0.3)
    target = GaussianMixturePotential([1.0], [[0.0, 0.0, 0.0]], [1.0])
    for domain in (Domain.box([-1.0] * 3, [1.0] * 3), Domain.ball([0.0] * 3, 1.0)):
        kind, a, b = domain.engine_arrays()
        streams = new_streams(3, 17)
        langevin.uniform_in_domain(streams, kind, a, b, x)
        v, g = target.value_and_grad(x)
        prop = np.empty_like(x)
        inside = np.empty(17, dtype=np.uint8)
        accepted = np.empty(17, dtype=np.uint8)
        steps = np.full(x.shape[0], 0.05)
        langevin.mala_propose(x, g, steps, streams, kind, a, b, prop, inside)
        vp, gp = target.value_and_grad(prop)
        langevin.mala_accept(x, v, g, prop, vp, gp, inside, steps, streams, accepted)
    for utility, records in _served_utilities(rng):
        points = np.ascontiguousarray(0.5 * rng.uniform(-1, 1, (9, utility.domain.dim)))
        utility.loss(utility.prepare(records), points)
        if utility.domain.dim <= 3:
            grid_scores(utility, records, public_grid(utility.domain, 16))
    assert _signature_counts() == before


_CACHE_SCRIPT = """
import json
from dp_core.engine import compile_stats, warm
warm()
print(json.dumps(compile_stats()))
"""


def test_second_process_loads_everything_from_the_cache(tmp_path, run_python):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    first = json.loads(run_python(_CACHE_SCRIPT, env, 600).strip().splitlines()[-1])
    second = json.loads(run_python(_CACHE_SCRIPT, env, 600).strip().splitlines()[-1])
    names = {d.py_func.__qualname__ for d in _dispatchers()}
    assert set(first) == set(second) == names
    # the cache directory started empty, so the first process compiled every dispatcher ...
    assert all(misses >= 1 for _, misses in first.values()), first
    # ... and the second compiled none of them
    for name, (hits, misses) in second.items():
        assert misses == 0, (name, second)
        assert hits >= 1, (name, second)


def test_warm_family_compiles_once_and_release_families_come_first():
    """Families compile in table order (what every release needs first); a second call, from
    any thread, finds the family done and returns at once."""
    import threading

    import pytest

    assert list(warmup.SIGNATURES)[:2] == ["particles", "utilities"]
    reports = []
    threads = [
        threading.Thread(target=lambda: reports.append(warmup.warm_family("potentials")))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.family for r in reports] == ["potentials"] * 3
    assert sum(r.seconds > 0 for r in reports) <= 1  # at most one thread did the work
    assert all(r.signatures >= 1 for r in reports)
    assert warmup.warm_family("potentials").seconds == 0.0
    with pytest.raises(KeyError):
        warmup.warm_family("no such family")
