"""The hard semi-discrete model (AE-OT, aeot.md §2): masses, Adam fit, T_0 and the top-2 map.

Power cells (A 3) ``W_j = {x : a_j(x) ≥ a_k(x) ∀k}`` with ``a_j(x) = ⟨x, y_j⟩ + h_j``; the engine's
top-2 reduction (:func:`dp_core.engine.affine.affine_top2` on the scores ``a_j(x)``) gives the
best and second-best cell of each source point. Hard masses on a fixed sample (A 7) are
the histogram of the argmax; the energy (A 4) is ``B⁻¹ Σ_b max_j a_j(x_b) − Σ ν_j h_j`` with
gradient ``m − ν`` (A 5).

Fit (A 8): AE-OT's Adam without bias correction (β = 0.9 / 0.999, h centred after each step),
started from the smoothed fit at ε = 0.001 (aeot.md §5.1), keeping the h with the smallest ‖g‖₂
(the energy is piecewise linear on a fixed sample and Adam plateaus, aeot.md §5.2).

Maps: ``T_0(x) = y_{j*(x)}`` (A 3, A 10: training codes only) and AE-OT's public-code top-2
interpolation (A 11′): with ``i₁, i₂`` the two best cells and θ the angle between the unit
normals ``(y_i, −1)/|·|``, keep draws with θ < threshold and output ``λ y_{i₁} + (1 − λ) y_{i₂}``,
λ ~ U(0, 1), without deduplication (aeot.md §5); rejected draws are replaced by fresh ones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dp_core.engine.affine import affine_top2
from dp_core.types import FloatArray

__all__ = [
    "ADAM_LR",
    "fit_hard",
    "hard_cells",
    "hard_map",
    "hard_masses",
    "hard_potential",
    "top2_pairs",
]

ADAM_LR = 1e-4
"""Adam step in units of s² (AE-OT toy default for 8 Gaussians is 2e-5 on raw codes; aeot.md
§5.1 uses 1e-4 on standardized codes)."""


def hard_potential(x: FloatArray, y: FloatArray, h: FloatArray) -> FloatArray:
    """``u_h(x) = max_j(⟨x, y_j⟩ + h_j)`` (A 2)."""
    _, val = affine_top2(x, y, h)
    return val[:, 0]


def hard_masses(x: FloatArray, y: FloatArray, h: FloatArray) -> tuple[float, FloatArray]:
    """(``B⁻¹ Σ_b u_h(x_b)`` , hard cell masses (A 7)) on the sample x."""
    idx, val = affine_top2(x, y, h)
    mean_u = float(np.mean(val[:, 0]))
    return mean_u, np.bincount(idx[:, 0], minlength=y.shape[0]) / x.shape[0]


def fit_hard(
    x: FloatArray,
    y: FloatArray,
    nu: FloatArray,
    h0: FloatArray,
    *,
    iterations: int,
    lr: float = ADAM_LR,
    progress: Callable[[int], None] | None = None,
) -> tuple[FloatArray, int, float, float]:
    """Adam (A 8) on the hard energy from ``h0``: (best h, evaluations, energy, max rel. error).

    Keeps the iterate with the smallest ‖m − ν‖₂ (evaluated at that iterate).
    """
    h = h0 - np.mean(h0)
    mom = np.zeros_like(h)
    vel = np.zeros_like(h)
    best_h, best_g, best_e, best_err = h.copy(), np.inf, np.nan, np.inf
    for step in range(1, iterations + 1):
        mean_u, masses = hard_masses(x, y, h)
        g = masses - nu
        gnorm = float(np.sqrt(g @ g))
        if gnorm < best_g:
            best_h, best_g = h.copy(), gnorm
            best_e = mean_u - float(nu @ h)
            best_err = float(np.max(np.abs(g) / nu))
        if progress is not None:
            progress(step)
        if best_g == 0.0:
            return best_h, step, best_e, best_err
        mom = 0.9 * mom + 0.1 * g
        vel = 0.999 * vel + 0.001 * g * g
        h = h - lr * mom / (np.sqrt(vel) + 1e-8)
        h = h - np.mean(h)
    return best_h, iterations, best_e, best_err


def hard_cells(x: FloatArray, y: FloatArray, h: FloatArray) -> np.ndarray:
    """``j*(x) = argmax_j a_j(x)`` (A 3), int64 (N,)."""
    idx, _ = affine_top2(x, y, h)
    return idx[:, 0]


def hard_map(x: FloatArray, y: FloatArray, h: FloatArray) -> FloatArray:
    """``T_0(x) = y_{argmax_j a_j(x)}`` (A 3)."""
    idx, _ = affine_top2(x, y, h)
    return y[idx[:, 0]]


def top2_pairs(
    x: FloatArray, y: FloatArray, h: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(i₁ (N,), i₂ (N,), θ (N,)): the two best cells and the angle of their normals (A 11′)."""
    idx, _ = affine_top2(x, y, h)
    norm = np.sqrt(1.0 + np.einsum("ij,ij->i", y, y))
    i1, i2 = idx[:, 0], idx[:, 1]
    cos = (np.einsum("ij,ij->i", y[i1], y[i2]) + 1.0) / (norm[i1] * norm[i2])
    return i1, i2, np.arccos(np.clip(cos, -1.0, 1.0))
