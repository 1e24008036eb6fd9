"""1-D finite-volume reference solver of the mean-field SHK PDE and divergences between two laws.

Owns the independent oracle of certificates note §8.1: the SHK flow (certificates (3))

    ∂_t ρ = κ_T ∇·(ρ ∇log(ρ/π)) − κ_R ρ (log(ρ/π) − ∫ρ log(ρ/π)),     π ∝ e^{−V},

on an interval [a, b] with a reflecting (no-flux) or periodic boundary, and the pairwise
divergences of §8.1 between two densities on one grid (sup|w|, osc w, KL, Rényi, hockey-stick).

Scheme (certificates §8.1), on m equal cells with centres ``c_i = a + (i + ½)·dx``:

* V is sampled at the centres, ``V_i = V(c_i)`` (or given as such values, so piecewise-constant
  rank utilities are exact). The discrete target is ``π_i = e^{−V_i} / Σ_j e^{−V_j} dx``.
* Transport acts on ``h = ρ/π``. With face weights ``ω_{i+½} = e^{−(V_i+V_{i+1})/2}`` the flux
  form ``∂_t ρ_i = κ_T/dx² [ω_{i+½}(h_{i+1} − h_i) − ω_{i−½}(h_i − h_{i−1})] / Z`` divided by
  ``π_i = e^{−V_i}/Z`` is the generator ``(A h)_i = Σ_{j~i} q_ij (h_j − h_i)`` with rates
  ``q_ij = κ_T e^{(V_i − V_j)/2} / dx²`` (neighbours j of i; the normalisation Z cancels and only
  differences of V appear). ``π_i q_ij = π_j q_ji``: A is π-reversible.
* Implicit Euler ``(I − dt·A) h⁺ = h``. ``I − dt·A`` is a strictly diagonally dominant M-matrix with
  unit row sums, so ``P = (I − dt·A)^{-1}`` is a Markov matrix (non-negative, rows summing to 1)
  with ``πP = π``: the discrete maximum principle ``h⁺ ∈ [min h, max h]`` holds exactly and route C
  (8) holds exactly at every step.
* Reaction: the exact Fisher–Rao step (certificates (6)) over a time τ,
  ``log ρ ← e^{−κ_R τ} log ρ − (1 − e^{−κ_R τ}) V`` then renormalise, i.e.
  ``log h ← e^{−κ_R τ} log h + const``.
* Strang splitting per step: FR(dt/2), transport(dt), FR(dt/2). The last step before each requested
  output time is shortened so that the solver lands exactly on it.

The state is ``g = log h`` shifted to ``max g = 0``, so a large range of V never overflows.
Reflecting boundaries use a pivot-free LDLᵀ of the symmetrised tridiagonal system (LAPACK
``pttrf``/``pttrs``); periodic ones a sparse LU
(:func:`scipy.sparse.linalg.splu`) of the cyclic tridiagonal matrix.

Plain NumPy/SciPy, for tests and verification only; never imported by the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg
from scipy.special import logsumexp

from dp_core.errors import InvalidParameter
from dp_core.types import FloatArray

__all__ = [
    "Boundary",
    "Grid1D",
    "PDESolution",
    "hockey_stick",
    "kl",
    "log_ratio_sup_osc",
    "renyi",
    "solve_shk_1d",
    "stationary_density",
    "transport_generator_1d",
]

Boundary = Literal["reflecting", "periodic"]
PotentialLike = FloatArray | Sequence[float] | Callable[[FloatArray], npt.ArrayLike]


# --------------------------------------------------------------------------- grid and solution
@dataclass(frozen=True, eq=False)
class Grid1D:
    """m equal cells on [a, b].

    Attributes
    ----------
    a, b : float
        Interval end points, ``a < b``.
    m : int
        Number of cells, ``m >= 2``.
    centres : (m,) float64
        Cell centres ``a + (i + ½)·dx``.
    faces : (m + 1,) float64
        Cell faces ``a + i·dx`` (``faces[0] == a``, ``faces[-1] == b``).
    dx : float
        Cell width ``(b − a)/m``.
    """

    a: float
    b: float
    m: int
    centres: FloatArray = field(init=False, repr=False)
    faces: FloatArray = field(init=False, repr=False)
    dx: float = field(init=False)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.a) and np.isfinite(self.b) and self.a < self.b):
            raise InvalidParameter("grid", "need finite end points with a < b")
        if int(self.m) != self.m or self.m < 2:
            raise InvalidParameter("grid", "m must be an integer >= 2")
        dx = (self.b - self.a) / self.m
        faces = self.a + dx * np.arange(self.m + 1, dtype=np.float64)
        faces[-1] = self.b
        object.__setattr__(self, "m", int(self.m))
        object.__setattr__(self, "dx", float(dx))
        object.__setattr__(self, "faces", faces)
        object.__setattr__(self, "centres", self.a + dx * (np.arange(self.m) + 0.5))


@dataclass(frozen=True, eq=False)
class PDESolution:
    """Densities of the SHK flow at the requested times.

    Attributes
    ----------
    grid : Grid1D
        The grid of the solve.
    times : (T,) float64
        The requested output times, as given.
    densities : (T, m) float64
        ``densities[k]`` is the cell-average density at ``times[k]``; each row is a probability
        density on the grid: ``densities[k].sum() * grid.dx == 1``.
    pi : (m,) float64
        The discrete stationary density ``π_i ∝ e^{−V_i}`` (see :func:`stationary_density`).
    """

    grid: Grid1D
    times: FloatArray
    densities: FloatArray
    pi: FloatArray

    def cdf_faces(self, time_index: int) -> FloatArray:
        """CDF at the cell faces at ``times[time_index]``.

        Returns
        -------
        (m + 1,) float64
            ``F(faces[k]) = Σ_{i<k} ρ_i dx``; ``F(a) = 0`` and ``F(b) = 1`` up to round-off.
        """
        rho = self.densities[time_index]
        out = np.empty(self.grid.m + 1)
        out[0] = 0.0
        np.cumsum(rho * self.grid.dx, out=out[1:])
        return out

    def cdf_at(self, time_index: int, x: npt.ArrayLike) -> FloatArray:
        """Piecewise-linear CDF (the exact CDF of the cell-wise constant density) at points ``x``.

        Parameters
        ----------
        time_index : int
            Index into :attr:`times`.
        x : array_like, any shape
            Evaluation points; values below ``a`` give 0, above ``b`` give 1.

        Returns
        -------
        float64 array of the shape of ``x``.
        """
        xs = np.asarray(x, dtype=np.float64)
        return np.interp(xs, self.grid.faces, self.cdf_faces(time_index), left=0.0, right=1.0)


# --------------------------------------------------------------------------- potential and π
def _potential_values(V: PotentialLike, grid: Grid1D) -> FloatArray:
    """V at the cell centres, validated: (m,) finite float64."""
    values = V(grid.centres.copy()) if callable(V) else V
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (grid.m,):
        raise InvalidParameter("V", f"expected {grid.m} values at the cell centres")
    if not np.all(np.isfinite(arr)):
        raise InvalidParameter("V", "potential values must be finite")
    return arr


def _check_boundary(boundary: str) -> None:
    if boundary not in ("reflecting", "periodic"):
        raise InvalidParameter("boundary", "must be 'reflecting' or 'periodic'")


def _normalised_density(log_rho: FloatArray, dx: float) -> FloatArray:
    """``exp(log_rho)`` normalised to ``Σ ρ dx = 1``, computed stably."""
    return np.exp(log_rho - logsumexp(log_rho) - np.log(dx))


def stationary_density(V: PotentialLike, grid: Grid1D) -> FloatArray:
    """Discrete stationary density ``π_i = e^{−V_i} / Σ_j e^{−V_j} dx`` (certificates (1)).

    Parameters
    ----------
    V : (m,) array of values at ``grid.centres``, or a callable mapping the (m,) centres to them.
    grid : Grid1D

    Returns
    -------
    (m,) float64 with ``sum(π)·dx == 1``.
    """
    return _normalised_density(-_potential_values(V, grid), grid.dx)


def transport_generator_1d(
    V: PotentialLike,
    grid: Grid1D,
    kappa_T: float = 1.0,
    boundary: Boundary = "reflecting",
) -> scipy.sparse.csr_array:
    """Generator A of the transport part in the h = ρ/π form (certificates (3), §8.1).

    ``(A h)_i = Σ_{j~i} q_ij (h_j − h_i)`` with ``q_ij = κ_T e^{(V_i − V_j)/2} / dx²`` for the
    neighbours j of cell i (cells i ± 1; with a periodic boundary also the wrap-around pair
    (0, m−1)). This is the finite-volume flux with face weights ``e^{−(V_i+V_j)/2}`` divided by
    ``π_i``; it satisfies ``A·1 = 0`` and detailed balance ``π_i q_ij = π_j q_ji``.

    Parameters
    ----------
    V : (m,) values at the centres, or a callable of the (m,) centres.
    grid : Grid1D
    kappa_T : float, >= 0
        Transport weight κ_T.
    boundary : 'reflecting' (no flux through a and b) or 'periodic'.

    Returns
    -------
    (m, m) sparse generator (CSR): off-diagonals ``q_ij >= 0``, zero row sums.
    """
    _check_boundary(boundary)
    if not (np.isfinite(kappa_T) and kappa_T >= 0):
        raise InvalidParameter("kappa_T", "must be finite and >= 0")
    v = _potential_values(V, grid)
    m = grid.m
    left = np.arange(m - 1)
    if boundary == "periodic":
        left = np.append(left, m - 1)
    right = (left + 1) % m
    scale = kappa_T / grid.dx**2
    q_lr = scale * np.exp(0.5 * (v[left] - v[right]))
    q_rl = scale * np.exp(0.5 * (v[right] - v[left]))
    rows = np.concatenate([left, right])
    cols = np.concatenate([right, left])
    rates = np.concatenate([q_lr, q_rl])
    off = scipy.sparse.coo_array((rates, (rows, cols)), shape=(m, m)).tocsr()
    off.sum_duplicates()
    out_rate = np.asarray(off.sum(axis=1)).ravel()
    return (off - scipy.sparse.diags_array(out_rate)).tocsr()


def _reversible_weights(A: scipy.sparse.csr_array) -> FloatArray:
    """Positive weights w with w_i A_{i,i+1} = w_{i+1} A_{i+1,i} (detailed balance: w ∝ π),
    normalised to max 1; from the generator itself so that the symmetry is exact to rounding."""
    up, down = A.diagonal(1), A.diagonal(-1)
    log_w = np.concatenate([[0.0], np.cumsum(np.log(up) - np.log(down))])
    return np.exp(log_w - log_w.max())


def _implicit_euler_solver(
    A: scipy.sparse.csr_array, dt: float, boundary: Boundary
) -> Callable[[FloatArray], FloatArray]:
    """Return ``h ↦ (I − dt·A)^{-1} h``: pivot-free LDLᵀ (reflecting) or sparse LU (periodic).

    Reflecting: A is π-reversible, so diag(π)(I − dt·A) is a symmetric positive definite,
    diagonally dominant tridiagonal M-matrix; LAPACK's ``pttrf``/``pttrs`` factor it without
    pivoting. Partial pivoting (``solve_banded``) swaps rows of this row- but not
    column-dominant matrix and loses the relative accuracy of the tiny entries of h = ρ/π when
    V is steep (e.g. V = 200θ), which once produced negative h and NaN densities.
    """
    m = A.shape[0]
    M = (scipy.sparse.eye_array(m) - dt * A).tocsc()
    if boundary == "reflecting":
        weights = _reversible_weights(A)
        diag = weights * M.diagonal(0)
        off = weights[:-1] * M.diagonal(1)
        d, e, info = scipy.linalg.lapack.dpttrf(diag, off)
        if info != 0:
            raise ArithmeticError("transport matrix is not positive definite")
        return lambda h: scipy.linalg.lapack.dpttrs(d, e, weights * h)[0]
    lu = scipy.sparse.linalg.splu(M)
    return lu.solve


def _initial_log_h(rho0: npt.ArrayLike | None, v: FloatArray, grid: Grid1D) -> FloatArray:
    """``log(ρ₀/π)`` up to a constant, from a validated ρ₀ (uniform when None)."""
    if rho0 is None:
        return v.copy()
    r0 = np.asarray(rho0, dtype=np.float64)
    if r0.shape != (grid.m,) or not np.all(np.isfinite(r0)) or np.any(r0 < 0) or r0.sum() <= 0:
        raise InvalidParameter("rho0", f"expected {grid.m} finite non-negative densities")
    with np.errstate(divide="ignore"):
        return np.log(r0) + v


def _shift_to_zero_max(g: FloatArray) -> FloatArray:
    return g - np.max(g)


def _time_steps(t_from: float, t_to: float, dt: float) -> list[float]:
    """Steps of size dt from t_from to t_to, the last shortened to land exactly on t_to."""
    span = t_to - t_from
    if span <= 0.0:
        return []
    n = max(1, int(np.ceil(span / dt - 1e-9)))
    return [dt] * (n - 1) + [span - (n - 1) * dt]


def solve_shk_1d(
    V: PotentialLike,
    grid: Grid1D,
    t_eval: Sequence[float] | FloatArray,
    dt: float,
    kappa_T: float = 1.0,
    kappa_R: float = 1.0,
    boundary: Boundary = "reflecting",
    rho0: npt.ArrayLike | None = None,
) -> PDESolution:
    """Solve the SHK flow (certificates (3)) on a 1-D grid by the Strang scheme of §8.1.

    Each step of size τ (τ = dt except the last step before an output time): exact FR half-step
    (certificates (6)) over τ/2, implicit-Euler transport over τ, exact FR half-step over τ/2.
    With ``kappa_T = 0`` the result is (6), ``ρ_t ∝ ρ₀^{e^{−κ_R t}} π^{1−e^{−κ_R t}}``, to
    round-off; for any κ_T the discrete route C bound (8) ``osc g_t ≤ e^{−κ_R t} osc g₀`` holds
    exactly.

    Parameters
    ----------
    V : (m,) array of potential values at ``grid.centres`` or a callable mapping the (m,) centres
        to them (π ∝ e^{−V}).
    grid : Grid1D
    t_eval : (T,) non-decreasing times >= 0 at which to report the density.
    dt : float > 0
        Nominal step.
    kappa_T, kappa_R : float >= 0
        Transport and reaction weights.
    boundary : 'reflecting' (no-flux) or 'periodic'.
    rho0 : (m,) non-negative initial densities (normalised here), or None for the uniform law.

    Returns
    -------
    PDESolution with ``times (T,)`` and ``densities (T, m)``.
    """
    _check_boundary(boundary)
    times = np.asarray(t_eval, dtype=np.float64).reshape(-1)
    if times.size == 0 or not np.all(np.isfinite(times)) or times[0] < 0:
        raise InvalidParameter("t_eval", "need a non-empty sequence of finite times >= 0")
    if np.any(np.diff(times) < 0):
        raise InvalidParameter("t_eval", "times must be non-decreasing")
    if not (np.isfinite(dt) and dt > 0):
        raise InvalidParameter("dt", "must be finite and > 0")
    if not (np.isfinite(kappa_R) and kappa_R >= 0):
        raise InvalidParameter("kappa_R", "must be finite and >= 0")
    v = _potential_values(V, grid)
    A = transport_generator_1d(v, grid, kappa_T, boundary)
    solvers: dict[float, Callable[[FloatArray], FloatArray]] = {}

    def transport(g: FloatArray, tau: float) -> FloatArray:
        if kappa_T == 0.0:
            return g
        if tau not in solvers:
            solvers[tau] = _implicit_euler_solver(A, tau, boundary)
        h = solvers[tau](np.exp(g))
        with np.errstate(divide="ignore"):
            return _shift_to_zero_max(np.log(h))

    def reaction(g: FloatArray, tau: float) -> FloatArray:
        # exact FR over tau: log h <- e^{-κ_R τ} log h + const; e^{-x}·(-inf) stays -inf
        return _shift_to_zero_max(np.exp(-kappa_R * tau) * g)

    g = _shift_to_zero_max(_initial_log_h(rho0, v, grid))
    densities = np.empty((times.size, grid.m))
    t_now = 0.0
    for k, t_out in enumerate(times):
        for tau in _time_steps(t_now, float(t_out), dt):
            g = reaction(transport(reaction(g, 0.5 * tau), tau), 0.5 * tau)
        t_now = float(t_out)
        densities[k] = _normalised_density(g - v, grid.dx)
    return PDESolution(grid=grid, times=times, densities=densities, pi=stationary_density(v, grid))


# --------------------------------------------------------------------------- divergences (§8.1)
def _pair(rho: npt.ArrayLike, rho2: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    r1 = np.asarray(rho, dtype=np.float64)
    r2 = np.asarray(rho2, dtype=np.float64)
    if r1.shape != r2.shape or r1.ndim == 0:
        raise InvalidParameter("rho", "the two densities must have the same shape (..., m)")
    if np.any(r1 < 0) or np.any(r2 < 0):
        raise InvalidParameter("rho", "densities must be non-negative")
    return r1, r2


def _log_ratio(r1: FloatArray, r2: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(r1) - np.log(r2)


def log_ratio_sup_osc(
    rho: npt.ArrayLike, rho2: npt.ArrayLike
) -> tuple[FloatArray | float, FloatArray | float]:
    """``sup|w|`` and ``osc w = max w − min w`` of ``w = log(ρ/ρ′)`` (certificates (4), (5)).

    Parameters
    ----------
    rho, rho2 : (..., m) densities on the same grid (the last axis is space).

    Returns
    -------
    (sup_abs, osc) : each of shape (...) (a float for (m,) inputs); infinite where one density
        vanishes and the other does not.
    """
    w = _log_ratio(*_pair(rho, rho2))
    return np.max(np.abs(w), axis=-1), np.max(w, axis=-1) - np.min(w, axis=-1)


def kl(rho: npt.ArrayLike, rho2: npt.ArrayLike, dx: float) -> FloatArray | float:
    """``KL(ρ‖ρ′) = Σ ρ w dx`` with ``w = log(ρ/ρ′)`` and ``0·log 0 = 0`` (certificates §8.1).

    Parameters
    ----------
    rho, rho2 : (..., m) densities on the same grid.
    dx : cell width.

    Returns
    -------
    shape (...) (a float for (m,) inputs).
    """
    r1, r2 = _pair(rho, rho2)
    terms = np.where(r1 > 0, r1 * _log_ratio(r1, r2), 0.0)
    return np.sum(terms, axis=-1) * dx


def renyi(rho: npt.ArrayLike, rho2: npt.ArrayLike, dx: float, alpha: float) -> FloatArray | float:
    """Rényi divergence ``D_α = log(Σ ρ^α ρ′^{1−α} dx)/(α − 1)`` (certificates §8.1).

    Computed in the log domain with a log-sum-exp, so large α does not overflow.

    Parameters
    ----------
    rho, rho2 : (..., m) densities on the same grid.
    dx : cell width.
    alpha : order, ``alpha > 0`` and ``alpha != 1`` (use :func:`kl` for α = 1).

    Returns
    -------
    shape (...) (a float for (m,) inputs).
    """
    if not (np.isfinite(alpha) and alpha > 0 and alpha != 1):
        raise InvalidParameter("alpha", "must be finite, > 0 and != 1")
    r1, r2 = _pair(rho, rho2)
    with np.errstate(divide="ignore"):
        l1, l2 = np.log(r1), np.log(r2)
    # 0^α ρ′^{1−α} = 0 for α > 0: drop cells where ρ = 0 (avoids -inf + inf for α > 1)
    log_terms = np.where(r1 > 0, alpha * l1 + (1.0 - alpha) * l2, -np.inf)
    return (logsumexp(log_terms, axis=-1) + np.log(dx)) / (alpha - 1.0)


def hockey_stick(
    rho: npt.ArrayLike, rho2: npt.ArrayLike, dx: float, eps_prime: float
) -> FloatArray | float:
    """``δ(ε′) = max(Σ(ρ − e^{ε′}ρ′)₊ dx, Σ(ρ′ − e^{ε′}ρ)₊ dx)`` (certificates §8.1).

    Parameters
    ----------
    rho, rho2 : (..., m) densities on the same grid.
    dx : cell width.
    eps_prime : ε′ >= 0.

    Returns
    -------
    shape (...) (a float for (m,) inputs): the larger of the two orders.
    """
    if not (np.isfinite(eps_prime) and eps_prime >= 0):
        raise InvalidParameter("eps_prime", "must be finite and >= 0")
    r1, r2 = _pair(rho, rho2)
    factor = np.exp(eps_prime)
    forward = np.sum(np.maximum(r1 - factor * r2, 0.0), axis=-1) * dx
    backward = np.sum(np.maximum(r2 - factor * r1, 0.0), axis=-1) * dx
    return np.maximum(forward, backward)
