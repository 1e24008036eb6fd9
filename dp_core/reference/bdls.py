"""Plain NumPy reference of the finite-N birth–death Langevin sampler (BDLS) and its pieces.

Owns the independent oracles of the engine's SHK sampler (flows note §6, (F 30)) and of the
pairwise primitives it is built from (flows note §9, P1–P4):

* :func:`kernel_sum_reference` (P1), :func:`kernel_grad_sum_reference` (P2),
  :func:`logsumexp_reference` (P3), :func:`softmax_barycentre_reference` (P4),
  :func:`log_kde_reference` (P3 with zero potential, ε = h², log-weights −log M);
* :func:`birth_death_rates_reference` and :func:`birth_death_sweep_reference` (F 30 steps 2–3);
* :func:`mala_step_reference` (the π-invariant transport of certificates §3.2 / §7.2);
* :func:`bdls_reference`, the whole sampler.

One BDLS step of size dt, in this order (the engine uses the same order):

a. **Reaction** (F 30 steps 2–3). ``logkde_i = log((1/N) Σ_j exp(−|x_i − x_j|²/(2h²)))`` (self term
   included, normalising constants dropped), ``Λ_i = logkde_i + V(x_i)``, ``β_i = Λ_i − mean Λ``.
   Rates are frozen; particles are visited in a uniformly random order; copies are taken from a
   snapshot made before the sweep. ``β_i > 0``: with probability ``1 − e^{−β_i dt}`` particle i is
   killed and overwritten by snapshot particle j, uniform among j ≠ i. ``β_i < 0``: with probability
   ``1 − e^{β_i dt}`` particle i is duplicated onto a uniform j ≠ i. V and ∇V travel with positions.
b. **Transport**. One MALA move per particle: ``y = x − dt ∇V(x) + √(2dt) ξ``; a proposal outside
   the domain is rejected; otherwise it is accepted with probability
   ``min(1, exp(−(V(y) − V(x)) − (|x − y + dt∇V(y)|² − |y − x + dt∇V(x)|²)/(4dt)))``.

Note that flows note (F 30) lists the transport first; this reference (and the engine) runs the
reaction first. Both orders agree to first order in dt.

Every pairwise reduction streams over blocks of rows of ``x`` so that no block holds more than
``2**22`` pair-coordinate entries: memory is O((N + M)d + 2**22) whatever N and M are. Plain
NumPy/SciPy, for tests and benchmarks only; never imported by the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import logsumexp

from dp_core.errors import InvalidParameter, NumericalFailure
from dp_core.types import Domain, FloatArray

__all__ = [
    "KernelKind",
    "ValueAndGrad",
    "bdls_reference",
    "birth_death_rates_reference",
    "birth_death_sweep_reference",
    "inside_domain_reference",
    "kernel_grad_sum_reference",
    "kernel_sum_reference",
    "log_kde_reference",
    "logsumexp_reference",
    "mala_step_reference",
    "softmax_barycentre_reference",
]

KernelKind = Literal["gaussian", "imq", "laplace"]
ValueAndGrad = Callable[[FloatArray], tuple[npt.ArrayLike, npt.ArrayLike]]

_CHUNK_ENTRIES = 2**22
"""Largest number of ``(row, column, coordinate)`` entries one block of a pairwise pass holds."""


# --------------------------------------------------------------------------- shared pairwise pass
def _points(a: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise InvalidParameter(name, "expected an (n, d) array of points")
    return arr


def _column_vector(v: npt.ArrayLike, m: int, name: str) -> FloatArray:
    arr = np.asarray(v, dtype=np.float64)
    if arr.shape != (m,):
        raise InvalidParameter(name, f"expected shape ({m},)")
    return arr


def _pairwise_blocks(
    x: npt.ArrayLike, y: npt.ArrayLike
) -> Iterator[tuple[slice, FloatArray, FloatArray]]:
    """Yield ``(rows, diff, d2)`` over blocks of rows of x.

    ``diff[r, j] = x[rows][r] − y[j]`` has shape (c, M, d) with ``c·M·d <= 2**22`` (at least one
    row per block); ``d2 = |diff|²`` summed over coordinates, shape (c, M). Differences are
    formed explicitly (no ``|x|² + |y|² − 2x·y`` expansion, so no cancellation).
    """
    xs, ys = _points(x, "x"), _points(y, "y")
    if xs.shape[1] != ys.shape[1]:
        raise InvalidParameter("y", "x and y must have the same dimension d")
    n, d = xs.shape
    rows_per_block = max(1, _CHUNK_ENTRIES // max(1, ys.shape[0] * d))
    for start in range(0, n, rows_per_block):
        rows = slice(start, min(n, start + rows_per_block))
        diff = xs[rows, None, :] - ys[None, :, :]
        yield rows, diff, np.einsum("cmk,cmk->cm", diff, diff)


def _kernel_profile(kind: str, d2: FloatArray, sigma: float) -> tuple[FloatArray, FloatArray]:
    """Kernel values k and gradient factors f with ``∇_x k(x, y) = −(x − y)·f/σ²``.

    ``gaussian``: k = exp(−r²/(2σ²)), f = k. ``imq``: k = (1 + r²/σ²)^(−1/2), f = k³.
    ``laplace``: k = exp(−r/σ), f = σk/r (0 at r = 0). (flows note (F 2), §9.)
    """
    if not (np.isfinite(sigma) and sigma > 0):
        raise InvalidParameter("sigma", "must be finite and > 0")
    if kind == "gaussian":
        k = np.exp(-0.5 * d2 / sigma**2)
        return k, k
    if kind == "imq":
        k = 1.0 / np.sqrt(1.0 + d2 / sigma**2)
        return k, k**3
    if kind == "laplace":
        r = np.sqrt(d2)
        k = np.exp(-r / sigma)
        f = np.divide(sigma * k, r, out=np.zeros_like(r), where=r > 0)
        return k, f
    raise InvalidParameter("kind", "must be 'gaussian', 'imq' or 'laplace'")


def _cost_scores(
    d2: FloatArray, log_w: FloatArray, potential: FloatArray, eps: float
) -> FloatArray:
    """P3 scores ``s_ij = log_w_j + (potential_j − ½|x_i − y_j|²)/eps``, shape (c, M)."""
    return log_w[None, :] + (potential[None, :] - 0.5 * d2) / eps


def _check_eps(eps: float) -> None:
    if not (np.isfinite(eps) and eps > 0):
        raise InvalidParameter("eps", "must be finite and > 0")


# --------------------------------------------------------------------------- P1–P4 and the KDE
def kernel_sum_reference(
    x: npt.ArrayLike, y: npt.ArrayLike, w: npt.ArrayLike, kind: KernelKind, sigma: float
) -> FloatArray:
    """P1 (flows note §9): ``s_i = Σ_j w_j k(x_i, y_j)``.

    Parameters
    ----------
    x : (N, d) evaluation points.
    y : (M, d) source points.
    w : (M,) weights (signed allowed).
    kind : 'gaussian' ``exp(−r²/(2σ²))`` (F 2), 'imq' ``(1 + r²/σ²)^(−1/2)`` or
        'laplace' ``exp(−r/σ)``, with ``r = |x − y|``.
    sigma : bandwidth σ > 0.

    Returns
    -------
    (N,) float64.
    """
    ys = _points(y, "y")
    wv = _column_vector(w, ys.shape[0], "w")
    out = np.empty(_points(x, "x").shape[0])
    for rows, _, d2 in _pairwise_blocks(x, ys):
        out[rows] = _kernel_profile(kind, d2, sigma)[0] @ wv
    return out


def kernel_grad_sum_reference(
    x: npt.ArrayLike, y: npt.ArrayLike, w: npt.ArrayLike, kind: KernelKind, sigma: float
) -> FloatArray:
    """P2 (flows note §9): ``g_i = Σ_j w_j ∇_x k(x_i, y_j)``.

    ``∇_x k = −(x − y)·k/σ²`` (gaussian, (F 2)), ``−(x − y)·k³/σ²`` (imq),
    ``−(x − y)·k/(σ r)`` with 0 at r = 0 (laplace).

    Parameters
    ----------
    x : (N, d), y : (M, d), w : (M,) signed weights, kind and sigma as in
        :func:`kernel_sum_reference`.

    Returns
    -------
    (N, d) float64.
    """
    xs, ys = _points(x, "x"), _points(y, "y")
    wv = _column_vector(w, ys.shape[0], "w")
    out = np.empty(xs.shape)
    for rows, diff, d2 in _pairwise_blocks(xs, ys):
        factor = _kernel_profile(kind, d2, sigma)[1] * wv[None, :]
        out[rows] = -np.einsum("cm,cmk->ck", factor, diff) / sigma**2
    return out


def logsumexp_reference(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    log_w: npt.ArrayLike,
    potential: npt.ArrayLike,
    eps: float,
) -> FloatArray:
    """P3 (flows note §9): ``L_i = log Σ_j exp(log_w_j + (potential_j − ½|x_i − y_j|²)/eps)``.

    Parameters
    ----------
    x : (N, d), y : (M, d).
    log_w : (M,) log-weights; ``-inf`` entries are ignored.
    potential : (M,) dual potential (zeros for a KDE).
    eps : temperature > 0 (for a Gaussian KDE of bandwidth h, ``eps = h²``).

    Returns
    -------
    (N,) float64; ``-inf`` for a row whose weights are all zero.
    """
    _check_eps(eps)
    ys = _points(y, "y")
    lw = _column_vector(log_w, ys.shape[0], "log_w")
    pot = _column_vector(potential, ys.shape[0], "potential")
    out = np.empty(_points(x, "x").shape[0])
    for rows, _, d2 in _pairwise_blocks(x, ys):
        out[rows] = logsumexp(_cost_scores(d2, lw, pot, eps), axis=1)
    return out


def softmax_barycentre_reference(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    log_w: npt.ArrayLike,
    potential: npt.ArrayLike,
    eps: float,
) -> FloatArray:
    """P4 (flows note §9, (F 19)): ``T_i = Σ_j softmax_j(s_i·) y_j`` with the scores of
    :func:`logsumexp_reference`, ``s_ij = log_w_j + (potential_j − ½|x_i − y_j|²)/eps``.

    Parameters
    ----------
    x : (N, d), y : (M, d), log_w : (M,), potential : (M,), eps > 0.

    Returns
    -------
    (N, d) float64; NaN for a row whose weights are all zero (the soft-max is undefined).
    """
    _check_eps(eps)
    xs, ys = _points(x, "x"), _points(y, "y")
    lw = _column_vector(log_w, ys.shape[0], "log_w")
    pot = _column_vector(potential, ys.shape[0], "potential")
    out = np.empty(xs.shape)
    for rows, _, d2 in _pairwise_blocks(xs, ys):
        scores = _cost_scores(d2, lw, pot, eps)
        with np.errstate(invalid="ignore"):
            weights = np.exp(scores - logsumexp(scores, axis=1, keepdims=True))
        out[rows] = weights @ ys
    return out


def log_kde_reference(x: npt.ArrayLike, y: npt.ArrayLike, h: float) -> FloatArray:
    """Log of the Gaussian KDE without normalising constant (flows note (F 30) step 2):
    ``log((1/M) Σ_j exp(−|x_i − y_j|²/(2h²)))``.

    This is :func:`logsumexp_reference` with ``log_w = −log M``, zero potential and ``eps = h²``.

    Parameters
    ----------
    x : (N, d) evaluation points; y : (M, d) sample points (pass ``y = x`` for BDLS: the self term
        is then included); h : bandwidth > 0.

    Returns
    -------
    (N,) float64.
    """
    if not (np.isfinite(h) and h > 0):
        raise InvalidParameter("bandwidth", "must be finite and > 0")
    m = _points(y, "y").shape[0]
    return logsumexp_reference(x, y, np.full(m, -np.log(m)), np.zeros(m), h * h)


# --------------------------------------------------------------------------- birth–death
def birth_death_rates_reference(logkde: npt.ArrayLike, V: npt.ArrayLike) -> FloatArray:
    """Birth–death rates (flows note (F 30) step 2): ``β_i = Λ_i − mean(Λ)``.

    ``Λ_i = logkde_i + V_i``.

    ``β_i > 0``: particle i is over-represented (killed at rate β_i); ``β_i < 0``: it is
    duplicated at rate −β_i. Adding a constant to V or to logkde changes no rate (T-BD-2).

    Parameters
    ----------
    logkde : (N,) log-KDE at the particles; V : (N,) potential at the particles.

    Returns
    -------
    (N,) float64 with mean 0 up to round-off.
    """
    lk = np.asarray(logkde, dtype=np.float64)
    lam = lk + _column_vector(V, lk.shape[0], "V")
    return lam - np.mean(lam)


def birth_death_sweep_reference(
    beta: npt.ArrayLike,
    dt: float,
    order: npt.ArrayLike,
    u_event: npt.ArrayLike,
    u_partner: npt.ArrayLike,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """One jump sweep with frozen rates (flows note (F 30) step 3), given its random numbers.

    For ``i`` in ``order``: the event of i fires iff ``u_event[i] < 1 − e^{−|β_i| dt}``; its partner
    is ``j = ⌊u_partner[i]·(N − 1)⌋``, incremented by one if ``j >= i`` (uniform over j ≠ i).
    A kill (``β_i > 0``) sets ``src[i] = j``; a duplication (``β_i < 0``) sets ``src[j] = i``.
    Copies come from the snapshot before the sweep, so new positions are ``x_old[src]``; later
    events overwrite earlier ones in visiting order.

    Parameters
    ----------
    beta : (N,) rates from :func:`birth_death_rates_reference`.
    dt : step > 0.
    order : (N,) permutation of ``range(N)`` (the visiting order).
    u_event, u_partner : (N,) uniforms in [0, 1), indexed by particle.

    Returns
    -------
    src : (N,) intp
        Snapshot index each particle is copied from (``src[i] == i`` if untouched).
    fired : (N,) bool
        Whether the event of particle i fired (kill for β_i > 0, duplication for β_i < 0).
    """
    b = np.asarray(beta, dtype=np.float64)
    n = b.shape[0]
    perm = np.asarray(order, dtype=np.intp)
    if perm.shape != (n,) or not np.array_equal(np.sort(perm), np.arange(n)):
        raise InvalidParameter("order", "must be a permutation of range(N)")
    ue = _column_vector(u_event, n, "u_event")
    up = _column_vector(u_partner, n, "u_partner")
    fire_prob = -np.expm1(-np.abs(b) * dt)
    fired = (ue < fire_prob) & (b != 0.0) & (n > 1)
    partner = np.minimum(np.floor(up * (n - 1)).astype(np.intp), max(n - 2, 0))
    partner += partner >= np.arange(n)
    src = np.arange(n)
    for i in perm:
        if not fired[i]:
            continue
        if b[i] > 0:
            src[i] = partner[i]
        else:
            src[partner[i]] = i
    return src, fired


# --------------------------------------------------------------------------- MALA transport
def inside_domain_reference(domain: Domain, points: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Membership in the closed domain: box ``lower <= θ <= upper`` coordinate-wise, ball
    ``|θ − center| <= radius``.

    Parameters
    ----------
    domain : Domain; points : (N, d).

    Returns
    -------
    (N,) bool.
    """
    p = _points(points, "points")
    if p.shape[1] != domain.dim:
        raise InvalidParameter("points", f"expected dimension {domain.dim}")
    if domain.kind == "box":
        return np.all((p >= np.asarray(domain.lower)) & (p <= np.asarray(domain.upper)), axis=1)
    offset = p - np.asarray(domain.center)
    return np.einsum("nk,nk->n", offset, offset) <= domain.radius**2


