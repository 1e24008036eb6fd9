"""Compiled utility sums over private records, evaluated at every particle (certificates note §9).

Each kernel returns the *loss* ``L(θ) = Σ_x ℓ(θ; x)`` and its gradient at N points, so that
``u = -L`` and the exponential-mechanism potential is ``V = λ L``. Records arrive already clipped
to their public bounds (the utility modules do that). Where an exact summary makes a pass over
the records unnecessary it is used (ARCHITECTURE "Records scale too"):

* quantile counts ``N_D(θ) = #{x <= θ}`` by binary search in the sorted records, O(log n);
* the 1-D clipped mean ``Σ min((θ - x)², c²)`` from sorted records and prefix sums of x and x²,
  O(log n) per point;

and the rest — multi-d clipped mean, logistic loss, k-means — is one fused ``prange`` pass over
the records per point, O(n d), tiled over the transposed records and vectorised like the pairwise
kernels (no fastmath; the engine's polynomial exp and log1p), memory O(TILE d) per thread.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from dp_core.engine.fastexp import exp, fma, log1p_unit
from dp_core.engine.kernels import TILE, _tree_sum

__all__ = [
    "clipped_mean_loss_1d",
    "clipped_mean_loss_nd",
    "kmeans_loss",
    "logistic_loss",
    "quantile_counts",
]


@njit(parallel=True, cache=True, nogil=True)
def quantile_counts(points, sorted_records, out):
    """out[i] = #{x <= θ_i}; points (N, 1), sorted_records (n,) ascending."""
    for i in prange(points.shape[0]):
        out[i] = np.searchsorted(sorted_records, points[i, 0], side="right")


@njit(parallel=True, cache=True, nogil=True)
def clipped_mean_loss_1d(points, sorted_records, prefix, prefix_sq, clip, v_out, g_out):
    """L(θ) = Σ_x min((θ - x)², c²) and dL/dθ from sorted records and prefix sums.

    ``prefix[k] = Σ_{j<k} x_j`` and ``prefix_sq[k] = Σ_{j<k} x_j²`` (length n + 1). Records with
    |θ - x| < c contribute (θ - x)² = θ² - 2θx + x²; the others contribute c².
    """
    n = sorted_records.shape[0]
    c2 = clip * clip
    for i in prange(points.shape[0]):
        theta = points[i, 0]
        lo = np.searchsorted(sorted_records, theta - clip, side="right")
        hi = np.searchsorted(sorted_records, theta + clip, side="left")
        m = hi - lo
        s1 = prefix[hi] - prefix[lo]
        s2 = prefix_sq[hi] - prefix_sq[lo]
        v_out[i] = m * theta * theta - 2.0 * theta * s1 + s2 + (n - m) * c2
        g_out[i, 0] = 2.0 * (m * theta - s1)


# --------------------------------------------------------------------------- record passes
# The records arrive transposed, (d, n) C-contiguous, so that every inner loop runs over a tile
# view of one coordinate and vectorises without fastmath (the values feed MALA acceptances and
# birth–death rates). Each point accumulates TILE independent partial sums over the tiles in
# order and reduces them by the kernels' fixed tree: deterministic and thread-count independent.


@njit(cache=True, nogil=True, inline="always")
def _sq_dist_tile(theta, off, records_t, j0, cnt, d2):
    """d2[t] = Σ_a (θ[off + a] − x_a[j0 + t])² for t < cnt."""
    x0 = records_t[0, j0 : j0 + cnt]
    c = theta[off]
    for t in range(cnt):
        diff = c - x0[t]
        d2[t] = diff * diff
    for a in range(1, records_t.shape[0]):
        xa = records_t[a, j0 : j0 + cnt]
        c = theta[off + a]
        for t in range(cnt):
            diff = c - xa[t]
            d2[t] = fma(diff, diff, d2[t])


