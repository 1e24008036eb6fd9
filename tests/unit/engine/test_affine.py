"""The register-blocked affine P3 / P4 and top-2 (dp_core.engine.affine) against dense NumPy
references, plus the exactness claims: skipped tiles, lazy stabiliser and row blocks change no
bit; top-2 ties go to the lower column."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from scipy.special import logsumexp

from dp_core.engine.affine import affine_logsumexp, affine_top2

_ULP = 2.0**-52


def _reference(x, y, f, eps):
    s = (f[None, :] + x @ y.T) / eps
    with np.errstate(invalid="ignore"):
        lse = logsumexp(s, axis=1)
        p = np.exp(s - lse[:, None])
    return s, lse, p @ y


def _check(x, y, f, eps):
    lse, bary = affine_logsumexp(x, y, f, eps, barycentre=True)
    lse_only, none = affine_logsumexp(x, y, f, eps)
    assert none is None
    assert np.array_equal(lse, lse_only)  # the fused pass computes the same LSE, bit for bit
    s, ref, bref = _reference(x, y, f, eps)
    # a score's rounding error is a few ulp of its magnitude (d products and a sum); exp turns
    # an absolute score error into the same relative weight error
    scale = 1.0 + np.max(np.abs(np.where(np.isfinite(s), s, 0.0)), axis=1)
    tol = 8 * (x.shape[1] + 4) * _ULP * scale
    assert np.all(np.abs(lse - ref) <= tol)
    coord = max(1e-300, float(np.max(np.abs(y))))
    assert np.all(np.abs(bary - bref) <= tol[:, None] * coord)
    return lse, bary


@pytest.mark.parametrize("n", [1, 3, 4, 5, 9])
@pytest.mark.parametrize("m", [1, 255, 256, 257, 600])
@pytest.mark.parametrize("d", [1, 3, 4, 8, 13])
def test_matches_dense_reference_across_blocks_tiles_and_coordinates(n, m, d):
    """Rows come in blocks of 4, columns in tiles of 256, coordinates in groups of 4: sizes on
    both sides of every boundary."""
    rng = np.random.default_rng(1000 * n + 10 * d + m)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(m, d))
    f = 0.3 * rng.normal(size=m)
    for eps in (1.0, 0.05, 0.003):
        _check(x, y, f, eps)


def test_minus_inf_offsets_are_ignored_and_all_minus_inf_gives_minus_inf():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 3))
    y = rng.normal(size=(600, 3))
    f = rng.normal(size=600)
    f[:256] = -np.inf  # a whole first tile without mass
    f[300:310] = -np.inf
    _check(x, y, f, 0.1)
    lse, bary = affine_logsumexp(x, y, np.full(600, -np.inf), 0.1, barycentre=True)
    assert np.all(np.isneginf(lse))
    assert np.all(np.isnan(bary))  # the soft-max is undefined there


@pytest.mark.parametrize("jump", [100.0, 500.0, 5000.0])
def test_later_tiles_far_above_the_first_rescale_without_overflow(jump):
    """The stabiliser is the first tile's maximum; later tiles above it by up to 2^600 are summed
    unscaled and larger jumps (including past exp's overflow at 709.78) rescale the row."""
    rng = np.random.default_rng(4)
    m = 1000
    x = rng.normal(size=(5, 2))
    y = rng.normal(size=(m, 2))
    f = np.zeros(m)
    f[700:] = jump * 0.01  # ε = 0.01: scores of the last tiles jump by `jump`
    lse, bary = _check(x, y, f, 0.01)
    assert np.all(np.isfinite(lse)) and np.all(np.isfinite(bary))


def test_rows_far_from_every_column_stay_finite():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(7, 3))
    y = rng.normal(size=(40, 3))
    f = np.full(40, -3000.0)  # every score about -3e5 at ε = 0.01
    lse, bary = _check(x, y, f, 0.01)
    assert np.all(np.isfinite(lse)) and np.all(np.isfinite(bary))


