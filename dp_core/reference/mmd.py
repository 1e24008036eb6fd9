"""Plain NumPy references of the MMD and DrMMD flows (flows note §2, §3).

Independent oracles of ``dp_core.flows.mmd`` / ``drmmd`` and of the engine pieces under them:

* :func:`kernel_matrix_reference` — dense ``k(x_i, y_j)`` from explicit differences;
* :func:`mmd2_reference` — the V-statistic (F 3) from dense matrices;
* :func:`witness_gradient_reference` — ``Σ_j a_j ∇_1k(x_i, z_j) − Σ_m b_m ∇_1k(x_i, y_m)``
  (F 7) through the chunked P2 reference of :mod:`dp_core.reference.bdls`;
* :func:`witness_gradient_numpy` — the same for the Gaussian kernel the fast vectorised-NumPy way
  (``|x|² + |s|² − 2x·s`` through BLAS, ``np.exp`` on blocks of rows): the benchmark anchor;
* :func:`mmd_flow_reference` — the noisy Euler scheme (F 7) with the noise draws as an input;
* :func:`drmmd_reference` — DrMMD as the MMD² of the explicit de-regularised kernel matrix
  (F 10), a route independent of the flow's closed form (F 11);
* :func:`drmmd_features_reference` — DrMMD straight from its definition (F 9) for a kernel with
  explicit finite-dimensional features, ``k(x, x′) = φ(x)·φ(x′)``: Σ_π is then the F×F matrix
  ``Σ_m b_m φ(y_m)φ(y_m)ᵀ``;
* :func:`three_ring` — the reference experiment of §2.6: target and source particles.

Memory: the dense references form N×M matrices (small inputs only); the NumPy anchor streams
over blocks of rows (``2**22`` entries per block). Never imported by the engine or the flows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from dp_core.reference.bdls import KernelKind, _kernel_profile, kernel_grad_sum_reference
from dp_core.types import FloatArray

__all__ = [
    "drmmd_features_reference",
    "drmmd_reference",
    "kernel_matrix_reference",
    "mmd2_reference",
    "mmd_flow_reference",
    "three_ring",
    "witness_gradient_numpy",
    "witness_gradient_reference",
]

_BLOCK_ENTRIES = 2**22


def kernel_matrix_reference(
    x: npt.ArrayLike, y: npt.ArrayLike, kind: KernelKind, sigma: float
) -> FloatArray:
    """Dense ``K[i, j] = k(x_i, y_j)`` (kernels as in :mod:`dp_core.reference.bdls`)."""
    xs, ys = np.atleast_2d(np.asarray(x, float)), np.atleast_2d(np.asarray(y, float))
    diff = xs[:, None, :] - ys[None, :, :]
    return _kernel_profile(kind, np.einsum("nmk,nmk->nm", diff, diff), sigma)[0]


def mmd2_reference(
    z: npt.ArrayLike,
    a: npt.ArrayLike,
    y: npt.ArrayLike,
    b: npt.ArrayLike,
    kind: KernelKind,
    sigma: float,
) -> float:
    """``aᵀK_ZZ a − 2aᵀK_ZY b + bᵀK_YY b`` (F 3), the V-statistic, from dense matrices."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    kzz = kernel_matrix_reference(z, z, kind, sigma)
    kzy = kernel_matrix_reference(z, y, kind, sigma)
    kyy = kernel_matrix_reference(y, y, kind, sigma)
    return float(a @ kzz @ a - 2.0 * a @ kzy @ b + b @ kyy @ b)


def witness_gradient_reference(
    at: npt.ArrayLike,
    z: npt.ArrayLike,
    a: npt.ArrayLike,
    y: npt.ArrayLike,
    b: npt.ArrayLike,
    kind: KernelKind,
    sigma: float,
) -> FloatArray:
    """``∇φ(at_i) = Σ_j a_j ∇_1k(at_i, z_j) − Σ_m b_m ∇_1k(at_i, y_m)`` (F 6), (L, d)."""
    return kernel_grad_sum_reference(at, z, a, kind, sigma) - kernel_grad_sum_reference(
        at, y, b, kind, sigma
    )


