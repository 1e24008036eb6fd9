"""The mean-field two-layer student–teacher task (flows note §2.4, §5.6).

Arbel et al.'s experiment, in the exchangeable particle form the note decides on (§8): a particle
is one unit ``Z = [W₁ | w₂] ∈ R^{H×(D+1)}`` with ``ψ(x; Z) = g(w₂·relu(W₁x))``, g the quadexp
``exp(−s²/σ_out²)`` (σ_out = 2) or the identity (``engine.two_layer``), and the student is the
particle mean ``f_ν(x) = N⁻¹ Σ_i ψ(x; Z_i)``. The teacher is ``K`` units with N(0, teacher_std²)
weights (K = 1 in the paper: the target is δ_{z*}), the inputs are uniform on the sphere
S^{D−1}, and the student's particles start i.i.d. N(init_mean, init_std²) in every coordinate
(0.001 and 1 in the code). The authors' student has a dense second layer (every output reads all
H·N hidden units, §2.4 caveat); this task is the block-diagonal, exchangeable version, so its
numbers are not the code's.

Everything the task draws is public and fixed by its fields: the teacher and the inputs by
``data_seed`` (NumPy ``default_rng``), the minibatch order by ``data_seed`` and the epoch; the
initial particles (:meth:`init_particles`) only by the task, the particle count and the seed
(particle i's coordinates come from engine stream i).

Two users:

* the MMD and DrMMD flows, through :meth:`StudentTeacherTask.kernel` — the feature kernel
  ``k(z, z′) = mean_n ψ(x_n; z) ψ(x_n; z′)`` over the training inputs (§9, never formed), with
  ``for_step`` giving the minibatch kernel of each SGD step (epochs of ``n_train / batch_size``
  steps, inputs reshuffled every epoch). ``MMD²(ν, δ_{z*}) = mean_n (f_ν − f*)²(x_n)`` is twice
  the code's reported ½·MSE, and the flow's step ``z_i ← z_i − γ ∇φ(z̃_i)`` is the code's SGD step
  with γ = lr/2 (§2.4);
* the Muon flow, through the :class:`dp_core.flows.muon.MatrixObjective` methods ``shape``,
  ``init_particles`` and ``value_and_gradient``: ``J = ½ mean_n (f_ν − f*)²(x_n)`` over the training
  inputs (full batch, so J is one fixed function and (F 27) applies) and the particle gradient
  ``G_i = N ∂J/∂Z_i = mean_n (f_ν − f*)(x_n) ∇_Z ψ(x_n; Z_i)`` (F 25).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from dp_core.engine import rng, two_layer
from dp_core.errors import InvalidParameter
from dp_core.types import FloatArray

__all__ = ["FeatureKernel", "StudentTeacherTask"]

_OUTPUTS = {"quadexp": two_layer.QUADEXP, "linear": two_layer.LINEAR}


@dataclass(frozen=True)
class StudentTeacherTask:
    """A public student–teacher regression task (module docstring). Defaults: the paper's."""

    input_dim: int = 50
    hidden: int = 3
    teachers: int = 1
    n_train: int = 1000
    n_valid: int = 1000
    batch_size: int = 100
    output: str = "quadexp"
    output_scale: float = 2.0
    init_mean: float = 0.001
    init_std: float = 1.0
    teacher_std: float = 1.0
    data_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("input_dim", "hidden", "teachers", "n_train", "n_valid", "batch_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise InvalidParameter(name, "must be an integer >= 1")
        if self.output not in _OUTPUTS:
            raise InvalidParameter("output", f"must be one of {sorted(_OUTPUTS)}")
        for name in ("output_scale", "init_std", "teacher_std"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InvalidParameter(name, "must be finite and positive")
        if not math.isfinite(self.init_mean):
            raise InvalidParameter("init_mean", "must be finite")

    # ----------------------------------------------------------------------- shapes
    @property
    def shape(self) -> tuple[int, int]:
        """(p, q) = (H, D + 1): a particle as a matrix (row h: neuron h's weights, then w₂[h])."""
        return self.hidden, self.input_dim + 1

    @property
    def dim(self) -> int:
        """Flat particle dimension H·(D + 1) (153 in the paper)."""
        return self.hidden * (self.input_dim + 1)

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n_train // self.batch_size)

    # ----------------------------------------------------------------------- public data
    @cached_property
    def _data(self) -> dict[str, FloatArray]:
        gen = np.random.default_rng(self.data_seed)
        teacher = self.teacher_std * gen.standard_normal((self.teachers, *self.shape))
        out = {"teacher": np.ascontiguousarray(teacher)}
        for split, n in (("train", self.n_train), ("valid", self.n_valid)):
            x = gen.standard_normal((n, self.input_dim))
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            out[f"x_{split}"] = np.ascontiguousarray(x)
            out[f"y_{split}"] = self._mean_output(teacher, self.teacher_weights, x)
        return out

    @property
    def teacher(self) -> FloatArray:
        """Teacher units (K, H, D + 1)."""
        return self._data["teacher"]

    @property
    def teacher_weights(self) -> FloatArray:
        return np.full(self.teachers, 1.0 / self.teachers)

    @property
    def targets(self) -> FloatArray:
        """Teacher units as flat points (K, H·(D + 1)): the MMD flows' target."""
        return self.teacher.reshape(self.teachers, self.dim)

    def inputs(self, split: str = "train") -> tuple[FloatArray, FloatArray]:
        """(x (n, D), f*(x) (n,)) for ``split`` in {"train", "valid"}."""
        if split not in ("train", "valid"):
            raise InvalidParameter("split", "must be 'train' or 'valid'")
        return self._data[f"x_{split}"], self._data[f"y_{split}"]

    def init_particles(self, n_particles: int, seed: int) -> FloatArray:
        """N student units (N, H, D + 1), i.i.d. N(init_mean, init_std²) per coordinate; unit i
        depends only on (task, seed, i)."""
        if not (isinstance(n_particles, int) and n_particles >= 1):
            raise InvalidParameter("particles", "must be an integer >= 1")
        flat = np.empty((n_particles, self.dim))
        rng.fill_normals(rng.new_streams(seed, n_particles), flat)
        flat *= self.init_std
        flat += self.init_mean
        return flat.reshape(n_particles, *self.shape)

    # ----------------------------------------------------------------------- the model
    def _mean_output(self, units: FloatArray, weights: FloatArray, x: FloatArray) -> FloatArray:
        units = np.ascontiguousarray(units.reshape(-1, *self.shape))
        return two_layer.mean_output(units, weights, x, _OUTPUTS[self.output], self.output_scale)

    def predict(self, units: FloatArray, x: FloatArray, weights: FloatArray | None = None):
        """The student ``f_ν(x) = Σ_i a_i ψ(x; Z_i)`` (uniform a by default); units (N, H, D+1)
        or flat (N, H·(D+1))."""
        n = units.shape[0]
        return self._mean_output(units, np.full(n, 1.0 / n) if weights is None else weights, x)

    def half_mse(self, units: FloatArray, split: str = "train") -> float:
        """The code's metric ½·mean((f* − f_ν)²) on a split (§2.4)."""
        x, y = self.inputs(split)
        r = self.predict(units, x) - y
        return 0.5 * float(r @ r) / r.shape[0]

    # ----------------------------------------------------------------------- Muon objective
    def value_and_gradient(self, units: FloatArray) -> tuple[float, FloatArray]:
        """``J = ½ mean_n (f_ν − f*)²`` on the training inputs, ``G_i = N ∂J/∂Z_i`` (N, H, D+1)."""
        x, y = self.inputs("train")
        n = units.shape[0]
        r = self._mean_output(units, np.full(n, 1.0 / n), x) - y
        _, g = two_layer.pullback(
            units, x, r / r.shape[0], _OUTPUTS[self.output], self.output_scale
        )
        return 0.5 * float(r @ r) / r.shape[0], g

    # ----------------------------------------------------------------------- MMD kernel
    def kernel(self, minibatch: bool = True) -> FeatureKernel:
        """The feature kernel on the training inputs; ``minibatch`` makes ``for_step`` return the
        kernel of each SGD step's batch (the code's setting), else the full-batch kernel."""
        x, _ = self.inputs("train")
        return FeatureKernel(self, x, minibatch)

    def describe(self) -> dict[str, Any]:
        return {
            "task": "student_teacher",
            "input_dim": self.input_dim,
            "hidden": self.hidden,
            "teachers": self.teachers,
            "n_train": self.n_train,
            "batch_size": self.batch_size,
            "output": self.output,
            "output_scale": self.output_scale,
            "data_seed": self.data_seed,
        }


@dataclass(frozen=True)
class FeatureKernel:
    """``k(z, z′) = mean_n ψ(x_n; z) ψ(x_n; z′)`` over inputs x (the ``FlowKernel`` protocol of
    ``dp_core.flows.mmd``); points are flat units (L, H·(D+1))."""

    task: StudentTeacherTask
    x: FloatArray = field(repr=False)
    minibatch: bool = False

    @property
    def _code(self) -> int:
        return _OUTPUTS[self.task.output]

    def _units(self, points: FloatArray) -> FloatArray:
        return np.ascontiguousarray(points.reshape(points.shape[0], *self.task.shape))

    def _witness_on_inputs(
        self, z: FloatArray, a: FloatArray, y: FloatArray, b: FloatArray
    ) -> FloatArray:
        """φ's feature coefficients: ``Σ_j a_j ψ(x_n; z_j) − Σ_m b_m ψ(x_n; y_m)`` (n,)."""
        units = np.concatenate([self._units(z), self._units(y)])
        weights = np.concatenate([a, -b])
        return two_layer.mean_output(units, weights, self.x, self._code, self.task.output_scale)

    def witness(
        self, at: FloatArray, z: FloatArray, a: FloatArray, y: FloatArray, b: FloatArray
    ) -> FloatArray:
        r = self._witness_on_inputs(z, a, y, b) / self.x.shape[0]
        values, _ = two_layer.pullback(
            self._units(at), self.x, r, self._code, self.task.output_scale, False
        )
        return values

    def witness_gradient(
        self,
        at: FloatArray,
        z: FloatArray,
        a: FloatArray,
        y: FloatArray,
        b: FloatArray,
        at_particles: bool,
    ) -> FloatArray:
        r = self._witness_on_inputs(z, a, y, b) / self.x.shape[0]
        _, grads = two_layer.pullback(
            self._units(at), self.x, r, self._code, self.task.output_scale, True
        )
        return grads.reshape(at.shape)

    def mmd2(self, z: FloatArray, a: FloatArray, y: FloatArray, b: FloatArray) -> float:
        f = self._witness_on_inputs(z, a, y, b)
        return float(f @ f) / f.shape[0]

    def gram(self, y: FloatArray) -> FloatArray:
        psi = two_layer.unit_outputs(self._units(y), self.x, self._code, self.task.output_scale)
        return (psi @ psi.T) / self.x.shape[0]

    def for_step(self, step: int) -> FeatureKernel:
        if not self.minibatch:
            return self
        per_epoch = self.task.steps_per_epoch
        epoch, j = divmod(step, per_epoch)
        order = np.random.default_rng([self.task.data_seed, epoch]).permutation(self.x.shape[0])
        rows = np.sort(order[j * self.task.batch_size : (j + 1) * self.task.batch_size])
        return FeatureKernel(self.task, np.ascontiguousarray(self.x[rows]), False)

    def describe(self) -> dict[str, Any]:
        return {"kernel": "student_teacher_features", "minibatch": self.minibatch}
