"""Utility losses over private records at n = 10^6 (ARCHITECTURE "Records scale too").

Every SHK step of a release evaluates the loss and its gradient at all particles. This script
times one such evaluation (N = 2000 particles, the default) for each utility family whose loss
needs the records, the engine's path against a vectorised NumPy evaluation of the same sums
(BLAS expansions of the squared distances and margins, particle chunks of about 2·10^6
particle·record pairs, two BLAS threads),
checks that both agree (NumPy is timed on the first 100 particles and scaled to 2000: its cost
is linear in them), and then runs whole releases (``ExponentialMechanism(...).sample``) at
n = 10^6 for the families whose summary makes that affordable; for the others it reports the
steps and relaxation moves a release takes: each evaluates the loss once at every particle, so
the release time is (steps + moves) × the per-evaluation time above.

Run: ``.venv/bin/python bench/bench_utilities.py [--n N] [--releases-only]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.special import expit

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (
    command_line,
    fmt_rate,
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

PARTICLES = 2000
NUMPY_PARTICLES = 100
"""NumPy's cost is linear in the particles: it is timed on the first 100 and scaled."""
CHUNK_PAIRS = 2_000_000
Loss = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _chunked(points: np.ndarray, fn: Loss, records: int) -> tuple[np.ndarray, np.ndarray]:
    v = np.empty(points.shape[0])
    g = np.empty(points.shape)
    chunk = max(1, CHUNK_PAIRS // records)
    for s in range(0, points.shape[0], chunk):
        v[s : s + chunk], g[s : s + chunk] = fn(points[s : s + chunk])
    return v, g


def numpy_mean(x: np.ndarray, clip: float) -> Loss:
    x2 = np.einsum("ij,ij->i", x, x)

    def fn(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d2 = np.einsum("ij,ij->i", p, p)[:, None] - 2.0 * (p @ x.T) + x2[None, :]
        inside = d2 < clip * clip
        v = np.where(inside, d2, clip * clip).sum(axis=1)
        g = 2.0 * (inside.sum(axis=1)[:, None] * p - inside.astype(np.float64) @ x)
        return v, g

    return lambda pts: _chunked(pts, fn, x.shape[0])


def numpy_logistic(x: np.ndarray, y: np.ndarray) -> Loss:
    def fn(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = (p @ x.T) * y[None, :]
        v = np.logaddexp(0.0, -m).sum(axis=1)
        g = -(expit(-m) * y[None, :]) @ x
        return v, g

    return lambda pts: _chunked(pts, fn, x.shape[0])


def numpy_kmeans(x: np.ndarray, k: int, clip: float) -> Loss:
    x2 = np.einsum("ij,ij->i", x, x)
    d = x.shape[1]

    def fn(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = p.reshape(p.shape[0], k, d)
        d2 = (
            np.einsum("bjd,bjd->bj", c, c)[:, :, None]
            - 2.0 * np.einsum("bjd,nd->bjn", c, x)
            + x2[None, None, :]
        )
        best = d2.min(axis=1)
        arg = d2.argmin(axis=1)
        v = np.minimum(best, clip * clip).sum(axis=1)
        g = np.empty_like(c)
        inside = best < clip * clip
        for j in range(k):
            mask = ((arg == j) & inside).astype(np.float64)
            g[:, j] = 2.0 * (mask.sum(axis=1)[:, None] * c[:, j] - mask @ x)
        return v, g.reshape(p.shape[0], k * d)

    return lambda pts: _chunked(pts, fn, x.shape[0])


def section_losses(n: int) -> None:
    rng = np.random.default_rng(0)
    x2 = rng.uniform(0.0, 1.0, (n, 2))
    labels = (x2[:, 1] > 0.3 + 0.4 * x2[:, 0]).astype(np.float64)
    cases = [
        (
            "mean, d = 2, c = 0.5 (fused pass)",
            ClippedMean((0.0, 0.0), (1.0, 1.0), 0.5),
            x2,
            numpy_mean(x2, 0.5),
        ),
        (
            "mean, d = 2, c = 2 ≥ diam (centred sums)",
            ClippedMean((0.0, 0.0), (1.0, 1.0), 2.0),
            x2,
            numpy_mean(x2, 2.0),
        ),
        (
            "logistic, d = 2",
            LogisticRegression((0.0, 0.0), (1.0, 1.0), 4.0),
            np.c_[x2, labels],
            numpy_logistic(x2, 2.0 * labels - 1.0),
        ),
        (
            "k-means, k = 3, d = 2, τ = 0.5",
            KMeans((0.0, 0.0), (1.0, 1.0), 3, 0.5),
            x2,
            numpy_kmeans(x2, 3, 0.5),
        ),
    ]
    print(
        f"### One loss + gradient evaluation, N = {PARTICLES} particles, n = {n} records "
        f"(load {load_average()})\n"
    )
    rows = []
    for name, utility, records, reference in cases:
        prepared = utility.prepare(records)
        dom = utility.domain
        points = np.ascontiguousarray(
            rng.uniform(dom.lower, dom.upper, (PARTICLES, dom.dim))
            if dom.kind == "box"
            else rng.uniform(-0.5, 0.5, (PARTICLES, dom.dim))
        )
        t_engine = time_call(lambda u=utility, pr=prepared, pt=points: u.loss(pr, pt), 3)
        sub = points[:NUMPY_PARTICLES]
        t_numpy = time_call(lambda ref=reference, pt=sub: ref(pt), 1, 0)
        numpy_s = t_numpy.best * PARTICLES / sub.shape[0]
        v, g = utility.loss(prepared, sub)
        v_ref, g_ref = reference(sub)
        dv = float(np.max(np.abs(v - v_ref) / np.maximum(1.0, np.abs(v_ref))))
        dg = float(np.max(np.abs(g - g_ref)) / max(1.0, float(np.max(np.abs(g_ref)))))
        rows.append(
            [
                name,
                f"{t_engine.best:.3f} / {t_engine.median:.3f}",
                fmt_rate(PARTICLES * n / t_engine.best),
                f"{numpy_s:.1f}",
                f"{numpy_s / t_engine.best:.1f}x",
                f"{dv:.0e} / {dg:.0e}",
            ]
        )
    print(
        markdown_table(
            [
                "utility",
                "engine s (best / median)",
                "particle·record pairs/s",
                f"NumPy s ({NUMPY_PARTICLES} particles timed, × {PARTICLES // NUMPY_PARTICLES})",
                "speed-up",
                "max rel. diff value / gradient",
            ],
            rows,
        )
    )
    print(f"\nLoad after: {load_average()}.\n")


def section_releases(n: int) -> None:
    rng = np.random.default_rng(1)
    x2 = rng.beta(2.0, 5.0, (n, 2))
    y = np.clip(0.5 * x2[:, 0] + 0.1 * rng.standard_normal(n), 0.0, 1.0)
    labels = (x2[:, 1] > 0.3 + 0.4 * x2[:, 0]).astype(np.float64)
    cases = [
        ("quantile q = 0.5", Quantile(0.5, 0.0, 1.0), x2[:, 0].copy(), True),
        (
            "linear regression, d = 1",
            LinearRegression((0.0,), (1.0,), 0.0, 1.0, 2.0),
            np.c_[x2[:, :1], y],
            True,
        ),
        ("mean, d = 2, c = 2 ≥ diam", ClippedMean((0.0, 0.0), (1.0, 1.0), 2.0), x2, True),
        ("mean, d = 2, c = 0.5", ClippedMean((0.0, 0.0), (1.0, 1.0), 0.5), x2, False),
        (
            "logistic, d = 2",
            LogisticRegression((0.0, 0.0), (1.0, 1.0), 4.0),
            np.c_[x2, labels],
            False,
        ),
        ("k-means, k = 3, d = 2", KMeans((0.0, 0.0), (1.0, 1.0), 3, 0.5), x2, False),
    ]
    print(
        f"### Whole releases at n = {n}, ε = 1, one sample, default sampler "
        f"(load {load_average()})\n"
    )
    rows = []
    for name, utility, records, run in cases:
        em = ExponentialMechanism(utility, 1.0)
        schedule = em.plan(1).schedule
        assert schedule is not None
        if run:
            em.sample(records[:1000], 1)  # compile / warm
            start = time.perf_counter()
            em.sample(records, 1)
            took = f"{time.perf_counter() - start:.1f}"
        else:
            took = "not run ((steps + moves) × the per-step time above)"
        rows.append([name, schedule.n_steps, schedule.relaxation.moves, schedule.particles, took])
    print(
        markdown_table(["utility", "SHK steps", "relaxation moves", "particles", "release s"], rows)
    )
    print(f"\nLoad after: {load_average()}.\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument(
        "--releases-only", action="store_true", help="skip the loss timings (and NumPy)"
    )
    args = ap.parse_args()
    print("## Utility losses over records (ARCHITECTURE: records scale too)\n")
    print(f"Command: `{command_line()}`\n")
    print("\n".join(machine_description()) + "\n")
    if not args.releases_only:
        section_losses(args.n)
    section_releases(args.n)


if __name__ == "__main__":
    main()