def test_skipped_tiles_change_no_bit():
    """A tile whose terms are all below exp's flush point is skipped; masking it out with -inf
    offsets (same tile layout) gives bit-identical results."""
    rng = np.random.default_rng(6)
    x = rng.uniform(-1, 1, size=(13, 4))
    y = rng.normal(size=(1024, 4))
    f = rng.normal(size=1024)
    f[256:512] -= 40.0  # ε = 0.01: this tile's scores are about 4000 below the others
    lse, bary = affine_logsumexp(x, y, f, 0.01, barycentre=True)
    masked = f.copy()
    masked[256:512] = -np.inf
    lse2, bary2 = affine_logsumexp(x, y, masked, 0.01, barycentre=True)
    assert np.array_equal(lse.view(np.uint64), lse2.view(np.uint64))
    assert np.array_equal(bary.view(np.uint64), bary2.view(np.uint64))


def test_a_row_does_not_depend_on_its_block_mates_or_the_thread_count():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(37, 5))
    y = rng.normal(size=(700, 5))
    f = rng.normal(size=700)
    lse, bary = affine_logsumexp(x, y, f, 0.02, barycentre=True)
    for i in (0, 5, 36):
        li, bi = affine_logsumexp(x[i : i + 1], y, f, 0.02, barycentre=True)
        assert li.view(np.uint64)[0] == lse.view(np.uint64)[i]
        assert np.array_equal(bi[0].view(np.uint64), bary[i].view(np.uint64))
    assert numba.config.NUMBA_NUM_THREADS >= 2, "this machine gives Numba a single thread"
    numba.set_num_threads(1)
    try:
        l1, b1 = affine_logsumexp(x, y, f, 0.02, barycentre=True)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert np.array_equal(l1.view(np.uint64), lse.view(np.uint64))
    assert np.array_equal(b1.view(np.uint64), bary.view(np.uint64))


def test_barycentre_is_the_gradient_of_eps_times_the_lse():
    """∇_x (ε A(x)) = T(x) (aeot.md (A 12)): central differences of the LSE."""
    rng = np.random.default_rng(8)
    x = rng.uniform(-1, 1, size=(20, 3))
    y = rng.normal(size=(300, 3))
    f = 0.2 * rng.normal(size=300)
    eps, step = 0.1, 1e-5
    _, bary = affine_logsumexp(x, y, f, eps, barycentre=True)
    for k in range(3):
        e = np.zeros(3)
        e[k] = step
        up = eps * affine_logsumexp(x + e, y, f, eps)[0]
        down = eps * affine_logsumexp(x - e, y, f, eps)[0]
        np.testing.assert_allclose((up - down) / (2 * step), bary[:, k], atol=1e-7)


@pytest.mark.parametrize("n", [1, 5, 9])
@pytest.mark.parametrize("m", [1, 2, 255, 257, 700])
@pytest.mark.parametrize("d", [1, 3, 8])
def test_top2_matches_the_dense_scores(n, m, d):
    """Best and second-best value equal the dense sorted scores to rounding, their columns carry
    those scores, and the two columns differ (m > 1)."""
    rng = np.random.default_rng(100 * n + 10 * d + m)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(m, d))
    f = rng.normal(size=m)
    idx, val = affine_top2(x, y, f)
    scores = f[None, :] + x @ y.T
    tol = 64 * _ULP * (1.0 + np.abs(scores).max(axis=1))
    top = -np.sort(-scores, axis=1)
    second = top[:, 1] if m > 1 else top[:, 0]
    rows = np.arange(n)
    assert np.all(np.abs(val[:, 0] - top[:, 0]) <= tol)
    assert np.all(np.abs(val[:, 1] - second) <= tol)
    assert np.all(np.abs(scores[rows, idx[:, 0]] - top[:, 0]) <= 2 * tol)
    assert np.all(np.abs(scores[rows, idx[:, 1]] - second) <= 2 * tol)
    assert m == 1 or np.all(idx[:, 0] != idx[:, 1])


@pytest.mark.parametrize("m", [3, 300, 700])
def test_top2_ties_go_to_the_lower_column(m):
    """Three identical columns (same point, same offset: bit-identical scores) that beat all
    others, placed in different tiles: best = the lowest, second = the next."""
    rng = np.random.default_rng(m)
    x = rng.normal(size=(11, 4))
    y = rng.normal(size=(m, 4))
    f = rng.normal(size=m)
    cols = [m - 1, m // 2, 1] if m > 3 else [2, 1, 0]
    for c in cols:
        y[c], f[c] = 0.5, 1e6
    idx, val = affine_top2(x, y, f)
    low = sorted(cols)
    assert np.all(idx[:, 0] == low[0]) and np.all(idx[:, 1] == low[1])
    assert np.array_equal(val[:, 0], val[:, 1])