def witness_gradient_numpy(
    at: FloatArray, z: FloatArray, a: FloatArray, y: FloatArray, b: FloatArray, sigma: float
) -> FloatArray:
    """Gaussian-kernel witness gradient (F 7) in vectorised NumPy (the benchmark anchor).

    With sources ``s = [z; y]`` and weights ``w = [a; −b]``, ``K = exp(−|x − s|²/(2σ²))`` is
    formed block by block of rows from ``|x|² + |s|² − 2x·sᵀ`` (one BLAS product per block), and
    ``g = −(x·(Kw) − K(w∘s))/σ²``. Squared distances are clipped at 0 (the expansion can round
    below it).
    """
    s = np.concatenate([z, y])
    w = np.concatenate([a, -b])
    ws = w[:, None] * s
    s2 = np.einsum("md,md->m", s, s)
    c = -0.5 / sigma**2
    out = np.empty(at.shape)
    rows = max(1, _BLOCK_ENTRIES // s.shape[0])
    for start in range(0, at.shape[0], rows):
        xb = at[start : start + rows]
        d2 = np.einsum("nd,nd->n", xb, xb)[:, None] + s2[None, :] - 2.0 * (xb @ s.T)
        np.maximum(d2, 0.0, out=d2)
        d2 *= c
        k = np.exp(d2, out=d2)
        out[start : start + rows] = -(xb * (k @ w)[:, None] - k @ ws) / sigma**2
    return out


def mmd_flow_reference(
    z0: npt.ArrayLike,
    a: npt.ArrayLike,
    y: npt.ArrayLike,
    b: npt.ArrayLike,
    kind: KernelKind,
    sigma: float,
    step_size: float,
    noise: Callable[[int], FloatArray | None],
    n_steps: int,
) -> FloatArray:
    """The noisy Euler scheme (F 7): ``z ← z − γ ∇φ_ν(z + βu)`` with ``noise(t)`` returning the
    perturbation ``β_t u_t`` (N, d) of step t, or None for β_t = 0. Returns the final particles."""
    z = np.array(z0, dtype=float)
    for t in range(n_steps):
        shift = noise(t)
        at = z if shift is None else z + shift
        z = z - step_size * witness_gradient_reference(at, z, a, y, b, kind, sigma)
    return z


def drmmd_reference(
    z: npt.ArrayLike,
    a: npt.ArrayLike,
    y: npt.ArrayLike,
    b: npt.ArrayLike,
    kind: KernelKind,
    sigma: float,
    lmbda: float,
) -> float:
    """DrMMD_λ as the MMD² of the de-regularised kernel (F 10), from dense matrices:
    ``k̃(x, x′) = ((1+λ)/λ)[k(x, x′) − k_Y(x)ᵀ(K_YY + λB⁻¹)⁻¹k_Y(x′)]`` with B = diag(b), and
    ``DrMMD = wᵀK̃_SS w`` for ``S = [z; y]``, ``w = [a; −b]``."""
    zs, ys = np.asarray(z, float), np.asarray(y, float)
    a, b = np.asarray(a, float), np.asarray(b, float)
    s = np.concatenate([zs, ys])
    w = np.concatenate([a, -b])
    k_ss = kernel_matrix_reference(s, s, kind, sigma)
    k_sy = kernel_matrix_reference(s, ys, kind, sigma)
    k_yy = kernel_matrix_reference(ys, ys, kind, sigma)
    shifted = k_yy + lmbda * np.diag(1.0 / b)
    k_tilde = (1.0 + lmbda) / lmbda * (k_ss - k_sy @ np.linalg.solve(shifted, k_sy.T))
    return float(w @ k_tilde @ w)


def drmmd_features_reference(
    phi_z: npt.ArrayLike,
    a: npt.ArrayLike,
    phi_y: npt.ArrayLike,
    b: npt.ArrayLike,
    lmbda: float,
) -> float:
    """DrMMD_λ by its definition (F 9) for explicit features (rows of ``phi_z`` (N, F) and
    ``phi_y`` (M, F)): ``(1+λ) uᵀ(Σ_π + λI)⁻¹u`` with ``u = Σ_i a_i φ(z_i) − Σ_m b_m φ(y_m)``
    and the uncentred ``Σ_π = Σ_m b_m φ(y_m)φ(y_m)ᵀ``."""
    pz, py = np.asarray(phi_z, float), np.asarray(phi_y, float)
    a, b = np.asarray(a, float), np.asarray(b, float)
    u = a @ pz - b @ py
    cov = (py * b[:, None]).T @ py
    return float((1.0 + lmbda) * u @ np.linalg.solve(cov + lmbda * np.eye(u.shape[0]), u))


def three_ring(seed: int = 0) -> tuple[FloatArray, FloatArray]:
    """(source (300, 2), target (300, 2)) of flows note §2.6: three circles of radius 0.3 centred
    at (0, 0), (0, −0.75), (0, −1.5), 100 points each at angles 2πj/100 (the DrMMD code's
    ``ThreeRing``, r = 0.3, δ = 0.5); source ``default_rng(seed).normal(size=(300, 2))/100 −
    (0, 0.3)`` (the code's source law; the note uses seed 0)."""
    angles = 2.0 * np.pi * np.arange(100) / 100
    ring = 0.3 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    target = np.concatenate([ring + np.array([0.0, c]) for c in (0.0, -0.75, -1.5)])
    source = np.random.default_rng(seed).normal(size=(300, 2)) / 100 - np.array([0.0, 0.3])
    return source, target
