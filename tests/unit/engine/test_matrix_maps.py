"""Per-particle small-matrix maps (flows note §5, P7): the regularised polar factor O_ε (F 24)
against an SVD reference and its properties (T-Mu-1), the Jacobi eigensolver against LAPACK, the
quintic Newton–Schulz iteration against the reference recurrence and its singular-value band
(T-Mu-2), and thread-count independence."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from dp_core.engine import matrix_maps as mm
from dp_core.reference.muon import newton_schulz5_reference, regularized_polar_reference

SHAPES = [(4, 3), (3, 5), (3, 51), (8, 8), (1, 4), (5, 1), (12, 7)]


def _polar(m: np.ndarray, eps: float, kind: int = mm.SQRT):
    out = np.empty_like(m)
    pot = np.empty(m.shape[0])
    inner = np.empty(m.shape[0])
    mm.regularized_polar(np.ascontiguousarray(m), eps, kind, out, pot, inner)
    return out, pot, inner


@pytest.mark.parametrize("shape", SHAPES)
def test_regularized_polar_matches_svd_reference(shape) -> None:
    """O_ε, ψ_ε = tr((MᵀM + εI_q)^{1/2}) and ⟨O_ε(M), M⟩ against numpy's SVD, over a range of
    scales (so that ε is below, near and above the squared singular values)."""
    gen = np.random.default_rng(sum(shape))
    m = gen.normal(size=(6, *shape)) * np.geomspace(0.01, 10.0, 6)[:, None, None]
    eps = 0.05
    out, pot, inner = _polar(m, eps)
    for i in range(m.shape[0]):
        ref, psi = regularized_polar_reference(m[i], eps)
        s = np.linalg.svd(m[i], compute_uv=False)
        assert np.abs(out[i] - ref).max() <= 1e-13
        assert pot[i] == pytest.approx(psi, rel=1e-13)
        assert inner[i] == pytest.approx(np.sum(s**2 / np.sqrt(s**2 + eps)), rel=1e-12, abs=1e-300)


def test_clipping_variant_matches_svd() -> None:
    """§5.2 quadratic prox: U diag(min(σ/ε, 1)) Vᵀ and the Huber potential."""
    gen = np.random.default_rng(3)
    m = gen.normal(size=(5, 6, 4)) * np.array([0.05, 0.2, 1.0, 3.0, 9.0])[:, None, None]
    eps = 0.5
    out, pot, inner = _polar(m, eps, mm.CLIP)
    for i in range(5):
        u, s, vt = np.linalg.svd(m[i], full_matrices=False)
        assert np.abs(out[i] - (u * np.minimum(s / eps, 1.0)) @ vt).max() <= 1e-12
        huber = np.where(s <= eps, s**2 / (2 * eps), s - eps / 2)
        assert pot[i] == pytest.approx(huber.sum(), rel=1e-12)
        assert inner[i] == pytest.approx(np.sum(s * np.minimum(s / eps, 1.0)), rel=1e-12)


def test_polar_properties() -> None:
    """T-Mu-1: singular values σ/√(σ² + ε) in [0, 1); O_ε(PMQ) = P O_ε(M) Q for orthogonal P, Q;
    O_ε(Mᵀ) = O_ε(M)ᵀ; O_ε(cM) → UVᵀ as c → ∞; ∇ψ_ε = O_ε by central differences."""
    gen = np.random.default_rng(4)
    m = gen.normal(size=(1, 5, 3))
    eps = 0.1
    out = _polar(m, eps)[0][0]
    sv = np.linalg.svd(out, compute_uv=False)
    s = np.linalg.svd(m[0], compute_uv=False)
    assert np.allclose(sv, s / np.sqrt(s**2 + eps), rtol=1e-13) and np.all(sv < 1)
    p = np.linalg.qr(gen.normal(size=(5, 5)))[0]
    q = np.linalg.qr(gen.normal(size=(3, 3)))[0]
    rotated = _polar((p @ m[0] @ q)[None], eps)[0][0]
    assert np.abs(rotated - p @ out @ q).max() <= 1e-13
    transposed = _polar(np.ascontiguousarray(m[0].T)[None], eps)[0][0]
    assert np.abs(transposed - out.T).max() <= 1e-14
    u, _, vt = np.linalg.svd(m[0], full_matrices=False)
    assert np.abs(_polar(1e6 * m, eps)[0][0] - u @ vt).max() <= 1e-12
    h = 1e-6
    for idx in [(0, 0), (2, 1), (4, 2)]:
        mp, mn = m.copy(), m.copy()
        mp[(0, *idx)] += h
        mn[(0, *idx)] -= h
        fd = (_polar(mp, eps)[1][0] - _polar(mn, eps)[1][0]) / (2 * h)
        assert fd == pytest.approx(out[idx], abs=1e-8)


def test_jacobi_eigh_matches_lapack() -> None:
    gen = np.random.default_rng(5)
    for r in (1, 2, 7, 30):
        a = gen.normal(size=(r, r))
        a = a + a.T
        work, v = a.copy(), np.empty((r, r))
        mm.jacobi_eigh(work, v)
        lam = np.diag(work)
        assert np.allclose(np.sort(lam), np.linalg.eigvalsh(a), atol=1e-12 * np.abs(a).max())
        assert np.abs(v @ np.diag(lam) @ v.T - a).max() <= 1e-12 * np.abs(a).max()
        assert np.abs(v.T @ v - np.eye(r)).max() <= 1e-13


@pytest.mark.parametrize("shape", [(4, 3), (3, 5), (16, 16), (1, 6)])
def test_newton_schulz_matches_the_reference_recurrence(shape) -> None:
    gen = np.random.default_rng(6)
    g = gen.normal(size=(4, *shape))
    out = np.empty_like(g)
    mm.newton_schulz5(g, 5, out)
    for i in range(4):
        assert np.abs(out[i] - newton_schulz5_reference(g[i], 5)).max() <= 1e-12
    assert mm.NS_COEFFICIENTS == (3.4445, -4.7750, 2.0315)


def test_newton_schulz_singular_value_band_and_symmetry() -> None:
    """T-Mu-2 (flows §5.1 [num]): inputs with σ/‖G‖_F in [0.01, 1] map into [0.682, 1.134]
    after 5 steps in float64; NS5(Gᵀ) = NS5(G)ᵀ; on a diagonal matrix NS5 is the scalar
    polynomial p(x) = ax + bx³ + cx⁵ composed 5 times on σ_i/‖σ‖ (the hand computation of
    T-Mu-4)."""
    gen = np.random.default_rng(7)
    u = np.linalg.qr(gen.normal(size=(20, 20)))[0]
    v = np.linalg.qr(gen.normal(size=(8, 8)))[0]
    ratios = np.geomspace(0.01, 1.0, 8)
    g = (u[:, :8] * ratios) @ v.T
    out = np.empty((1, 20, 8))
    mm.newton_schulz5(g[None], 5, out)
    sv = np.linalg.svd(out[0], compute_uv=False)
    assert sv.min() >= 0.682 and sv.max() <= 1.1345
    out_t = np.empty((1, 8, 20))
    mm.newton_schulz5(np.ascontiguousarray(g.T)[None], 5, out_t)
    assert np.abs(out_t[0] - out[0].T).max() <= 1e-14
    a, b, c = mm.NS_COEFFICIENTS
    diag = np.diag([3.0, 1.0])
    x = np.array([3.0, 1.0]) / (np.sqrt(10.0) + 1e-7)
    for _ in range(5):
        x = a * x + b * x**3 + c * x**5
    got = np.empty((1, 2, 2))
    mm.newton_schulz5(diag[None], 5, got)
    assert np.abs(got[0] - np.diag(x)).max() <= 1e-14


def test_maps_do_not_depend_on_thread_count() -> None:
    assert numba.config.NUMBA_NUM_THREADS >= 2, "this machine gives Numba a single thread"
    gen = np.random.default_rng(8)
    m = gen.normal(size=(64, 9, 5))
    results = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(threads)
        try:
            out, pot, inner = _polar(m, 0.01)
            ns = np.empty_like(m)
            mm.newton_schulz5(m, 5, ns)
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        results.append(np.concatenate([out.ravel(), pot, inner, ns.ravel()]).view(np.uint64))
    assert np.array_equal(results[0], results[1])
