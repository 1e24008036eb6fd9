"""Metropolis-adjusted Langevin (MALA) moves with rejection outside the domain.

One MALA move per particle targets π ∝ exp(-V) restricted to the public domain Θ:
proposal ``y = x - h ∇V(x) + sqrt(2h) ξ``; a proposal outside Θ is rejected (π(y) = 0 there),
otherwise it is accepted with probability

    min(1, exp(-(V(y) - V(x)) - (|x - y + h∇V(y)|² - |y - x + h∇V(x)|²) / (4h))).

This is a Metropolis–Hastings kernel for π·1_Θ, hence π-reversible and π-invariant: the transport
kernel K of the splitting in certificates note §3.2 ("Discrete-time form"). The step h is given
per particle (``steps``, (N,)): a constant array gives the plain MALA move, and
:func:`log_uniform_steps` draws each particle's h from a public log-uniform law before the move —
a mixture of π-reversible kernels with state-independent weights, so still π-reversible (the
multiscale move of the SHK sampler's relaxation phase). The move is split in two so that
the potential can be any batch function (compiled utilities, test targets): ``mala_propose``
draws the proposals, the caller evaluates V and ∇V there, and ``mala_accept`` decides. Each
particle draws from its own stream (``rng``), so results do not depend on threads.

Domains are encoded as ``(kind, a, b)``: kind 0 box ``a <= y <= b``; kind 1 ball
``|y - a| <= b[0]`` (see ``Domain.engine_arrays``).
"""

from __future__ import annotations

import math

from numba import njit, prange

from dp_core.engine.rng import next_normal, next_uniform

__all__ = [
    "BALL",
    "BOX",
    "log_uniform_steps",
    "mala_accept",
    "mala_propose",
    "uniform_in_domain",
]

BOX = 0
BALL = 1


@njit(cache=True, nogil=True, inline="always")
def _inside(y, i, kind, a, b):
    d = y.shape[1]
    if kind == BOX:
        for k in range(d):
            if y[i, k] < a[k] or y[i, k] > b[k]:
                return False
        return True
    r2 = 0.0
    for k in range(d):
        r2 += (y[i, k] - a[k]) ** 2
    return r2 <= b[0] * b[0]


@njit(parallel=True, cache=True, nogil=True)
def log_uniform_steps(rng, low, high, out):
    """``out[i] = low·(high/low)^U_i`` with U_i uniform from stream i: one draw per particle."""
    log_ratio = math.log(high / low)
    for i in prange(out.shape[0]):
        out[i] = low * math.exp(log_ratio * next_uniform(rng, i))


@njit(parallel=True, cache=True, nogil=True)
def mala_propose(x, grad, steps, rng, kind, a, b, proposal, inside):
    """Write proposals into ``proposal`` (N, d) with particle i's step ``steps[i]``; ``inside[i]``
    is 0 where the proposal left Θ, and there ``proposal[i] = x[i]`` so the potential is only
    ever evaluated inside Θ."""
    n, d = x.shape
    for i in prange(n):
        step = steps[i]
        noise = math.sqrt(2.0 * step)
        for k in range(d):
            proposal[i, k] = x[i, k] - step * grad[i, k] + noise * next_normal(rng, i)
        if _inside(proposal, i, kind, a, b):
            inside[i] = 1
        else:
            inside[i] = 0
            for k in range(d):
                proposal[i, k] = x[i, k]


@njit(parallel=True, cache=True, nogil=True)
def mala_accept(x, v, grad, proposal, v_prop, grad_prop, inside, steps, rng, accepted):
    """Metropolis decision; accepted particles take the proposal and its V, ∇V (in place).

    ``steps`` are the proposals' steps. Every particle draws one uniform whether or not its
    proposal was inside, so streams stay aligned across runs. ``accepted[i]`` is set to 1 or 0;
    returns the number of accepted proposals.
    """
    n, d = x.shape
    count = 0
    for i in prange(n):
        u = 1.0 - next_uniform(rng, i)
        accepted[i] = 0
        if inside[i] == 0:
            continue
        step = steps[i]
        inv4h = 1.0 / (4.0 * step)
        fwd = 0.0  # |y - x + h∇V(x)|²: -log q(y | x) up to constants
        bwd = 0.0  # |x - y + h∇V(y)|²
        for k in range(d):
            dk = proposal[i, k] - x[i, k]
            fwd += (dk + step * grad[i, k]) ** 2
            bwd += (-dk + step * grad_prop[i, k]) ** 2
        log_alpha = -(v_prop[i] - v[i]) - (bwd - fwd) * inv4h
        if math.log(u) <= log_alpha:
            accepted[i] = 1
            count += 1
            for k in range(d):
                x[i, k] = proposal[i, k]
                grad[i, k] = grad_prop[i, k]
            v[i] = v_prop[i]
    return count


@njit(parallel=True, cache=True, nogil=True)
def uniform_in_domain(rng, kind, a, b, out):
    """Fill ``out`` (N, d) with independent uniform draws on the domain (the public ρ₀)."""
    n, d = out.shape
    for i in prange(n):
        if kind == BOX:
            for k in range(d):
                out[i, k] = a[k] + (b[k] - a[k]) * next_uniform(rng, i)
        else:
            r2 = 0.0
            for k in range(d):
                out[i, k] = next_normal(rng, i)
                r2 += out[i, k] ** 2
            scale = b[0] * (1.0 - next_uniform(rng, i)) ** (1.0 / d) / math.sqrt(r2)
            for k in range(d):
                out[i, k] = a[k] + scale * out[i, k]
