"""Per-particle random streams and the seeding policy.

Numba's built-in generator keeps one state per thread, so what a particle draws would depend on
thread scheduling. Instead every particle owns a SplitMix64 state (one ``uint64``) that kernels
advance themselves (Steele, Lea & Flood 2014: passes BigCrush; period 2^64 per stream). Stream i
starts at a 64-bit hash of ``(seed, i)``, so streams are unrelated and a run is bit-for-bit
reproducible from its seed whatever the number of threads.

Seeding policy (ARCHITECTURE "Randomness"): a private run takes a fresh seed from ``secrets`` and
the seed is never returned or logged; a client-chosen seed on a private run is refused. A public
run may pass an explicit seed to be reproducible.
"""

from __future__ import annotations

import math
import secrets

import numpy as np
from numba import njit, prange

from dp_core.errors import InvalidParameter

__all__ = [
    "fill_normals",
    "fill_uniforms",
    "new_streams",
    "next_normal",
    "next_u64",
    "next_uniform",
    "resolve_seed",
]

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TWO_M53 = 1.0 / 9007199254740992.0
_TWO_PI = 2.0 * math.pi


@njit(cache=True, nogil=True, inline="always")
def _mix(z):
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True, nogil=True, inline="always")
def next_u64(state, i):
    """Advance stream ``i`` of ``state`` (uint64 array) and return 64 random bits."""
    state[i] += _GAMMA
    return _mix(state[i])


@njit(cache=True, nogil=True, inline="always")
def next_uniform(state, i):
    """A uniform double in [0, 1) with 53 random bits from stream ``i``."""
    return float(next_u64(state, i) >> _S11) * _TWO_M53


@njit(cache=True, nogil=True, inline="always")
def next_normal(state, i):
    """A standard normal from stream ``i`` (Box–Muller, cosine branch; two uniforms per draw)."""
    u1 = 1.0 - next_uniform(state, i)  # in (0, 1], so the log is finite
    u2 = next_uniform(state, i)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)


@njit(parallel=True, cache=True, nogil=True)
def fill_normals(state, out):
    """Row i of ``out`` (N, k) gets the next k standard normals of stream i (e.g. the noise
    of (F 7) or a MALA proposal); the streams advance in place."""
    for i in prange(out.shape[0]):
        for k in range(out.shape[1]):
            out[i, k] = next_normal(state, i)


@njit(parallel=True, cache=True, nogil=True)
def fill_uniforms(state, out):
    """Row i of ``out`` (N, k) gets the next k uniforms on [0, 1) of stream i."""
    for i in prange(out.shape[0]):
        for k in range(out.shape[1]):
            out[i, k] = next_uniform(state, i)


@njit(cache=True, nogil=True)
def _init_streams(seed, out):
    base = _mix(seed ^ _GAMMA)
    for i in range(out.shape[0]):
        out[i] = _mix(base + np.uint64(i) * _GAMMA)


def new_streams(seed: int, n: int) -> np.ndarray:
    """``n`` independent SplitMix64 states derived from a 64-bit ``seed``; shape (n,) uint64."""
    out = np.empty(n, dtype=np.uint64)
    _init_streams(np.uint64(seed % 2**64), out)
    return out


def resolve_seed(seed: int | None, *, private: bool) -> int:
    """Apply the seeding policy: fresh ``secrets`` seed for private runs (an explicit seed there
    is refused), the caller's seed or a fresh one for public runs."""
    if private:
        if seed is not None:
            raise InvalidParameter("seed", "a seed is refused on private runs")
        return secrets.randbits(64)
    if seed is None:
        return secrets.randbits(64)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64:
        raise InvalidParameter("seed", "must be an integer in [0, 2**64)")
    return seed
