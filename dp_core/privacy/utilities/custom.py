"""User-written per-record losses with sensitivities by construction (issue 19; docs/privacy.md,
"Custom utilities").

The analyst writes ℓ(θ, x) in the expression language of :mod:`expression`; records are
clipped to their columns' public bounds; Θ is a public box or ball. Two forms, as the built-in
families (accuracy note §3):

* ``gradient_norm`` (default): g = ∇_θ ℓ (symbolic), clipped to norm G = ``clip``
  (g -> g·min(1, G/|g|), as DP-SGD), ``u(D, θ) = -|Σ_x clip_G(g(θ, x))|``. Whatever ℓ is,
  |clip_G(g)| <= G, so :func:`~base.gradient_norm_sensitivity` applies verbatim: add/remove
  Δu = G, Δ_osc = 2G; replace-one Δu = 2G, Δ_osc = 4G; U = n_max·G.
* ``loss``: ``u(D, θ) = -Σ_x min(max(ℓ, 0), c)`` with c = ``clip``; every record contributes
  to [0, c], so :func:`~base.sum_form_sensitivity` with B = o = c: add/remove Δu = Δ_osc = c,
  replace-one Δ_osc = 2c, U = n_max·c.

Non-finite values never escape the clip: a non-finite ℓ counts as c, a non-finite gradient as
the zero vector (a non-finite Hessian as zero curvature, which moves only MALA proposals). The
user never declares a sensitivity, and nothing about non-finite cases reaches a message.

The record pass is a kernel generated from the expression (:mod:`codegen` in a time-limited
child process, :mod:`symbolic`; :mod:`dp_core.engine.custom_kernels`), compiled on first use and
cached; :meth:`compile` lets a service compile (and time) it before charging.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from dp_core.engine.custom_kernels import KernelBody, compile_kernel, run_chunks
from dp_core.errors import InvalidParameter
from dp_core.privacy.utilities.base import (
    Sensitivity,
    check_form,
    clip_columns,
    describe,
    gradient_norm_loss,
    gradient_norm_sensitivity,
    sum_form_sensitivity,
)
from dp_core.privacy.utilities.expression import check_alias, check_loss
from dp_core.privacy.utilities.symbolic import (
    SummaryProof,
    SummarySetting,
    kernel_body_within,
    summary_proof_within,
)
from dp_core.types import Domain, FloatArray

__all__ = ["MAX_COLUMNS", "MAX_DIM", "CustomData", "CustomUtility"]

MAX_DIM = 10
"""dim Θ for ``shk`` (``exact`` is limited to :data:`dp_core.privacy.grid.MAX_GRID_DIM`)."""
MAX_COLUMNS = 16
_ORDER = {"gradient_norm": 2, "loss": 1}
_GRID_ORDER = {"gradient_norm": 1, "loss": 0}


@dataclass(frozen=True)
class QuadraticSummary:
    """The record sums of a gradient-form loss quadratic in θ whose clip never binds
    (:mod:`quadratic`), private: A(θ) = Σ_x g(θ, x) = ``jacobian``·θ + ``intercept``."""

    intercept: FloatArray
    jacobian: FloatArray


@dataclass(frozen=True)
class CustomData:
    """The clipped records transposed, (m, n), and their summary where one is proved sound
    (private)."""

    records_t: FloatArray
    summary: QuadraticSummary | None = None


@dataclass(frozen=True)
class CustomUtility:
    """ℓ(θ, x) = ``expression`` (the API's ``loss``) over records whose columns ``columns``
    (aliases, in record order) lie in [``column_lower``, ``column_upper``]; Θ is ``box``
    ((lo, hi) per coordinate) or the ball (``ball_center``, ``ball_radius``); ``clip`` is G
    (gradient form) or c (loss form)."""

    expression: str
    columns: tuple[str, ...]
    column_lower: tuple[float, ...]
    column_upper: tuple[float, ...]
    clip: float
    box: tuple[tuple[float, float], ...] | None = None
    ball_center: tuple[float, ...] | None = None
    ball_radius: float | None = None
    form: str = "gradient_norm"
    family: str = "custom"
    _domain: Domain = field(init=False, repr=False)
    _proof: list[SummaryProof | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_form(self.form)
        if not (isinstance(self.clip, (int, float)) and math.isfinite(self.clip)):
            raise InvalidParameter("utility.clip", "must be finite and positive")
        if self.clip <= 0:
            raise InvalidParameter("utility.clip", "must be finite and positive")
        object.__setattr__(self, "_domain", self._make_domain())
        object.__setattr__(self, "_proof", [])  # summary_proof's answer, once decided
        self._check_columns()
        check_loss(self.expression, self.columns, self.dim)  # fast, before SymPy

    def _make_domain(self) -> Domain:
        if (self.box is None) == (self.ball_center is None):
            raise InvalidParameter("utility.domain", "needs exactly one of box and ball")
        if self.box is not None:
            box = np.asarray(self.box, dtype=np.float64)
            if box.ndim != 2 or box.shape[1] != 2 or not 1 <= box.shape[0] <= MAX_DIM:
                raise InvalidParameter(
                    "utility.domain.box", f"needs 1 to {MAX_DIM} [lower, upper] pairs"
                )
            return Domain.box(box[:, 0], box[:, 1])
        centre = np.atleast_1d(np.asarray(self.ball_center, dtype=np.float64))
        if not 1 <= centre.size <= MAX_DIM:
            raise InvalidParameter("utility.domain.ball", f"needs dimension 1 to {MAX_DIM}")
        radius = self.ball_radius
        if radius is None or not (math.isfinite(radius) and radius > 0):
            raise InvalidParameter("utility.domain.ball.radius", "must be finite and positive")
        return Domain.ball(centre, radius)

    def _check_columns(self) -> None:
        n = len(self.columns)
        if not 1 <= n <= MAX_COLUMNS or len(set(self.columns)) != n:
            raise InvalidParameter(
                "utility.columns", f"needs 1 to {MAX_COLUMNS} distinct column aliases"
            )
        for alias in self.columns:
            check_alias(alias)
        lo = np.asarray(self.column_lower, dtype=np.float64)
        hi = np.asarray(self.column_upper, dtype=np.float64)
        if lo.shape != (n,) or hi.shape != (n,):
            raise InvalidParameter("utility.columns", "needs one bound pair per alias")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
            raise InvalidParameter("utility.columns", "bounds must be finite with lower < upper")

    @property
    def domain(self) -> Domain:
        return self._domain

    @property
    def dim(self) -> int:
        return self._domain.dim

    @property
    def gradient_bound(self) -> float:
        """G = ``clip``: every clipped per-record gradient has norm <= G."""
        return float(self.clip)

    @property
    def loss_bound(self) -> float:
        """c = ``clip``: every clipped per-record loss lies in [0, c]."""
        return float(self.clip)

    def sensitivity(self, neighbouring: str, n_max: int) -> Sensitivity:
        """By construction from the clip (module docstring). Where the gradient-form loss is
        proved quadratic with an idle clip, the proof gives the slope bound n_max·sup‖∇²ℓ‖_F
        (it enters no certificate)."""
        if self.form == "loss":
            return sum_form_sensitivity(self.clip, self.clip, neighbouring, n_max)
        proof = self.summary_proof()
        lipschitz = None if proof is None else proof.curvature_bound
        return gradient_norm_sensitivity(
            self.clip, neighbouring, n_max, gradient_lipschitz=lipschitz
        )

    def summary_proof(self) -> SummaryProof | None:
        """Whether the record pass reduces to a summary (:mod:`quadratic`): decided from the
        public parameters alone, cached per process and decided once per instance, so a
        release's plan (work estimate, slope bound) and its record pass agree; None keeps the
        record pass (always in the loss form). The kernel body comes first, so a loss SymPy
        refuses is refused (422) before any proof is tried."""
        if self.form != "gradient_norm":
            return None
        if self._proof:
            return self._proof[0]
        self._kernel_body(grid=False)
        setting = SummarySetting(
            self.form,
            float(self.clip),
            tuple(zip(self.column_lower, self.column_upper, strict=True)),
            self.box,
            self.ball_center,
            self.ball_radius,
        )
        proof = summary_proof_within(self.expression, tuple(self.columns), self.dim, setting)
        self._proof.append(proof)
        return proof

    def _kernel_body(self, grid: bool) -> KernelBody:
        order = (_GRID_ORDER if grid else _ORDER)[self.form]
        return kernel_body_within(self.expression, tuple(self.columns), self.dim, order)

    def _kind(self, grid: bool) -> str:
        return f"{'grid' if grid else 'shk'}/{self.form}"

    def compile(self, method: str = "shk", timeout: float | None = None) -> float | None:
        """Compile (or find cached) the kernel ``method`` needs; the seconds spent compiling,
        None when it was cached. Refusals name ``utility.loss``."""
        grid = method == "exact"
        kwargs = {} if timeout is None else {"timeout": timeout}
        compiled = compile_kernel(self._kind(grid), self._kernel_body(grid), **kwargs)
        if not grid:
            self.summary_proof()  # decided (and cached) before anything is charged
        return compiled.compile_seconds

    def _kernel(self, grid: bool) -> Any:
        return compile_kernel(self._kind(grid), self._kernel_body(grid)).kernel

    def clip_records(self, records: Any) -> FloatArray:
        """Records clipped to the columns' bounds, (n, m)."""
        lo = np.asarray(self.column_lower, dtype=np.float64)
        hi = np.asarray(self.column_upper, dtype=np.float64)
        return clip_columns(records, lo, hi, "records")

    def prepare(self, records: Any) -> CustomData:
        """The clipped records and, where :meth:`summary_proof` holds, their summary: one record
        pass at Θ's centre θ₀ with the clip off, since it is proved idle (a record whose
        gradient is non-finite there counts as the zero vector, as in the record pass; one whose
        Hessian is non-finite keeps g(θ₀): either way its contribution stays within G)."""
        data = CustomData(np.ascontiguousarray(self.clip_records(records).T))
        if self.summary_proof() is None:
            return data
        anchor = np.asarray(
            self.ball_center if self.box is None else [(lo + hi) / 2 for lo, hi in self.box]
        )
        at_anchor, jacobian = self._record_pass(data, anchor[None, :], math.inf)
        intercept = at_anchor[0] - jacobian[0] @ anchor
        return replace(data, summary=QuadraticSummary(intercept, jacobian[0]))

    def loss_terms(self, prepared: CustomData, points: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The raw sums at N points: (A (N, d), J (N, d, d)) in the gradient form, (L (N,),
        ∇L (N, d)) in the loss form; from the summary where there is one."""
        pts = np.ascontiguousarray(points, dtype=np.float64)
        summary = prepared.summary
        if summary is None:
            return self._record_pass(prepared, pts, float(self.clip))
        sums = pts @ summary.jacobian.T + summary.intercept
        return sums, np.broadcast_to(summary.jacobian, (pts.shape[0], *summary.jacobian.shape))

    def _record_pass(
        self, prepared: CustomData, pts: FloatArray, clip: float
    ) -> tuple[FloatArray, FloatArray]:
        n_points, d = pts.shape
        kernel = self._kernel(grid=False)
        if self.form == "gradient_norm":
            sums = np.empty((n_points, d))
            jac = np.empty((n_points, d, d))
            run_chunks(kernel, n_points, pts, prepared.records_t, clip, sums, jac)
            return sums, jac
        value = np.empty(n_points)
        grad = np.empty((n_points, d))
        run_chunks(kernel, n_points, pts, prepared.records_t, clip, value, grad)
        return value, grad

    def loss(self, prepared: CustomData, points: FloatArray) -> tuple[FloatArray, FloatArray]:
        """L = -u and ∇L at N points (gradient form: |A| and JᵀA/|A|)."""
        summary = prepared.summary
        if summary is not None:  # one J for every point: no einsum
            sums = points @ summary.jacobian.T + summary.intercept
            return gradient_norm_loss(sums, sums @ summary.jacobian)
        first, second = self.loss_terms(prepared, points)
        if self.form == "gradient_norm":
            return gradient_norm_loss(first, np.einsum("iab,ia->ib", second, first))
        return first, second

    def grid_sums(
        self, clipped: FloatArray, grid: FloatArray, quantum: float, limit: int, out: np.ndarray
    ) -> None:
        """Per-record integer contributions summed per grid point (exact path, :mod:`grid`):
        one record at a time, non-finite values as the module docstring says."""
        kernel = self._kernel(grid=True)
        records = np.ascontiguousarray(clipped, dtype=np.float64)
        points = np.ascontiguousarray(grid, dtype=np.float64)
        run_chunks(kernel, points.shape[0], points, records, quantum, float(self.clip), limit, out)

    def describe(self) -> dict[str, Any]:
        return describe(self)
