"""The smoothed semi-discrete OT energy terms of the generators (aeot.md §4), no Numba of its own.

:func:`smoothed_energy_terms` — one evaluation of the smoothed energy (A 13) in the affine form
``a_j(x) = ⟨x, y_j⟩ + h_j``: the row log-sum-exp ``A_b = logsumexp_j(a_j(x_b)/ε)`` (P3 over
rows) and the soft cell masses ``m_j = B⁻¹ Σ_b exp(a_j(x_b)/ε − A_b)`` (P3 again over columns
with row offsets ``−ε A_b``, aeot.md §4 step 3). Two register-blocked passes of
:func:`dp_core.engine.affine.affine_logsumexp`, 2·Bn exps, memory O((B + n)d), never a B × n
matrix; deterministic. (The affine form has no ``|x|² − 2⟨x, y⟩`` cancellation to fear: only
differences of scores matter, and points are standardized, so ``|⟨x, y⟩|`` stays O(d).) The hard
model's max / top-2 reduction is :func:`dp_core.engine.affine.affine_top2`.
"""

from __future__ import annotations

import math

import numpy as np

from dp_core.engine.affine import affine_logsumexp

__all__ = ["smoothed_energy_terms"]


def smoothed_energy_terms(
    x: np.ndarray, y: np.ndarray, h: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Row log-sum-exps and soft cell masses of the smoothed semi-discrete energy (A 13).

    Parameters
    ----------
    x : (B, d) float64 source sample.
    y : (n, d) float64 codes.
    h : (n,) heights.
    eps : temperature ε > 0.

    Returns
    -------
    (A (B,), m (n,)) with ``A_b = log Σ_j exp((h_j + ⟨x_b, y_j⟩)/ε)``, so that the smoothed
    potential is ``u_ε(x_b) = ε A_b`` (A 11), and the soft cell masses
    ``m_j = B⁻¹ Σ_b exp((h_j + ⟨x_b, y_j⟩)/ε − A_b)`` (Σ m = 1 up to round-off). The energy is
    ``B⁻¹ Σ_b ε A_b − Σ_j ν_j h_j`` and its gradient ``m − ν`` (A 13).
    """
    rows, _ = affine_logsumexp(x, y, h, eps)
    # columns: log Σ_b exp((−ε A_b + ⟨y_j, x_b⟩)/ε), then add h_j/ε and divide by B
    cols, _ = affine_logsumexp(y, x, -eps * rows, eps)
    masses = np.exp(cols + h / eps - math.log(x.shape[0]))
    return rows, masses
