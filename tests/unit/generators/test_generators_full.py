"""aeot.md §7 reproduction checks on the ring (n = 512, d = 2), opt in with ``-m full``.

The full table (ring and mix8, every ε, baselines) is ``bench/repro_aeot.py``; this keeps the
ring rows with the note's tolerances as a test.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from dp_core.generators import fit_generator

pytestmark = pytest.mark.full


def _ring_truth(n: int, rng: np.random.Generator) -> np.ndarray:
    ang = 2 * np.pi * np.arange(8) / 8
    c = 2.0 * np.c_[np.cos(ang), np.sin(ang)]
    lab = rng.choice(8, n, p=np.full(8, 1 / 8))
    return c[lab] + 0.1 * rng.standard_normal((n, 2))


def _far(s: np.ndarray) -> float:
    ang = 2 * np.pi * np.arange(8) / 8
    c = 2.0 * np.c_[np.cos(ang), np.sin(ang)]
    m2 = ((s[:, None, :] - c[None]) ** 2).sum(-1) / 0.01
    return float(np.mean(m2.min(1) > chi2.ppf(0.999, 2)))


def _nearest(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sqrt(((a[:, None, :] - b[None]) ** 2).sum(-1)).min(1)))


@pytest.fixture(scope="module")
def ring():
    train = _ring_truth(512, np.random.default_rng(0))
    truth = _ring_truth(10_000, np.random.default_rng(4))
    return train, _nearest(truth, train)


@pytest.mark.parametrize(
    "eps,far,far_tol,memo,memo_tol",
    [(0.01, 0.041, 0.010, 1.19, 0.12), (0.001, 0.0062, 0.005, 0.52, 0.12)],
)
def test_ring_smoothed(ring, eps, far, far_tol, memo, memo_tol) -> None:
    train, ref = ring
    g = fit_generator(train, epsilon=eps, samples=1 << 14, tolerance=1e-5, seed=1)
    assert g.report.converged and g.report.levels[-1][1] <= 200
    s = g.sample(10_000, 3)
    assert abs(_far(s) - far) <= far_tol
    assert abs(_nearest(s, train) / ref - memo) <= memo_tol


def test_ring_hard_and_top2(ring) -> None:
    train, ref = ring
    g = fit_generator(train, epsilon=0.0, samples=1 << 14, seed=1)
    s = g.sample(10_000, 3)
    assert _nearest(s, train) == 0.0 and _far(s) <= 0.002
    t = fit_generator(train, method="aeot_top2", samples=1 << 14, seed=1).sample(10_000, 3)
    assert _far(t) <= 0.002
    assert abs(_nearest(t, train) / ref - 0.33) <= 0.03
