"""Birth–death (reaction) step of the BDLS particle system (flows note (F 30), steps 2–3).

Rates ``Λ_i = log KDE(x_i) + V(x_i)`` and ``β_i = Λ_i - mean(Λ)``. The jump sweep visits the
particles in a uniformly random order with rates frozen and copies taken from a snapshot made
before the sweep: a particle with ``β_i > 0`` is killed with probability ``1 - e^{-β_i Δt}`` and
replaced by a copy of a uniformly chosen other particle; one with ``β_i < 0`` is duplicated with
probability ``1 - e^{β_i Δt}``, its copy overwriting a uniformly chosen other particle. N is
conserved and every new position is an old one (T-BD-1). The sweep is sequential (each event
writes another particle) and O(N d); it draws from a single stream ``rng[0]``.

V and ∇V travel with the positions, so the transport step never re-evaluates them.
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_num_threads, njit

from dp_core.engine import kde
from dp_core.engine.rng import next_uniform

__all__ = ["birth_death_rates", "birth_death_sweep", "reaction"]


@njit(cache=True, nogil=True)
def birth_death_rates(log_kde, v, beta):
    """β = Λ - mean(Λ) with Λ = log_kde + v (all (N,)); the mean is summed in index order."""
    n = log_kde.shape[0]
    total = 0.0
    for i in range(n):
        beta[i] = log_kde[i] + v[i]
        total += beta[i]
    mean = total / n
    for i in range(n):
        beta[i] -= mean


@njit(cache=True, nogil=True, inline="always")
def _other(rng, n, i):
    """Uniform index in {0..n-1} \\ {i} (n >= 2)."""
    j = int(next_uniform(rng, 0) * (n - 1))
    return j + 1 if j >= i else j


@njit(cache=True, nogil=True)
def birth_death_sweep(x, v, grad, beta, dt, rng, order):
    """One jump sweep (in place on x (N, d), v (N,), grad (N, d)); returns the event count.

    ``order`` is an (N,) int64 work array that receives the random visiting order. The count is a
    diagnostic for public runs only (it depends on the data through the rates).
    """
    n = x.shape[0]
    if n < 2:
        return 0
    for i in range(n):
        order[i] = i
    for i in range(n - 1, 0, -1):  # Fisher–Yates
        j = int(next_uniform(rng, 0) * (i + 1))
        order[i], order[j] = order[j], order[i]
    snap_x = x.copy()
    snap_v = v.copy()
    snap_g = grad.copy()
    events = 0
    for pos in range(n):
        i = order[pos]
        b = beta[i]
        u = next_uniform(rng, 0)
        if b > 0.0 and u < 1.0 - math.exp(-b * dt):
            j = _other(rng, n, i)
            x[i] = snap_x[j]
            v[i] = snap_v[j]
            grad[i] = snap_g[j]
            events += 1
        elif b < 0.0 and u < 1.0 - math.exp(b * dt):
            j = _other(rng, n, i)
            x[j] = snap_x[i]
            v[j] = snap_v[i]
            grad[j] = snap_g[i]
            events += 1
    return events


@njit(cache=True, nogil=True)
def _reaction_1d(x, v, grad, s, n_split, dt, rng, log_kde, beta, order):
    kde._log_kde_1d_kernel(x, s, n_split, log_kde)
    birth_death_rates(log_kde, v, beta)
    return birth_death_sweep(x, v, grad, beta, dt, rng, order)


def reaction(
    x: np.ndarray,
    v: np.ndarray,
    grad: np.ndarray,
    bandwidth: float,
    dt: float,
    rng: np.ndarray,
    log_kde: np.ndarray,
    beta: np.ndarray,
    order: np.ndarray,
    threads: int | None = None,
) -> int:
    """The whole reaction step in place: ``log_kde`` (N,) receives
    :func:`dp_core.engine.kde.log_kde_self`, ``beta`` (N,) the rates, then one jump sweep;
    returns the event count. In d = 1 it is a single compiled call. ``threads`` (default: ask
    Numba, a few microseconds) is how many parts the KDE's largest cells are cut into; it
    changes the speed only, never a bit of the result."""
    if x.shape[1] == 1 and x.shape[0] > 0:
        s = 1.0 / (math.sqrt(2.0) * bandwidth)
        parts = get_num_threads() if threads is None else max(1, threads)
        return _reaction_1d(x, v, grad, s, parts, dt, rng, log_kde, beta, order)
    log_kde[:] = kde.log_kde_self(x, bandwidth)
    birth_death_rates(log_kde, v, beta)
    return birth_death_sweep(x, v, grad, beta, dt, rng, order)