def _evaluate(value_and_grad: ValueAndGrad, points: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Call ``value_and_grad`` and validate ``V (n,)`` and ``∇V (n, d)`` as finite float64."""
    v_raw, g_raw = value_and_grad(points)
    v = np.asarray(v_raw, dtype=np.float64).reshape(-1)
    g = np.asarray(g_raw, dtype=np.float64).reshape(points.shape)
    if v.shape != (points.shape[0],):
        raise InvalidParameter("value_and_grad", "V must have shape (N,)")
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(g))):
        raise NumericalFailure("value_and_grad returned a non-finite value or gradient")
    return v, g


def mala_step_reference(
    value_and_grad: ValueAndGrad,
    domain: Domain,
    x: npt.ArrayLike,
    v: npt.ArrayLike,
    g: npt.ArrayLike,
    dt: float,
    xi: npt.ArrayLike,
    u: npt.ArrayLike,
) -> tuple[FloatArray, FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """One MALA move per particle for π ∝ e^{−V} on the domain, given its random numbers.

    Proposal ``y = x − dt ∇V(x) + √(2dt) ξ``. Proposals outside the domain are rejected without
    evaluating V there. Otherwise accept iff ``log u < −(V(y) − V(x)) − (|x − y + dt∇V(y)|² −
    |y − x + dt∇V(x)|²)/(4dt)`` (MH ratio; the move is π-invariant, certificates §3.2).

    Parameters
    ----------
    value_and_grad : maps points (n, d) to (V (n,), ∇V (n, d)).
    domain : Domain (box or ball).
    x : (N, d) current positions; v : (N,) V(x); g : (N, d) ∇V(x).
    dt : step > 0.
    xi : (N, d) standard normal draws; u : (N,) uniforms in [0, 1).

    Returns
    -------
    (x_new (N, d), v_new (N,), g_new (N, d), accepted (N,) bool).
    """
    if not (np.isfinite(dt) and dt > 0):
        raise InvalidParameter("dt", "must be finite and > 0")
    xs = _points(x, "x")
    vs = _column_vector(v, xs.shape[0], "v")
    gs = np.asarray(g, dtype=np.float64).reshape(xs.shape)
    noise = np.asarray(xi, dtype=np.float64).reshape(xs.shape)
    uu = _column_vector(u, xs.shape[0], "u")
    y = xs - dt * gs + np.sqrt(2.0 * dt) * noise
    accepted = inside_domain_reference(domain, y)
    x_new, v_new, g_new = xs.copy(), vs.copy(), gs.copy()
    idx = np.flatnonzero(accepted)
    if idx.size:
        vy, gy = _evaluate(value_and_grad, np.ascontiguousarray(y[idx]))
        back = xs[idx] - y[idx] + dt * gy
        fwd = y[idx] - xs[idx] + dt * gs[idx]
        log_alpha = -(vy - vs[idx]) - (
            np.einsum("nk,nk->n", back, back) - np.einsum("nk,nk->n", fwd, fwd)
        ) / (4.0 * dt)
        with np.errstate(divide="ignore"):
            ok = np.log(uu[idx]) < log_alpha
        keep = idx[ok]
        x_new[keep], v_new[keep], g_new[keep] = y[keep], vy[ok], gy[ok]
        accepted[idx[~ok]] = False
    return x_new, v_new, g_new, accepted


# --------------------------------------------------------------------------- the sampler
def bdls_reference(
    value_and_grad: ValueAndGrad,
    domain: Domain,
    x0: npt.ArrayLike,
    dt: float,
    n_steps: int,
    bandwidth: float,
    rng: np.random.Generator,
    transport: bool = True,
    reaction: bool = True,
) -> FloatArray:
    """Run the birth–death Langevin sampler (flows note (F 30), MALA transport) for n_steps.

    Each step: (a) reaction — rates from :func:`log_kde_reference` of the particles on themselves
    and :func:`birth_death_rates_reference`, then :func:`birth_death_sweep_reference` with
    ``order = rng.permutation(N)``, ``u_event = rng.random(N)``, ``u_partner = rng.random(N)``
    (drawn in that order); (b) transport — :func:`mala_step_reference` with
    ``xi = rng.standard_normal((N, d))``, ``u = rng.random(N)``. V and ∇V are evaluated once at
    the start and then travel with the positions (copied by the sweep, updated on acceptance).
    With N = 1 there is no reaction.

    Parameters
    ----------
    value_and_grad : maps points (n, d) to (V (n,), ∇V (n, d)); π ∝ e^{−V}.
    domain : Domain; every row of x0 must lie in it.
    x0 : (N, d) initial particles.
    dt : step > 0; n_steps : number of steps >= 0; bandwidth : KDE bandwidth h > 0.
    rng : the only source of randomness.
    transport, reaction : switch the two parts off for tests.

    Returns
    -------
    (N, d) float64 final particles.
    """
    x = _points(x0, "x0").copy()
    if x.shape[0] == 0 or x.shape[1] != domain.dim or not np.all(np.isfinite(x)):
        raise InvalidParameter("x0", f"expected a non-empty finite (N, {domain.dim}) array")
    if not np.all(inside_domain_reference(domain, x)):
        raise InvalidParameter("x0", "every initial particle must lie in the domain")
    if not (np.isfinite(dt) and dt > 0):
        raise InvalidParameter("dt", "must be finite and > 0")
    if int(n_steps) != n_steps or n_steps < 0:
        raise InvalidParameter("n_steps", "must be an integer >= 0")
    if not (np.isfinite(bandwidth) and bandwidth > 0):
        raise InvalidParameter("bandwidth", "must be finite and > 0")
    n, d = x.shape
    v, g = _evaluate(value_and_grad, x)
    for _ in range(int(n_steps)):
        if reaction and n > 1:
            beta = birth_death_rates_reference(log_kde_reference(x, x, bandwidth), v)
            order = rng.permutation(n)
            u_event = rng.random(n)
            u_partner = rng.random(n)
            src, _ = birth_death_sweep_reference(beta, dt, order, u_event, u_partner)
            x, v, g = x[src], v[src], g[src]
        if transport:
            xi = rng.standard_normal((n, d))
            u = rng.random(n)
            x, v, g, _ = mala_step_reference(value_and_grad, domain, x, v, g, dt, xi, u)
    return x
