"""The debiased Sinkhorn divergence S_ε (flows note (F 16)) and its transport map (F 19).

``S_ε(α, β) = OT_ε(α, β) − ½OT_ε(α, α) − ½OT_ε(β, β) = ⟨a, f − p⟩ + ⟨b, g − q⟩`` with (f, g)
the two-sided potentials and p, q the symmetric ones, all from
:mod:`dp_core.engine.sinkhorn_solve` (cost ½|x − y|², ε = blur²). Its first variation in α is
``f − p`` (F 18) and the gradient of the extended potential is ``∇f(x) = x − T(x)`` with the
barycentric map ``T(x) = Σ_j softmax_j(log b_j + (g_j − c(x, y_j))/ε) y_j`` (F 19), computed in
the solver's last pass; so ``∇_x S_ε = a ⊙ (T_self(x) − T(x))`` (F 18)–(F 19).

Composition only: no Numba here, no per-point loops.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from dp_core.engine import kernels
from dp_core.engine.sinkhorn_solve import Path, sinkhorn_pairs, sinkhorn_self
from dp_core.errors import InvalidParameter

__all__ = ["SinkhornDivergence", "barycentric_map", "check_measure", "sinkhorn_divergence"]


class SinkhornDivergence(NamedTuple):
    """S_ε and its parts. ``grad_x`` (N, d) is ``∂S_ε/∂x_i = a_i (T_p(x_i) − T_g(x_i))``;
    ``iterations`` and ``converged`` are those of the (xy, xx, yy) problems."""

    value: float
    ot_xy: float
    ot_xx: float
    ot_yy: float
    f: np.ndarray
    g: np.ndarray
    p: np.ndarray
    q: np.ndarray
    grad_x: np.ndarray
    iterations: tuple[int, int, int]
    converged: bool


def check_measure(points: np.ndarray, weights: np.ndarray | None, field: str):
    """Validate a weighted point cloud; returns float64 C-contiguous (points, weights).

    Points (N, d) finite; weights (N,) finite, >= 0, summing to 1 within 1e-9 (uniform if None).
    """
    x = np.ascontiguousarray(np.asarray(points, dtype=np.float64))
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0 or not np.isfinite(x).all():
        raise InvalidParameter(field, "expected a non-empty (N, d) array of finite points")
    if weights is None:
        return x, np.full(x.shape[0], 1.0 / x.shape[0])
    w = np.ascontiguousarray(np.asarray(weights, dtype=np.float64))
    if w.shape != (x.shape[0],) or not np.isfinite(w).all() or (w < 0).any():
        raise InvalidParameter(field, "weights must be finite, >= 0, one per point")
    if abs(float(w.sum()) - 1.0) > 1e-9:
        raise InvalidParameter(field, "weights must sum to 1")
    return x, w


def _check_blur(blur: float) -> float:
    if not (math.isfinite(blur) and blur > 0):
        raise InvalidParameter("blur", "must be finite and positive")
    return float(blur)


def sinkhorn_divergence(
    x: np.ndarray,
    a: np.ndarray | None,
    y: np.ndarray,
    b: np.ndarray | None,
    blur: float,
    *,
    scaling: float | None = 0.5,
    tol: float = 1e-9,
    max_iter: int = 1000,
    path: Path = "auto",
) -> SinkhornDivergence:
    """Debiased ``S_ε(α, β)`` of (F 16), ``α = Σ a_i δ_{x_i}``, ``β = Σ b_j δ_{y_j}``, ε = blur².

    Parameters
    ----------
    x : (N, d), y : (M, d) float64 points; a (N,), b (M,) probability weights (None: uniform).
    blur : ε = blur² for the cost ½|x − y|².
    scaling, tol, max_iter, path : as in
        :func:`dp_core.engine.sinkhorn_solve.sinkhorn_pairs` (the stopping rule is the
        sup-change of the potentials at ε = blur²; Newton polishing at the cap).

    Returns
    -------
    :class:`SinkhornDivergence`.
    """
    x, a = check_measure(x, a, "x")
    y, b = check_measure(y, b, "y")
    if x.shape[1] != y.shape[1]:
        raise InvalidParameter("y", "x and y must have the same dimension")
    blur = _check_blur(blur)
    xo = np.array([0, x.shape[0]], dtype=np.int64)
    yo = np.array([0, y.shape[0]], dtype=np.int64)
    kw = {"scaling": scaling, "tol": tol, "max_iter": max_iter, "path": path}
    xy = sinkhorn_pairs(x, xo, a, y, yo, b, blur, **kw)
    xx = sinkhorn_self(x, xo, a, blur, **kw)
    yy = sinkhorn_self(y, yo, b, blur, **kw)
    ot_xy = float(a @ xy.f + b @ xy.g)
    ot_xx = float(2.0 * (a @ xx.f))
    ot_yy = float(2.0 * (b @ yy.f))
    value = float(a @ (xy.f - xx.f) + b @ (xy.g - yy.f))
    grad = a[:, None] * (xx.barycentre - xy.barycentre)
    iters = (int(xy.iterations[0]), int(xx.iterations[0]), int(yy.iterations[0]))
    conv = bool(xy.converged[0] and xx.converged[0] and yy.converged[0])
    return SinkhornDivergence(value, ot_xy, ot_xx, ot_yy, xy.f, xy.g, xx.f, yy.f, grad, iters, conv)


def barycentric_map(
    z: np.ndarray, y: np.ndarray, b: np.ndarray, g: np.ndarray, blur: float
) -> tuple[np.ndarray, np.ndarray]:
    """Extended potential and barycentric map at any points z (F 19).

    ``f(z) = −ε log Σ_j b_j e^{(g_j − c(z, y_j))/ε}`` and ``T(z) = Σ_j softmax_j(·) y_j``, one
    fused tiled pass (P4). z (L, d), y (M, d), b (M,), g (M,) -> ((L,), (L, d)).
    """
    eps = _check_blur(blur) ** 2
    with np.errstate(divide="ignore"):
        log_b = np.log(b)
    lse, bary = kernels.softmax_barycentre(
        np.ascontiguousarray(z, dtype=np.float64), y, log_b, g, eps
    )
    return -eps * lse, bary