@njit(parallel=True, cache=True, nogil=True)
def clipped_mean_loss_nd(points, records_t, clip, v_out, g_out):
    """L(θ) = Σ_x min(|θ - x|², c²) and ∇L = Σ_{|θ-x|<c} 2(θ - x); points (N, d), records
    transposed (d, n)."""
    d, n = records_t.shape
    c2 = clip * clip
    for i in prange(points.shape[0]):
        theta = points[i]
        d2 = np.empty(TILE)
        acc = np.zeros(TILE)
        gacc = np.zeros((d, TILE))
        for j0 in range(0, n, TILE):
            cnt = min(TILE, n - j0)
            _sq_dist_tile(theta, 0, records_t, j0, cnt, d2)
            for t in range(cnt):
                acc[t] += d2[t] if d2[t] < c2 else c2
            for a in range(d):
                xa = records_t[a, j0 : j0 + cnt]
                ga = gacc[a]
                c = theta[a]
                for t in range(cnt):
                    ga[t] += 2.0 * (c - xa[t]) if d2[t] < c2 else 0.0
        v_out[i] = _tree_sum(acc)
        for a in range(d):
            g_out[i, a] = _tree_sum(gacc[a])


@njit(parallel=True, cache=True, nogil=True)
def logistic_loss(points, features_t, labels, v_out, g_out):
    """L(θ) = Σ log(1 + exp(-y θ·x)), y ∈ {-1, +1}, and ∇L = -Σ y x σ(-y θ·x); points (N, d),
    features transposed (d, n).

    With m = y θ·x and e = e^{-|m|} ∈ (0, 1]: log(1 + e^{-m}) = max(-m, 0) + log1p(e) and
    σ(-m) = e/(1 + e) for m >= 0, 1/(1 + e) otherwise — no overflow, and branch-free through
    the engine's vectorisable :func:`exp` and :func:`log1p_unit`.
    """
    d, n = features_t.shape
    for i in prange(points.shape[0]):
        theta = points[i]
        m = np.empty(TILE)
        w = np.empty(TILE)
        acc = np.zeros(TILE)
        gacc = np.zeros((d, TILE))
        for j0 in range(0, n, TILE):
            cnt = min(TILE, n - j0)
            x0 = features_t[0, j0 : j0 + cnt]
            c = theta[0]
            for t in range(cnt):
                m[t] = c * x0[t]
            for a in range(1, d):
                xa = features_t[a, j0 : j0 + cnt]
                c = theta[a]
                for t in range(cnt):
                    m[t] = fma(c, xa[t], m[t])
            yt = labels[j0 : j0 + cnt]
            for t in range(cnt):
                mt = m[t] * yt[t]
                e = exp(-abs(mt))
                acc[t] += max(-mt, 0.0) + log1p_unit(e)
                num = e if mt >= 0.0 else 1.0
                w[t] = -yt[t] * (num / (1.0 + e))
            for a in range(d):
                xa = features_t[a, j0 : j0 + cnt]
                ga = gacc[a]
                for t in range(cnt):
                    ga[t] = fma(w[t], xa[t], ga[t])
        v_out[i] = _tree_sum(acc)
        for a in range(d):
            g_out[i, a] = _tree_sum(gacc[a])


@njit(parallel=True, cache=True, nogil=True)
def kmeans_loss(points, records_t, k, clip, v_out, g_out):
    """L(c) = Σ_x min(min_j |x - c_j|², τ²) for centres c = points[i].reshape(k, d), and the
    (a.e.) gradient ∂L/∂c_j = Σ_{x: j nearest, dist < τ} 2(c_j - x); records transposed (d, n).
    Ties go to the lowest centre index."""
    d, n = records_t.shape
    t2 = clip * clip
    for i in prange(points.shape[0]):
        theta = points[i]
        d2 = np.empty(TILE)
        best = np.empty(TILE)
        arg = np.empty(TILE)
        acc = np.zeros(TILE)
        gacc = np.zeros((k * d, TILE))
        for j0 in range(0, n, TILE):
            cnt = min(TILE, n - j0)
            for t in range(cnt):
                best[t] = np.inf
                arg[t] = 0.0
            for j in range(k):
                _sq_dist_tile(theta, j * d, records_t, j0, cnt, d2)
                jf = float(j)
                for t in range(cnt):
                    closer = d2[t] < best[t]
                    best[t] = d2[t] if closer else best[t]
                    arg[t] = jf if closer else arg[t]
            for t in range(cnt):
                acc[t] += best[t] if best[t] < t2 else t2
            for j in range(k):
                jf = float(j)
                for a in range(d):
                    xa = records_t[a, j0 : j0 + cnt]
                    ga = gacc[j * d + a]
                    c = theta[j * d + a]
                    for t in range(cnt):
                        hit = (arg[t] == jf) & (best[t] < t2)
                        ga[t] += 2.0 * (c - xa[t]) if hit else 0.0
        v_out[i] = _tree_sum(acc)
        for q in range(k * d):
            g_out[i, q] = _tree_sum(gacc[q])


