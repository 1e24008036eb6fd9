"""Fused pairwise kernels (P1–P4) against the NumPy references, plus their invariants:
symmetry of the kernel pairing, thread-count independence and the gradient as a derivative."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dp_core.engine import kernels
from dp_core.reference.bdls import (
    kernel_grad_sum_reference,
    kernel_sum_reference,
    logsumexp_reference,
    softmax_barycentre_reference,
)

KINDS = list(kernels.KERNELS.items())  # [(name, code)]
_EPS = np.finfo(np.float64).eps
# The engine flushes exp(t) to 0 below t = -708 (fastexp); a flushed term is below this value.
_FLUSH = math.exp(-708.0)
_REL = 1e-10
_HYP = settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


# --------------------------------------------------------------------------- strategies
@st.composite
def point_sets(draw):
    """x (N, d), y (M, d) drawn from one pool of rows, with rows repeated on purpose.

    Hypothesis picks the shapes, the coordinate scale and offset, how many distinct rows there
    are and which pool row each point copies (so duplicates inside x, inside y and between x and
    y, i.e. r = 0 exactly, all occur); NumPy fills the pool from a hypothesis-drawn seed.
    """
    d = draw(st.integers(1, 5))
    n = draw(st.integers(1, 70))
    m = draw(st.integers(1, 70))
    n_distinct = draw(st.integers(1, n + m))
    rows = draw(st.lists(st.integers(0, n_distinct - 1), min_size=n + m, max_size=n + m))
    scale = draw(st.sampled_from([1e-3, 0.37, 1.0, 25.0, 1e3]))
    offset = draw(st.sampled_from([0.0, 1.0, -30.0]))  # in units of scale
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    pool = (rng.uniform(-1.0, 1.0, (n_distinct, d)) + offset) * scale
    pts = pool[np.asarray(rows)]
    x = np.ascontiguousarray(pts[:n])
    y = np.ascontiguousarray(pts[n:])
    return x, y, scale, rng


@st.composite
def kernel_cases(draw):
    x, y, scale, rng = draw(point_sets())
    m = y.shape[0]
    sigma = scale * draw(st.sampled_from([0.05, 0.2, 1.0, 3.7, 10.0]))
    sign = draw(st.sampled_from(["signed", "positive"]))
    w = rng.normal(size=m) if sign == "signed" else rng.uniform(0.0, 2.0, m)
    return x, y, w, sigma


@st.composite
def lse_cases(draw):
    x, y, scale, rng = draw(point_sets())
    m = y.shape[0]
    eps = scale**2 * draw(st.sampled_from([0.01, 0.3, 1.0, 10.0]))
    log_w = rng.normal(size=m) * draw(st.sampled_from([0.0, 1.0, 30.0]))
    n_dead = draw(st.integers(0, m - 1))  # columns with weight 0 (at least one stays alive)
    log_w[rng.permutation(m)[:n_dead]] = -np.inf
    f = rng.normal(size=m) * eps * draw(st.sampled_from([0.0, 1.0, 50.0]))
    return x, y, log_w, f, eps


# --------------------------------------------------------------------------- tolerance helpers
def _abs_terms(x, y, w, name, sigma):
    """Σ_j |w_j| |k(x_i, y_j)| and Σ_j |w_j| |∇_x k(x_i, y_j)| (per coordinate): the scale
    against which a sum with signed weights is accurate. With signed weights the sum itself
    can cancel to ~0 (or exactly 0), so a relative error against |sum| would demand more than
    float64 can give; error analysis of a sum bounds the error by eps times the sum of absolute
    terms."""
    absw = np.abs(w)
    val = kernel_sum_reference(x, y, absw, name, sigma)
    diff = np.abs(x[:, None, :] - y[None, :, :])
    d2 = np.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=2)
    if name == "gaussian":
        fac = np.exp(-0.5 * d2 / sigma**2) / sigma**2
    elif name == "imq":
        fac = (1.0 + d2 / sigma**2) ** -1.5 / sigma**2
    else:
        r = np.sqrt(d2)
        fac = np.divide(np.exp(-r / sigma), sigma * r, out=np.zeros_like(r), where=r > 0)
    grad = np.einsum("nm,m,nmk->nk", fac, absw, diff)
    # Terms the engine flushes to zero (exp argument below -708) may each be off by _FLUSH
    # times their weight (times |x - y| / σ² for the gradient).
    flush_v = _FLUSH * absw.sum()
    flush_g = _FLUSH * np.einsum("m,nmk->nk", absw, diff) / sigma**2
    return val + flush_v / _REL, grad + flush_g / _REL


# --------------------------------------------------------------------------- P1 / P2
@pytest.mark.parametrize(("name", "code"), KINDS)
@_HYP
@given(case=kernel_cases())
def test_kernel_sum_and_grad_match_reference(name, code, case):
    x, y, w, sigma = case
    got = kernels.kernel_sum(x, y, w, code, sigma)
    ref = kernel_sum_reference(x, y, w, name, sigma)
    gref = kernel_grad_sum_reference(x, y, w, name, sigma)
    ggot = kernels.kernel_grad_sum(x, y, w, code, sigma)
    scale_v, scale_g = _abs_terms(x, y, w, name, sigma)
    assert got.shape == (x.shape[0],)
    assert ggot.shape == x.shape
    assert np.all(np.abs(got - ref) <= _REL * scale_v)
    assert np.all(np.abs(ggot - gref) <= _REL * scale_g)


def _tile_case(m: int, seed: int):
    rng = np.random.default_rng(seed)
    d = 3
    x = rng.normal(size=(37, d))
    y = rng.normal(size=(m, d))
    y[m // 2] = x[5]  # an exact coincidence (r = 0)
    w = rng.normal(size=m)
    return x, y, w


@pytest.mark.parametrize("m", [255, 256, 257, 600])
@pytest.mark.parametrize(("name", "code"), KINDS)
def test_sizes_crossing_the_tile(name, code, m):
    assert kernels.TILE == 256  # the sizes above straddle one and two tiles
    x, y, w = _tile_case(m, seed=1000 + m)
    sigma = 0.8
    scale_v, scale_g = _abs_terms(x, y, w, name, sigma)
    got = kernels.kernel_sum(x, y, w, code, sigma)
    assert np.all(np.abs(got - kernel_sum_reference(x, y, w, name, sigma)) <= _REL * scale_v)
    ggot = kernels.kernel_grad_sum(x, y, w, code, sigma)
    gref = kernel_grad_sum_reference(x, y, w, name, sigma)
    assert np.all(np.abs(ggot - gref) <= _REL * scale_g)


@pytest.mark.parametrize("n", [1, 3, 4, 5, 9])
def test_row_counts_crossing_the_row_block(n):
    """Rows are processed in blocks of 4: every row of every block gets its own result."""
    rng = np.random.default_rng(77 + n)
    x = rng.normal(size=(n, 2))
    y = rng.normal(size=(300, 2))
    w = rng.uniform(0.5, 1.5, 300)
    got = kernels.kernel_sum(x, y, w, kernels.GAUSSIAN, 0.6)
    ref = kernel_sum_reference(x, y, w, "gaussian", 0.6)
    np.testing.assert_allclose(got, ref, rtol=_REL, atol=0.0)


# --------------------------------------------------------------------------- P3 / P4
def _check_lse_and_bary(x, y, log_w, f, eps):
    lse, bary = kernels.softmax_barycentre(x, y, log_w, f, eps)
    lse_only = kernels.logsumexp_cost(x, y, log_w, f, eps)
    ref = logsumexp_reference(x, y, log_w, f, eps)
    bref = softmax_barycentre_reference(x, y, log_w, f, eps)
    # the fused pass computes the same LSE as the LSE-only pass, bit for bit
    assert np.array_equal(lse, lse_only)
    assert np.all(np.abs(lse - ref) <= _REL * np.maximum(1.0, np.abs(ref)))
    coord_scale = max(1e-300, float(np.max(np.abs(y))))
    assert np.all(np.abs(bary - bref) <= _REL * coord_scale)


@_HYP
@given(case=lse_cases())
def test_logsumexp_and_barycentre_match_reference(case):
    _check_lse_and_bary(*case)


@pytest.mark.parametrize("m", [255, 256, 257, 600])
def test_logsumexp_crossing_the_tile(m):
    rng = np.random.default_rng(5000 + m)
    x = rng.normal(size=(23, 2))
    y = rng.normal(size=(m, 2)) * 2.0
    log_w = rng.normal(size=m)
    log_w[: min(m, 256)] = -np.inf  # a whole first tile with no mass: skipped, then rescaled
    if m <= 256:
        log_w[-1] = 0.0
    f = np.linspace(-3.0, 40.0, m) * 0.05  # the row maximum moves to later tiles
    _check_lse_and_bary(x, y, log_w, f, 0.05)


def test_all_weights_zero_gives_minus_inf():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(9, 2))
    y = rng.normal(size=(300, 2))
    log_w = np.full(300, -np.inf)
    f = rng.normal(size=300)
    lse, bary = kernels.softmax_barycentre(x, y, log_w, f, 0.3)
    assert np.all(np.isneginf(lse))
    assert np.all(np.isneginf(kernels.logsumexp_cost(x, y, log_w, f, 0.3)))
    assert np.all(np.isneginf(logsumexp_reference(x, y, log_w, f, 0.3)))
    assert np.all(np.isnan(bary))  # the soft-max is undefined (the reference agrees)


def test_logsumexp_far_rows_do_not_underflow():
    """Rows whose every score is far below -708 still get a finite, accurate LSE."""
    rng = np.random.default_rng(12)
    y = rng.normal(size=(40, 3))
    x = y[:7] + 300.0  # c/eps ≈ 3 * 300² / 2 / 0.5 ≈ 2.7e5
    log_w = np.full(40, -np.log(40.0))
    f = np.zeros(40)
    got = kernels.logsumexp_cost(x, y, log_w, f, 0.5)
    ref = logsumexp_reference(x, y, log_w, f, 0.5)
    assert np.all(np.isfinite(got))
    assert np.all(np.abs(got - ref) <= _REL * np.abs(ref))


# --------------------------------------------------------------------------- invariants
@pytest.mark.parametrize(("name", "code"), KINDS)
def test_kernel_pairing_is_symmetric(name, code):
    """u·K(x, y)w == w·K(y, x)u: the kernel is symmetric, and the two sides sum the same
    N·M products in different orders, so they agree to rounding of the absolute sum."""
    rng = np.random.default_rng(31 + code)
    x = rng.normal(size=(70, 3))
    y = rng.normal(size=(290, 3)) * 1.3
    y[3] = x[4]
    u = rng.normal(size=70)
    w = rng.normal(size=290)
    lhs = u @ kernels.kernel_sum(x, y, w, code, 0.9)
    rhs = w @ kernels.kernel_sum(y, x, u, code, 0.9)
    absolute = np.abs(u) @ kernels.kernel_sum(x, y, np.abs(w), code, 0.9)
    assert abs(lhs - rhs) <= 1e-12 * absolute
    assert name in kernels.KERNELS


_THREAD_SCRIPT = """
import numpy as np
import numba
from dp_core.engine import kernels
assert numba.get_num_threads() == 1
rng = np.random.default_rng(424242)
x = rng.normal(size=(1000, 3))
y = rng.normal(size=(1000, 3))
w = rng.normal(size=1000)
log_w = rng.normal(size=1000)
f = rng.normal(size=1000)
np.save(OUT_S, kernels.kernel_sum(x, y, w, 0, 0.7))
np.save(OUT_L, kernels.logsumexp_cost(x, y, log_w, f, 0.3))
"""


def test_results_do_not_depend_on_thread_count(tmp_path, run_python):
    # The reference run uses one thread in a fresh process; the in-process run below uses
    # every thread Numba has (two on the CI machine), so a thread-dependent reduction fails.
    assert numba.config.NUMBA_NUM_THREADS >= 2, "this machine gives Numba a single thread"
    out_s, out_l = tmp_path / "s.npy", tmp_path / "l.npy"
    script = _THREAD_SCRIPT.replace("OUT_S", repr(str(out_s))).replace("OUT_L", repr(str(out_l)))
    run_python(script, {"NUMBA_NUM_THREADS": "1"}, 600)
    rng = np.random.default_rng(424242)
    x = rng.normal(size=(1000, 3))
    y = rng.normal(size=(1000, 3))
    w = rng.normal(size=1000)
    log_w = rng.normal(size=1000)
    f = rng.normal(size=1000)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    s = kernels.kernel_sum(x, y, w, kernels.GAUSSIAN, 0.7)
    lse = kernels.logsumexp_cost(x, y, log_w, f, 0.3)
    # bit-for-bit: compare the IEEE-754 bit patterns
    assert np.array_equal(np.load(out_s).view(np.uint64), s.view(np.uint64))
    assert np.array_equal(np.load(out_l).view(np.uint64), lse.view(np.uint64))
    # and in-process with one thread as well
    numba.set_num_threads(1)
    try:
        s1 = kernels.kernel_sum(x, y, w, kernels.GAUSSIAN, 0.7)
        g1 = kernels.kernel_grad_sum(x, y, w, kernels.IMQ, 0.7)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert np.array_equal(s1.view(np.uint64), s.view(np.uint64))
    g2 = kernels.kernel_grad_sum(x, y, w, kernels.IMQ, 0.7)
    assert np.array_equal(g1.view(np.uint64), g2.view(np.uint64))


# Maximum over t of |∂³/∂t³ k| along one coordinate, in units of σ = 1, with the other
# coordinates held anywhere (they only shrink it: gaussian factorises; imq with offset a >= 1
# is a^{-2} times the a = 1 curve; laplace is bounded for r >= 1/2, the separation used below).
# Maxima found on fine grids (mpmath derivatives): gaussian max |(3t - t³) e^{-t²/2}| = 1.3801;
# imq 1.9323; laplace over r >= 1/2 4.0901 (attained at r = 1/2). Rounded up.
_THIRD_DERIVATIVE_BOUND = {"gaussian": 1.39, "imq": 1.94, "laplace": 4.2}


@pytest.mark.parametrize(("name", "code"), KINDS)
def test_gradient_is_the_derivative_of_the_sum(name, code):
    rng = np.random.default_rng(97 + code)
    d = 3
    sigma = 1.0
    # Dyadic coordinates so x ± h is exact; y kept at distance >= 1/2 + h from every x so the
    # Laplace cusp at r = 0 stays outside the difference stencil.
    x = rng.integers(-2048, 2048, size=(40, d)) / 1024.0
    y = rng.integers(-4096, 4096, size=(600, d)) / 1024.0
    far = np.min(np.linalg.norm(x[:, None, :] - y[None, :, :], axis=2), axis=0) > 0.5 + 1e-3
    y = np.ascontiguousarray(y[far])
    w = rng.normal(size=y.shape[0])
    h = 2.0**-17  # ≈ eps^(1/3): balances truncation against rounding
    grad = kernels.kernel_grad_sum(x, y, w, code, sigma)
    fd = np.empty_like(x)
    for k in range(d):
        step = np.zeros(d)
        step[k] = h
        plus = kernels.kernel_sum(np.ascontiguousarray(x + step), y, w, code, sigma)
        minus = kernels.kernel_sum(np.ascontiguousarray(x - step), y, w, code, sigma)
        fd[:, k] = (plus - minus) / (2.0 * h)
    wsum = np.abs(w).sum()
    # central difference: truncation h²/6 max|k'''|; rounding: each kernel sum is accurate to
    # (4 + log2 M) eps Σ|w| (2-ulp exp, fma, tree sum), divided by 2h, twice.
    trunc = h**2 / 6.0 * _THIRD_DERIVATIVE_BOUND[name] / sigma**3 * wsum
    rounding = (4.0 + math.log2(y.shape[0])) * _EPS * wsum / h
    tol = trunc + rounding
    assert np.max(np.abs(grad - fd)) <= tol
    # the check has power: the gradient is far larger than the tolerance
    assert np.max(np.abs(grad)) > 1e4 * tol


@pytest.mark.parametrize("n", [1, 3, 255, 256, 257, 700, 1300])
@pytest.mark.parametrize("kind", ["gaussian", "imq", "laplace"])
def test_symmetric_self_sum_matches_reference(n: int, kind: str) -> None:
    """kernel_sum_self visits each pair of tiles once; it must equal the full sum at the points
    themselves (sizes around the tile edges and with several tile pairs per task)."""
    rng = np.random.default_rng(n)
    x = np.ascontiguousarray(rng.normal(size=(n, 2)))
    x[n // 2] = x[0]  # a duplicate point
    w = rng.uniform(-1.0, 1.0, size=n)
    got = kernels.kernel_sum_self(x, w, kernels.KERNELS[kind], 0.6)
    ref = kernel_sum_reference(x, x, w, kind, 0.6)
    scale = kernel_sum_reference(x, x, np.abs(w), kind, 0.6)
    assert np.all(np.abs(got - ref) <= 1e-10 * scale)


@pytest.mark.parametrize("n", [1, 3, 255, 256, 257, 700, 1300])
@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("kind", ["gaussian", "imq", "laplace"])
def test_antisymmetric_self_gradient_matches_reference(n: int, d: int, kind: str) -> None:
    """kernel_grad_sum_self visits each pair once and adds it with opposite signs to both points;
    it must equal the full gradient sum at the points themselves. Tolerance relative to the sum
    of absolute terms, which bounds the rounding of any summation order."""
    rng = np.random.default_rng(1000 * d + n)
    x = np.ascontiguousarray(rng.normal(size=(n, d)))
    x[n // 2] = x[0]  # a duplicate point: zero difference, no division anywhere
    w = rng.uniform(-1.0, 1.0, size=n)
    got = kernels.kernel_grad_sum_self(x, w, kernels.KERNELS[kind], 0.6)
    ref = kernel_grad_sum_reference(x, x, w, kind, 0.6)
    diffs = np.abs(x[:, None, :] - x[None, :, :]).sum(-1)  # (n, n) L1 distances, n <= 1300
    kvals = np.abs(kernel_sum_reference(x, x, np.abs(w), kind, 0.6))
    scale = kvals * (1.0 + diffs.max()) / 0.36  # >= Σ_j |w_j| |φ_ij| |x_i - x_j| for σ = 0.6
    assert np.all(np.abs(got - ref) <= 1e-10 * scale[:, None])
