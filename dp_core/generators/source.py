"""Source measures μ and the fixed fit sample (aeot.md (A 1), §2.3).

``uniform`` is uniform on ``[−√3, √3]^d`` and ``gaussian`` is ``N(0, I_d)``: both have unit
per-coordinate variance. The fit sample is a scrambled Sobol sequence (``scipy.stats.qmc``,
seeded) mapped to the source — AE-OT resets its Sobol engine every iteration, so the energy
minimized is that of a fixed QMC sample (aeot.md §2.3). Generation draws fresh i.i.d. source
points from ``numpy.random.default_rng(seed)`` (A 20).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.special import ndtri

from dp_core.types import FloatArray

__all__ = ["SQRT3", "draw_source", "fit_sample", "from_unit_cube"]

SQRT3 = math.sqrt(3.0)


def from_unit_cube(u: FloatArray, source: str) -> FloatArray:
    """Map points of ``(0, 1)^d`` to the source (uniform: affine; gaussian: inverse normal CDF)."""
    if source == "uniform":
        return np.ascontiguousarray((2.0 * u - 1.0) * SQRT3)
    tiny = np.finfo(np.float64).tiny
    return np.ascontiguousarray(ndtri(np.clip(u, tiny, 1.0 - np.finfo(np.float64).epsneg)))


def fit_sample(source: str, dim: int, size: int, seed: int) -> FloatArray:
    """``size`` scrambled Sobol points (seed ``seed``) of the source in dimension ``dim``."""
    from scipy.stats import qmc  # 3 s to import: kept off the service's start-up path

    engine = qmc.Sobol(dim, scramble=True, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # balance warning for non powers of 2
        u = engine.random(size)
    return from_unit_cube(u, source)


def draw_source(rng: np.random.Generator, source: str, n: int, dim: int) -> FloatArray:
    """``n`` i.i.d. source points from ``rng`` (consumes n·dim draws in row order)."""
    if source == "uniform":
        return rng.uniform(-SQRT3, SQRT3, size=(n, dim))
    return rng.standard_normal(size=(n, dim))