# --------------------------------------------------------------------------- gradient sums
# The gradient-norm utilities (u = -|A(θ)|, A(θ) = Σ_x g(θ; x), accuracy note §3) need the sum
# A of the per-record gradients and, for MALA, J(θ)A with J = ∂A/∂θ (symmetric). Families whose
# A is exact from a summary (the unclipped mean, linear regression) compute it in NumPy; these
# kernels are the sorted-record and record-pass forms of the others.


@njit(parallel=True, cache=True, nogil=True)
def clipped_gradient_sum_1d(points, sorted_records, prefix, clip, a_out, j_out):
    """A(θ) = Σ_x clip_c(θ - x) and J(θ) = dA/dθ = #{|θ - x| < c} from sorted records and the
    prefix sums ``prefix[k] = Σ_{j<k} x_j``, O(log n) per point (clip_c(v) = v·min(1, c/|v|)).

    Records with x <= θ - c contribute +c, those with x >= θ + c contribute -c, the others
    θ - x. ``clip = inf`` gives the plain Σ(θ - x) and J = n.
    """
    n = sorted_records.shape[0]
    for i in prange(points.shape[0]):
        theta = points[i, 0]
        below = np.searchsorted(sorted_records, theta - clip, side="right")
        inside_end = np.searchsorted(sorted_records, theta + clip, side="left")
        m = inside_end - below
        inner = m * theta - (prefix[inside_end] - prefix[below])
        a_out[i, 0] = inner + clip * below - clip * (n - inside_end) if m < n else inner
        j_out[i] = m


@njit(parallel=True, cache=True, nogil=True)
def assignment_gradient_sum(points, records_t, k, clip, a_out, w_out):
    """For centres c = points[i].reshape(k, d): A_j = Σ_{x → j} clip_τ(c_j - x) and
    W_j = Σ_{x → j} min(1, τ/|c_j - x|), x → j meaning c_j is x's nearest centre (ties to the
    lowest index); records transposed (d, n). k = 1 is the clipped mean. ``clip = inf`` never
    clips (then W_j is the count of records assigned to j).

    With the curvature term of :func:`assignment_curvature` the Jacobian applied to a direction
    D is (JD)_j = W_j D_j - Σ_{x → j, |v| > τ} τ/|v|³ v (v·D_j), v = c_j - x.
    """
    d, n = records_t.shape
    t2 = clip * clip
    for i in prange(points.shape[0]):
        theta = points[i]
        d2 = np.empty(TILE)
        best = np.empty(TILE)
        arg = np.empty(TILE)
        scale = np.empty(TILE)
        wacc = np.zeros((k, TILE))
        aacc = np.zeros((k * d, TILE))
        for j0 in range(0, n, TILE):
            cnt = min(TILE, n - j0)
            for t in range(cnt):
                best[t] = np.inf
                arg[t] = 0.0
            for j in range(k):
                _sq_dist_tile(theta, j * d, records_t, j0, cnt, d2)
                jf = float(j)
                for t in range(cnt):
                    closer = d2[t] < best[t]
                    best[t] = d2[t] if closer else best[t]
                    arg[t] = jf if closer else arg[t]
            for t in range(cnt):
                scale[t] = 1.0 if best[t] <= t2 else clip / np.sqrt(best[t])
            for j in range(k):
                jf = float(j)
                wj = wacc[j]
                for t in range(cnt):
                    wj[t] += scale[t] if arg[t] == jf else 0.0
                for a in range(d):
                    xa = records_t[a, j0 : j0 + cnt]
                    ga = aacc[j * d + a]
                    c = theta[j * d + a]
                    for t in range(cnt):
                        ga[t] += scale[t] * (c - xa[t]) if arg[t] == jf else 0.0
        for j in range(k):
            w_out[i, j] = _tree_sum(wacc[j])
        for q in range(k * d):
            a_out[i, q] = _tree_sum(aacc[q])


