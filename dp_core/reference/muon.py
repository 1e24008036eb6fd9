"""Plain NumPy references of the Muon maps and of the student–teacher unit (flows note §5, §2.4).

Independent oracles of ``engine.matrix_maps``, ``engine.two_layer`` and ``flows.muon``:

* :func:`regularized_polar_reference` — ``O_ε(M) = U diag(σ/√(σ² + ε)) Vᵀ`` (F 24) and
  ``ψ_ε(M) = Σ_r √(σ_r² + ε) + (q − min(p, q))√ε`` from ``numpy.linalg.svd``;
* :func:`newton_schulz5_reference` — Keller Jordan's ``zeropower_via_newtonschulz5`` (F 22)
  transcribed line by line for one matrix, in float64;
* :func:`muon_update_reference` — one ``muon_update`` (F 23): EMA momentum, Nesterov, NS5, scale;
* :func:`unit_output_reference` — ``ψ(x; Z) = g(w₂·relu(W₁x))`` and its gradient for one unit.

Never imported by the engine or the flows.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dp_core.types import FloatArray

__all__ = [
    "muon_update_reference",
    "newton_schulz5_reference",
    "regularized_polar_reference",
    "unit_output_reference",
]


def regularized_polar_reference(m: npt.ArrayLike, eps: float) -> tuple[FloatArray, float]:
    """``(O_ε(M), ψ_ε(M))`` of one (p, q) matrix by SVD: ``ψ_ε = tr((MᵀM + εI_q)^{1/2})``."""
    mat = np.asarray(m, dtype=float)
    u, s, vt = np.linalg.svd(mat, full_matrices=False)
    o = (u * (s / np.sqrt(s * s + eps))) @ vt
    q = mat.shape[1]
    psi = float(np.sqrt(s * s + eps).sum() + (q - s.shape[0]) * np.sqrt(eps))
    return o, psi


def newton_schulz5_reference(g: npt.ArrayLike, steps: int = 5) -> FloatArray:
    """``zeropower_via_newtonschulz5`` (F 22) for one matrix, float64 instead of bfloat16."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    x = np.array(g, dtype=float)
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    x = x / (np.linalg.norm(x) + 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        poly = b * gram + c * gram @ gram
        x = a * x + poly @ x
    return x.T if transposed else x


def muon_update_reference(
    grad: npt.ArrayLike, momentum: npt.ArrayLike, beta: float = 0.95, nesterov: bool = True
) -> tuple[FloatArray, FloatArray]:
    """``muon_update`` (F 23): returns (update, new momentum) with ``m ← βm + (1−β)g``,
    ``u = (1−β)g + βm`` (Nesterov) or ``m``, ``NS5(u)·√max(1, rows/cols)``."""
    g = np.asarray(grad, dtype=float)
    m = beta * np.asarray(momentum, dtype=float) + (1.0 - beta) * g
    u = (1.0 - beta) * g + beta * m if nesterov else m
    scale = np.sqrt(max(1.0, g.shape[0] / g.shape[1]))
    return newton_schulz5_reference(u) * scale, m


def unit_output_reference(
    z: npt.ArrayLike, x: npt.ArrayLike, output: str = "quadexp", scale: float = 2.0
) -> tuple[FloatArray, FloatArray]:
    """``ψ(x_n; Z)`` (n,) and ``∇_Z ψ(x_n; Z)`` (n, H, D+1) for one unit Z = [W₁ | w₂]."""
    zz = np.asarray(z, dtype=float)
    xs = np.atleast_2d(np.asarray(x, dtype=float))
    w1, w2 = zz[:, :-1], zz[:, -1]
    pre = xs @ w1.T  # (n, H)
    act = np.maximum(pre, 0.0)
    s = act @ w2
    if output == "quadexp":
        g = np.exp(-(s**2) / scale**2)
        dg = -2.0 * s / scale**2 * g
    else:
        g, dg = s, np.ones_like(s)
    grad = np.empty((xs.shape[0], *zz.shape))
    grad[:, :, -1] = dg[:, None] * act
    grad[:, :, :-1] = (dg[:, None] * w2[None, :] * (pre > 0))[:, :, None] * xs[:, None, :]
    return g, grad
