"""Per-particle small-matrix maps for matrix-valued particles (flows note §5, P7).

Every function maps a batch of N matrices ``M_i ∈ R^{p×q}`` (a float64 C-contiguous ``(N, p, q)``
array) independently, in parallel over particles (``prange``), with plain loops in a fixed order:
results are bit-for-bit the same on any number of threads.

* :func:`regularized_polar` — the regularised orthogonalisation of (F 24),
  ``O_ε(M) = M (MᵀM + εI)^{-1/2} = U diag(σ/√(σ² + ε)) Vᵀ``, with the mirror potential
  ``ψ_ε(M) = tr((MᵀM + εI_q)^{1/2}) = Σ_r √(σ_r² + ε)`` (+ (q − p)√ε when p < q: the zero
  singular values of the q×q Gram) and the dissipation density
  ``⟨O_ε(M), M⟩ = Σ_r σ_r²/√(σ_r² + ε)`` of (F 27). ``kind = CLIP`` is the quadratic-prox
  alternative of §5.2: singular-value clipping ``U diag(min(σ/ε, 1)) Vᵀ``, the gradient of the
  Huber potential ``Σ_r h_ε(σ_r)``, ``h_ε(s) = s²/(2ε)`` for ``s ≤ ε`` and ``s − ε/2`` above.
  Both go through the eigendecomposition of the smaller Gram matrix (``MᵀM`` if q ≤ p, else
  ``MMᵀ``) by the cyclic Jacobi method: ``O = M·S`` or ``S·M`` with ``S = V f(Λ) Vᵀ``. The Gram
  route loses the singular values below ``√u·‖M‖`` (u the unit round-off), which the
  regularisation ε ≫ u‖M‖² makes irrelevant: ``f`` is smooth on ``[0, ∞)``.
* :func:`newton_schulz5` — the quintic Newton–Schulz iteration of Keller Jordan's Muon (F 22), in
  float64: transpose when rows > cols, ``X ← X/(‖X‖_F + 1e-7)``, then ``steps`` times
  ``A = XXᵀ, B = bA + cA², X ← aX + BX`` with ``(a, b, c) = (3.4445, −4.7750, 2.0315)``.

Costs per particle: O(pq·min(p, q) + min(p, q)³ · sweeps) for the polar map (about 6–10 Jacobi
sweeps to full precision), O(steps · (2 pq·min(p, q) + min(p, q)³)) for Newton–Schulz. These are
meant for small per-particle matrices (a neuron block, an expert); memory O(min(p, q)²) per thread.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = [
    "CLIP",
    "NS_COEFFICIENTS",
    "SQRT",
    "jacobi_eigh",
    "newton_schulz5",
    "regularized_polar",
]

SQRT = 0
"""O_ε of (F 24): singular values σ ↦ σ/√(σ² + ε); potential Σ √(σ² + ε)."""
CLIP = 1
"""Quadratic prox (§5.2): σ ↦ min(σ/ε, 1); Huber potential."""

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
"""(a, b, c) of the quintic Newton–Schulz step (F 22), exactly as in the reference Muon."""

_MAX_SWEEPS = 60


@njit(cache=True, nogil=True)
def jacobi_eigh(a, v):
    """Eigendecomposition of the symmetric matrix ``a`` (r×r, overwritten) by cyclic Jacobi.

    On return the diagonal of ``a`` holds the eigenvalues and the columns of ``v`` (r×r) the
    orthonormal eigenvectors, ``a_in = V diag(λ) Vᵀ``. Rotations follow Rutishauser's stable
    form (Golub & Van Loan §8.5); sweeps visit the pairs (p, q), p < q, row by row and stop once
    the off-diagonal mass is below (1e-17)²·‖a‖²_F or after 60 sweeps. Returns the number of
    sweeps. Deterministic: the order of every operation is fixed.
    """
    r = a.shape[0]
    for i in range(r):
        for j in range(r):
            v[i, j] = 0.0
        v[i, i] = 1.0
    total = 0.0
    for i in range(r):
        for j in range(r):
            total += a[i, j] * a[i, j]
    if total == 0.0:
        return 0
    for sweep in range(_MAX_SWEEPS):
        off = 0.0
        for i in range(r):
            for j in range(i + 1, r):
                off += a[i, j] * a[i, j]
        if off <= 1e-34 * total:
            return sweep
        for p in range(r - 1):
            for q in range(p + 1, r):
                apq = a[p, q]
                if apq == 0.0:
                    continue
                app = a[p, p]
                aqq = a[q, q]
                theta = (aqq - app) / (2.0 * apq)
                if abs(theta) > 1e150:
                    t = 0.5 / theta
                else:
                    t = 1.0 / (abs(theta) + math.sqrt(theta * theta + 1.0))
                    if theta < 0.0:
                        t = -t
                c = 1.0 / math.sqrt(t * t + 1.0)
                s = t * c
                tau = s / (1.0 + c)
                a[p, p] = app - t * apq
                a[q, q] = aqq + t * apq
                a[p, q] = 0.0
                a[q, p] = 0.0
                for k in range(r):
                    if k != p and k != q:
                        akp = a[k, p]
                        akq = a[k, q]
                        nkp = akp - s * (akq + tau * akp)
                        nkq = akq + s * (akp - tau * akq)
                        a[k, p] = nkp
                        a[p, k] = nkp
                        a[k, q] = nkq
                        a[q, k] = nkq
                for k in range(r):
                    vkp = v[k, p]
                    vkq = v[k, q]
                    v[k, p] = vkp - s * (vkq + tau * vkp)
                    v[k, q] = vkq + s * (vkp - tau * vkq)
    return _MAX_SWEEPS


@njit(cache=True, nogil=True, inline="always")
def _spectral_terms(kind, lam, eps):
    """For one Gram eigenvalue λ = σ² (clipped at 0): (f(λ), potential term, ⟨O, M⟩ term) with
    the map σ ↦ σ f(λ) (module docstring)."""
    if lam < 0.0:
        lam = 0.0
    if kind == SQRT:
        root = math.sqrt(lam + eps)
        return 1.0 / root, root, lam / root
    sigma = math.sqrt(lam)
    if sigma <= eps:
        return 1.0 / eps, lam / (2.0 * eps), lam / eps
    return 1.0 / sigma, sigma - 0.5 * eps, sigma


@njit(parallel=True, cache=True, nogil=True)
def regularized_polar(m, eps, kind, out, potential, inner):
    """Batched regularised polar factor (module docstring) of ``m`` (N, p, q).

    Parameters
    ----------
    m : (N, p, q) float64 C-contiguous.
    eps : ε > 0.
    kind : SQRT (O_ε of (F 24)) or CLIP (singular-value clipping, Huber potential).
    out : (N, p, q) receives the map of each M_i.
    potential : (N,) receives ψ(M_i) (``tr((MᵀM + εI_q)^{1/2})`` for SQRT).
    inner : (N,) receives ``⟨map(M_i), M_i⟩_F`` (the dissipation density of (F 27)).
    """
    n, p, q = m.shape
    r = min(p, q)
    for i in prange(n):
        g = np.empty((r, r))
        v = np.empty((r, r))
        s = np.empty((r, r))
        f = np.empty(r)
        mi = m[i]
        # Gram of the short side: G = MᵀM (q ≤ p) or MMᵀ (p < q)
        for a in range(r):
            for b in range(a, r):
                acc = 0.0
                if q <= p:
                    for k in range(p):
                        acc += mi[k, a] * mi[k, b]
                else:
                    for k in range(q):
                        acc += mi[a, k] * mi[b, k]
                g[a, b] = acc
                g[b, a] = acc
        jacobi_eigh(g, v)
        pot = 0.0
        inn = 0.0
        for a in range(r):
            fa, pa, ia = _spectral_terms(kind, g[a, a], eps)
            f[a] = fa
            pot += pa
            inn += ia
        if kind == SQRT and q > p:
            pot += (q - p) * math.sqrt(eps)
        potential[i] = pot
        inner[i] = inn
        # S = V f(Λ) Vᵀ
        for a in range(r):
            for b in range(a, r):
                acc = 0.0
                for k in range(r):
                    acc += v[a, k] * f[k] * v[b, k]
                s[a, b] = acc
                s[b, a] = acc
        oi = out[i]
        if q <= p:  # O = M S
            for a in range(p):
                for b in range(q):
                    acc = 0.0
                    for k in range(q):
                        acc += mi[a, k] * s[k, b]
                    oi[a, b] = acc
        else:  # O = S M
            for a in range(p):
                for b in range(q):
                    acc = 0.0
                    for k in range(p):
                        acc += s[a, k] * mi[k, b]
                    oi[a, b] = acc


@njit(parallel=True, cache=True, nogil=True)
def newton_schulz5(g, steps, out):
    """Batched quintic Newton–Schulz (F 22) of ``g`` (N, p, q) into ``out`` (N, p, q), float64.

    Each matrix is transposed when p > q (so that ``XXᵀ`` is the smaller Gram), divided by
    ``‖X‖_F + 1e-7`` and iterated ``steps`` times with (a, b, c) = :data:`NS_COEFFICIENTS`.
    """
    n, p, q = g.shape
    ca, cb, cc = NS_COEFFICIENTS
    tall = p > q
    r = q if tall else p
    c = p if tall else q
    for i in prange(n):
        x = np.empty((r, c))
        y = np.empty((r, c))
        a = np.empty((r, r))
        b = np.empty((r, r))
        gi = g[i]
        norm = 0.0
        for u in range(p):
            for w in range(q):
                norm += gi[u, w] * gi[u, w]
        scale = 1.0 / (math.sqrt(norm) + 1e-7)
        for u in range(r):
            for w in range(c):
                x[u, w] = (gi[w, u] if tall else gi[u, w]) * scale
        for _ in range(steps):
            for u in range(r):  # A = X Xᵀ
                for w in range(u, r):
                    acc = 0.0
                    for k in range(c):
                        acc += x[u, k] * x[w, k]
                    a[u, w] = acc
                    a[w, u] = acc
            for u in range(r):  # B = b A + c A²
                for w in range(r):
                    acc = 0.0
                    for k in range(r):
                        acc += a[u, k] * a[k, w]
                    b[u, w] = cb * a[u, w] + cc * acc
            for u in range(r):  # X ← a X + B X
                for w in range(c):
                    acc = 0.0
                    for k in range(r):
                        acc += b[u, k] * x[k, w]
                    y[u, w] = ca * x[u, w] + acc
            x, y = y, x
        oi = out[i]
        for u in range(r):
            for w in range(c):
                if tall:
                    oi[w, u] = x[u, w]
                else:
                    oi[u, w] = x[u, w]