@njit(parallel=True, cache=True, nogil=True)
def assignment_curvature(points, records_t, k, clip, directions, out):
    """out_j = Σ_{x → j, |v| > τ} (τ/|v|³) v (v·D_j), v = c_j - x, D = directions[i] (k·d,):
    the clipped records' part of the Jacobian of :func:`assignment_gradient_sum` applied to D.
    Only needed when the clip can bind (a second pass over the records)."""
    d, n = records_t.shape
    t2 = clip * clip
    for i in prange(points.shape[0]):
        theta = points[i]
        dirs = directions[i]
        d2 = np.empty(TILE)
        best = np.empty(TILE)
        arg = np.empty(TILE)
        coef = np.empty(TILE)
        acc = np.zeros((k * d, TILE))
        for j0 in range(0, n, TILE):
            cnt = min(TILE, n - j0)
            for t in range(cnt):
                best[t] = np.inf
                arg[t] = 0.0
            for j in range(k):
                _sq_dist_tile(theta, j * d, records_t, j0, cnt, d2)
                jf = float(j)
                for t in range(cnt):
                    closer = d2[t] < best[t]
                    best[t] = d2[t] if closer else best[t]
                    arg[t] = jf if closer else arg[t]
            for j in range(k):
                jf = float(j)
                for t in range(cnt):
                    coef[t] = 0.0
                for a in range(d):  # coef = v·D_j
                    xa = records_t[a, j0 : j0 + cnt]
                    c = theta[j * d + a]
                    da = dirs[j * d + a]
                    for t in range(cnt):
                        coef[t] = fma(c - xa[t], da, coef[t])
                for t in range(cnt):
                    outside = (arg[t] == jf) & (best[t] > t2)
                    r = np.sqrt(best[t])
                    coef[t] = coef[t] * clip / (r * r * r) if outside else 0.0
                for a in range(d):
                    xa = records_t[a, j0 : j0 + cnt]
                    ga = acc[j * d + a]
                    c = theta[j * d + a]
                    for t in range(cnt):
                        ga[t] = fma(coef[t], c - xa[t], ga[t])
        for q in range(k * d):
            out[i, q] = _tree_sum(acc[q])


@njit(parallel=True, cache=True, nogil=True)
def logistic_gradient_sum(points, features_t, labels, a_out, j_out):
    """A(θ) = Σ -y x σ(-y θ·x) and J(θ) = Σ σ(m)σ(-m) x xᵀ (m = y θ·x, y ∈ {-1, +1}); points
    (N, d), features transposed (d, n); j_out (N, d, d), both triangles filled.

    With e = e^{-|m|}: σ(-m) = e/(1 + e) for m >= 0 and 1/(1 + e) otherwise, and
    σ(m)σ(-m) = e/(1 + e)², overflow-free through the engine's :func:`exp`.
    """
    d, n = features_t.shape
    for i in prange(points.shape[0]):
        theta = points[i]
        m = np.empty(TILE)
        w = np.empty(TILE)
        s = np.empty(TILE)
        aacc = np.zeros((d, TILE))
        jacc = np.zeros((d * d, TILE))
        for j0 in range(0, n, TILE):
            cnt = min(TILE, n - j0)
            x0 = features_t[0, j0 : j0 + cnt]
            c = theta[0]
            for t in range(cnt):
                m[t] = c * x0[t]
            for a in range(1, d):
                xa = features_t[a, j0 : j0 + cnt]
                c = theta[a]
                for t in range(cnt):
                    m[t] = fma(c, xa[t], m[t])
            yt = labels[j0 : j0 + cnt]
            for t in range(cnt):
                mt = m[t] * yt[t]
                e = exp(-abs(mt))
                num = e if mt >= 0.0 else 1.0
                w[t] = -yt[t] * (num / (1.0 + e))
                s[t] = e / ((1.0 + e) * (1.0 + e))
            for a in range(d):
                xa = features_t[a, j0 : j0 + cnt]
                ga = aacc[a]
                for t in range(cnt):
                    ga[t] = fma(w[t], xa[t], ga[t])
                for b in range(a, d):
                    xb = features_t[b, j0 : j0 + cnt]
                    jab = jacc[a * d + b]
                    for t in range(cnt):
                        jab[t] = fma(s[t] * xa[t], xb[t], jab[t])
        for a in range(d):
            a_out[i, a] = _tree_sum(aacc[a])
            for b in range(a, d):
                value = _tree_sum(jacc[a * d + b])
                j_out[i, a, b] = value
                j_out[i, b, a] = value
