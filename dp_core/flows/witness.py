"""The witness function φ = m_ν − m_π of the MMD-type flows and the kernels it is built on.

Shared by the MMD flow (flows note §2) and the DrMMD flow (§3), which is the MMD flow with target
weights b + α. Owns

* :class:`FlowKernel` — the protocol a kernel implements for these flows: the witness
  ``φ = Σ_j a_j k(·, z_j) − Σ_m b_m k(·, y_m)`` (F 6) and its gradient at evaluation points (P1,
  P2), the V-statistic ``MMD² = ‖φ‖²_H`` (F 3), the dense target Gram (P6) and ``for_step`` (a
  minibatch kernel may change with the step);
* :class:`PointKernel` — the engine's Gaussian (F 2), IMQ and Laplace kernels with a bandwidth:
  the witness gradient is one fused engine kernel-gradient sum over the stacked points
  ``[z; y]`` with signed weights ``[a; −b]`` (no N×N or N×M matrix); at the particles themselves
  and for N ≥ ``SELF_SUM_MIN`` the self term is the antisymmetric self-gradient sum (each pair
  once, §2.3); ``MMD² = wᵀK_SS w`` by the symmetric engine kernel sum;
* :class:`NoiseSchedule` — the noise level β_t of (F 8);
* :func:`probability_weights` and :func:`resolve_target` — input checks shared by the flows.

The student–teacher feature kernel (``dp_core.flows.student_teacher``) is the other FlowKernel.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from dp_core.engine import gram, kernels
from dp_core.errors import InvalidParameter
from dp_core.types import FloatArray, as_particles

__all__ = [
    "SELF_SUM_MIN",
    "FlowKernel",
    "NoiseSchedule",
    "PointKernel",
    "probability_weights",
    "resolve_target",
]

SELF_SUM_MIN = 4 * kernels.TILE
"""From this many particles on, the witness gradient at the particles uses the antisymmetric self
sum plus one cross sum (1.6x faster than one stacked cross sum at N = M = 4000, d = 2:
docs/benchmarks.md); below it, one stacked cross sum (the KDE's threshold, ``engine.kde``)."""


class FlowKernel(Protocol):
    """What the MMD and DrMMD flows need from a kernel k on the particles' space.

    ``at`` (L, d) are evaluation points, ``z`` (N, d) with weights ``a`` the particles, ``y``
    (M, d) with signed weights ``b`` the (weighted) target; ``φ = Σ_j a_j k(·, z_j) − Σ_m b_m
    k(·, y_m)`` is the witness.
    """

    def witness(
        self, at: FloatArray, z: FloatArray, a: FloatArray, y: FloatArray, b: FloatArray
    ) -> FloatArray:
        """φ at every evaluation point, (L,)."""
        ...

    def witness_gradient(
        self,
        at: FloatArray,
        z: FloatArray,
        a: FloatArray,
        y: FloatArray,
        b: FloatArray,
        at_particles: bool,
    ) -> FloatArray:
        """∇φ at every evaluation point, (L, d); ``at_particles`` says ``at is z``."""
        ...

    def mmd2(self, z: FloatArray, a: FloatArray, y: FloatArray, b: FloatArray) -> float:
        """‖φ‖²_H = aᵀK_ZZ a − 2aᵀK_ZY b + bᵀK_YY b (F 3)."""
        ...

    def gram(self, y: FloatArray) -> FloatArray:
        """The dense (M, M) matrix K_YY (DrMMD's solve, (F 11))."""
        ...

    def for_step(self, step: int) -> FlowKernel:
        """The kernel to use at step ``step`` (itself, unless the kernel is a minibatch one)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Public, JSON-ready description."""
        ...


@dataclass(frozen=True)
class PointKernel:
    """An engine kernel on R^d: ``gaussian`` exp(−r²/(2σ²)) (F 2), ``imq`` (1 + r²/σ²)^(−1/2),
    ``laplace`` exp(−r/σ), with r = |x − y| and bandwidth σ."""

    kind: str
    bandwidth: float
    code: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in kernels.KERNELS:
            raise InvalidParameter("kernel", f"must be one of {sorted(kernels.KERNELS)}")
        if not (math.isfinite(self.bandwidth) and self.bandwidth > 0):
            raise InvalidParameter("bandwidth", "must be finite and positive")
        if self.bandwidth * self.bandwidth < sys.float_info.min:  # kernels divide by σ²
            raise InvalidParameter(
                "bandwidth", f"must be at least {math.sqrt(sys.float_info.min):.3g}"
            )
        object.__setattr__(self, "code", kernels.KERNELS[self.kind])

    def witness(
        self, at: FloatArray, z: FloatArray, a: FloatArray, y: FloatArray, b: FloatArray
    ) -> FloatArray:
        return kernels.kernel_sum(at, *_stack(z, a, y, b), self.code, self.bandwidth)

    def witness_gradient(
        self,
        at: FloatArray,
        z: FloatArray,
        a: FloatArray,
        y: FloatArray,
        b: FloatArray,
        at_particles: bool,
    ) -> FloatArray:
        if at_particles and z.shape[0] >= SELF_SUM_MIN:
            g = kernels.kernel_grad_sum_self(z, a, self.code, self.bandwidth)
            g -= kernels.kernel_grad_sum(z, y, b, self.code, self.bandwidth)
            return g
        return kernels.kernel_grad_sum(at, *_stack(z, a, y, b), self.code, self.bandwidth)

    def mmd2(self, z: FloatArray, a: FloatArray, y: FloatArray, b: FloatArray) -> float:
        s, w = _stack(z, a, y, b)
        return float(w @ kernels.kernel_sum_self(s, w, self.code, self.bandwidth))

    def gram(self, y: FloatArray) -> FloatArray:
        return gram.kernel_matrix(y, y, self.code, self.bandwidth)

    def for_step(self, step: int) -> PointKernel:
        return self

    def describe(self) -> dict[str, Any]:
        return {"kernel": self.kind, "bandwidth": self.bandwidth}


def _stack(z: FloatArray, a: FloatArray, y: FloatArray, b: FloatArray) -> tuple[FloatArray, ...]:
    """Points [z; y] (N + M, d) and signed weights [a; −b]."""
    return np.concatenate([z, y]), np.concatenate([a, -b])


@dataclass(frozen=True)
class NoiseSchedule:
    """Noise level of (F 8): ``β_t = level · decay^{⌊t / interval⌋}`` at step t (0-based).

    ``level = 0`` (the default) is the plain MMD flow. ``level`` is a standard deviation in the
    units of the particles (compare it with the kernel bandwidth).
    """

    level: float = 0.0
    decay: float = 0.5
    interval: int = 1000

    def __post_init__(self) -> None:
        if not (math.isfinite(self.level) and self.level >= 0):
            raise InvalidParameter("noise_level", "must be finite and >= 0")
        if not (math.isfinite(self.decay) and 0 <= self.decay <= 1):
            raise InvalidParameter("noise_decay", "must be in [0, 1]")
        if not (isinstance(self.interval, int) and self.interval >= 1):
            raise InvalidParameter("noise_interval", "must be an integer >= 1")

    @classmethod
    def authors(cls, steps_per_epoch: int = 10) -> NoiseSchedule:
        """Arbel et al.'s code (F 8): level 1.0, halved every 1000 epochs; an epoch is
        ``steps_per_epoch`` steps (1000 inputs in batches of 100: 10)."""
        return cls(level=1.0, decay=0.5, interval=1000 * steps_per_epoch)

    def at(self, step: int) -> float:
        if self.level == 0.0:
            return 0.0
        return self.level * self.decay ** (step // self.interval)

    def describe(self) -> dict[str, Any]:
        return {"level": self.level, "decay": self.decay, "interval": self.interval}


def probability_weights(w: npt.ArrayLike | None, n: int, name: str) -> FloatArray:
    """Uniform weights when ``w`` is None; else ``w`` checked (finite, >= 0, positive sum,
    shape (n,)) and normalised to sum 1."""
    if w is None:
        return np.full(n, 1.0 / n)
    arr = np.asarray(w, dtype=np.float64)
    if arr.shape != (n,):
        raise InvalidParameter(name, f"expected shape ({n},)")
    if not (np.all(np.isfinite(arr)) and np.all(arr >= 0) and arr.sum() > 0):
        raise InvalidParameter(name, "weights must be finite, >= 0 and not all 0")
    return np.ascontiguousarray(arr / arr.sum())


def resolve_target(
    kernel: str | FlowKernel,
    bandwidth: float | None,
    targets: npt.ArrayLike,
    target_weights: npt.ArrayLike | None,
) -> tuple[FlowKernel, FloatArray, FloatArray]:
    """Resolve a kernel name (+ bandwidth) or object, and check the target."""
    if isinstance(kernel, str):
        if bandwidth is None:
            raise InvalidParameter("bandwidth", "required with a named kernel")
        flow_kernel: FlowKernel = PointKernel(kernel, float(bandwidth))
    else:
        flow_kernel = kernel
    y = as_particles(targets, "targets")
    return flow_kernel, y, probability_weights(target_weights, y.shape[0], "target_weights")
