"""Typed request and response models of the REST contract (API.md: keys, datasets, grants,
releases, ledger, jobs, flows, memories and generators).

Request models refuse unknown fields, so a typo fails before anything is sent; numeric ranges
are left to the service, whose 422 ``invalid_request`` names the field. Response models keep
fields a newer service adds (``extra="allow"``), so an older SDK still reads its answers.
Columns are shared by requests and responses and therefore keep extras too (the service
refuses unknown column fields with 422).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from privflow_client._display import rounded

__all__ = [
    "ApproxDP",
    "Budget",
    "BudgetSpec",
    "CategoryColumn",
    "Certificate",
    "CertificateValues",
    "Column",
    "Dataset",
    "DatasetCreate",
    "DrMMDRequest",
    "FieldProblem",
    "FloatColumn",
    "FlowDescription",
    "FlowResult",
    "GeneratorCreate",
    "GeneratorFitOptions",
    "GeneratorFitReport",
    "GeneratorInfo",
    "GeneratorProvenance",
    "GeneratorSampleRequest",
    "GeneratorSamples",
    "Grant",
    "GrantCreate",
    "JobAccepted",
    "JobInfo",
    "JobStatus",
    "KMeansUtility",
    "KernelSpec",
    "Key",
    "KeyCreate",
    "KeyCreated",
    "LedgerEntry",
    "LinearRegressionUtility",
    "LogisticRegressionUtility",
    "MMDRequest",
    "MeanUtility",
    "MemoryCreate",
    "MemoryCreated",
    "MemoryRetrieve",
    "ModeUtility",
    "MuonRequest",
    "Page",
    "Problem",
    "PureDP",
    "QuantileUtility",
    "Release",
    "ReleaseBudget",
    "RenyiPoint",
    "Retrieval",
    "Role",
    "SampleRequest",
    "SamplerInfo",
    "SamplerParams",
    "Spend",
    "StudentTeacherTask",
    "Utility",
    "WeightedPoints",
    "WorkEstimate",
]

T = TypeVar("T")
Role = Literal["analyst", "admin"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_JOB_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    """An answer of the service. Its attributes hold the exact values; its ``repr`` (and
    ``str``) shows floats to 12 significant digits (``_display``), so a printed certificate
    reads ``epsilon=0.1``, not ``epsilon=0.09999999999999999``."""

    model_config = ConfigDict(extra="allow")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, rounded(value)


# --- keys -----------------------------------------------------------------------------------


class KeyCreate(_Request):
    """``POST /v1/keys``."""

    name: str
    role: Role = "analyst"


class Key(_Response):
    """A key as listed: never its secret."""

    id: str
    name: str
    role: Role
    created_at: datetime | None = None
    revoked_at: datetime | None = None


class KeyCreated(_Response):
    """A new key; ``key`` is the secret, shown only in this answer (kept out of ``repr``)."""

    id: str
    name: str
    role: Role
    key: str = Field(repr=False)


# --- datasets and grants --------------------------------------------------------------------


class FloatColumn(BaseModel):
    """A numeric column with public bounds; records are clipped to ``[lower, upper]``."""

    model_config = ConfigDict(extra="allow")
    name: str
    type: Literal["float"] = "float"
    lower: float
    upper: float


class CategoryColumn(BaseModel):
    """A categorical column with its public list of categories."""

    model_config = ConfigDict(extra="allow")
    name: str
    type: Literal["category"] = "category"
    categories: list[str]


Column = Annotated[FloatColumn | CategoryColumn, Field(discriminator="type")]


class BudgetSpec(_Request):
    """A dataset's total budget, as registered."""

    epsilon: float
    delta: float = 0.0


class DatasetCreate(_Request):
    """``POST /v1/datasets``: public schema and budget, private records (never returned)."""

    name: str
    columns: list[Column]
    records: list[list[float | str]]
    budget: BudgetSpec
    neighbouring: Literal["add_remove", "replace_one"] | None = None
    size_bound: int | None = None
    accountant: Literal["pure", "union"] | None = None


class Spend(_Response):
    epsilon: float
    delta: float


class Budget(_Response):
    """A dataset's totals, what its ledger has spent and what remains."""

    epsilon: float
    delta: float
    spent: Spend
    remaining: Spend


class Dataset(_Response):
    """Dataset metadata (records are never returned by any endpoint).

    ``n_records`` is the record count for admin keys only; it is ``None`` for an analyst, to
    whom the service never shows it (under ``add_remove`` neighbouring the count is what DP
    protects): an analyst reads the public bound ``size_bound`` instead.
    """

    id: str
    name: str
    n_records: int | None = None
    columns: list[Column]
    budget: Budget
    neighbouring: str
    size_bound: int | None = None
    accountant: str | None = None
    created_at: datetime | None = None


class GrantCreate(_Request):
    """``POST /v1/datasets/{id}/grants``; posting again replaces the caps."""

    key_id: str
    epsilon_cap: float | None = None
    delta_cap: float | None = None


class Grant(_Response):
    dataset_id: str
    key_id: str
    epsilon_cap: float | None = None
    delta_cap: float | None = None
    spent: Spend | None = None
    created_at: datetime | None = None


# --- releases -------------------------------------------------------------------------------


class QuantileUtility(_Request):
    family: Literal["quantile"] = "quantile"
    column: str
    q: float


UtilityForm = Literal["gradient_norm", "loss"]
"""``gradient_norm`` (default): u = -|sum of per-record gradients|, error O(1/(eps n));
``loss``: the clipped loss sum (Gibbs form), error O(1/sqrt(eps n))."""


class MeanUtility(_Request):
    """Mean of ``columns``; ``clip`` optionally clips each record's gradient (loss form: the
    loss clip)."""

    family: Literal["mean"] = "mean"
    columns: list[str]
    clip: float | None = None
    form: UtilityForm = "gradient_norm"


class LinearRegressionUtility(_Request):
    family: Literal["linear_regression"] = "linear_regression"
    features: list[str]
    target: str
    radius: float
    form: UtilityForm = "gradient_norm"


class LogisticRegressionUtility(_Request):
    family: Literal["logistic_regression"] = "logistic_regression"
    features: list[str]
    label: str
    radius: float
    form: UtilityForm = "gradient_norm"


class KMeansUtility(_Request):
    family: Literal["kmeans"] = "kmeans"
    columns: list[str]
    k: int
    clip: float | None = None
    form: UtilityForm = "loss"  # the gradient form favours empty centres


class ModeUtility(_Request):
    """The most frequent category (``method="exact"`` only); samples are category labels."""

    family: Literal["mode"] = "mode"
    column: str


class CustomUtility(_Request):
    """A user-written per-record ``loss`` (check it locally with ``check_loss``); ``columns``
    maps aliases to float columns, ``domain`` is ``{"box": [[lo, hi], ...]}`` or
    ``{"ball": {"center": [...], "radius": r}}``, ``clip`` is the per-record gradient norm
    (``gradient_norm``) or loss bound (``loss``) the sensitivity follows from."""

    family: Literal["custom"] = "custom"
    loss: str
    columns: dict[str, str]
    domain: dict[str, Any]
    clip: float
    form: UtilityForm = "gradient_norm"


Utility = Annotated[
    QuantileUtility
    | MeanUtility
    | LinearRegressionUtility
    | LogisticRegressionUtility
    | KMeansUtility
    | ModeUtility
    | CustomUtility,
    Field(discriminator="family"),
]


class SamplerParams(_Request):
    """Optional SHK overrides; the service fills the rest from public parameters (no seed)."""

    particles: int | None = None
    step_size: float | None = None
    relaxation_moves: int | None = None


class SampleRequest(_Request):
    """``POST /v1/datasets/{id}/samples``; ``None`` fields take the service's defaults."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    utility: Utility
    epsilon: float
    delta: float | None = None
    n_samples: int | None = None
    method: Literal["shk", "exact"] | None = None
    sampler: SamplerParams | None = None
    run_async: bool | None = Field(default=None, alias="async")


class PureDP(_Response):
    epsilon: float


class ApproxDP(_Response):
    epsilon: float
    delta: float


class RenyiPoint(_Response):
    alpha: float
    epsilon: float


class CertificateValues(_Response):
    """Privacy values of a release (or, under ``per_sample``, of one of its samples)."""

    pure_dp: PureDP | None = None
    approx_dp: ApproxDP | None = None
    renyi: list[RenyiPoint] = Field(default_factory=list)


class Certificate(CertificateValues):
    """What the release is certified for: ``scope`` (``mean_field`` or ``exact``), the
    ``bound`` used and its ``assumptions``; public parameters only."""

    scope: str
    bound: str
    per_sample: CertificateValues | None = None
    flow_time: float | None = None
    n_samples: int | None = None
    inverse_temperature: float | None = None
    initialization: str | None = None
    neighbouring: str | None = None
    assumptions: list[str] = Field(default_factory=list)


class SamplerInfo(_Response):
    particles: int | None = None
    steps: int | None = None
    step_size: float | None = None
    relaxation_moves: int | None = None
    relaxation_step_range: list[float] | None = None


class WorkEstimate(_Response):
    """The service's public estimate of a release's or job's work, made before it ran from
    public parameters only: ``units`` and ``estimated_seconds`` (units over the service's
    measured rate; an estimate, shown by the progress bar)."""

    units: int
    estimated_seconds: float


class ReleaseBudget(_Response):
    spent: Spend
    remaining: Spend


class Release(_Response):
    """A private release: samples, certificate, the charge and the budget after it."""

    release_id: str
    dataset_id: str
    samples: list[list[float | str]]
    certificate: Certificate
    charged: Spend
    budget: ReleaseBudget | None = None
    sampler: SamplerInfo | None = None
    work: WorkEstimate | None = None
    created_at: datetime | None = None

    @property
    def samples_array(self) -> np.ndarray:
        """Samples as an ``(n_samples, width)`` array: float64, or object dtype holding the
        category labels of a ``mode`` release."""
        rows = self.samples
        width = len(rows[0]) if rows else 0
        if any(isinstance(value, str) for row in rows for value in row):
            out = np.empty((len(rows), width), dtype=object)
            for i, row in enumerate(rows):
                out[i, :] = row
            return out
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), width)


class LedgerEntry(_Response):
    """One charge on a dataset's ledger (analysts see their own)."""

    release_id: str
    key_id: str
    created_at: datetime | None = None
    utility: dict[str, Any]
    method: str | None = None
    charged: Spend
    certificate: Certificate
    status: str


class JobAccepted(_Response):
    """The 202 answer to ``"async": true``."""

    job_id: str
    release_id: str | None = None


class FieldProblem(_Response):
    field: str
    message: str


class Problem(_Response):
    """An RFC 9457 problem body (also a failed job's ``error``)."""

    type: str | None = None
    title: str | None = None
    status: int
    detail: str | None = None
    code: str
    errors: list[FieldProblem] | None = None


class JobInfo(_Response):
    """A job's state: ``progress`` in [0, 1], then ``result`` or ``error``.

    ``release_id`` is filled by the SDK from the 202 answer (or the result) for release jobs.
    """

    id: str
    kind: str | None = None
    status: JobStatus
    progress: float = 0.0
    result: dict[str, Any] | None = None
    error: Problem | None = None
    work: WorkEstimate | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    release_id: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the job reached ``succeeded``, ``failed`` or ``cancelled``."""
        return self.status in TERMINAL_JOB_STATUSES


class Page(_Response, Generic[T]):
    """One page of a list; ``next_cursor`` is ``None`` on the last."""

    items: list[T]
    next_cursor: str | None = None


# --- flows and memories (public point clouds: no budget, seeds allowed) ----------------------

Points = list[list[float]]
"""A point cloud as sent: equal-length rows of finite numbers (the service checks both)."""


class KernelSpec(_Request):
    """The kernel of an MMD or DrMMD flow."""

    name: Literal["gaussian", "imq", "laplace"] = "gaussian"
    bandwidth: float


class _FlowRequest(_Request):
    """What every flow takes; ``None`` fields take the service's defaults."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    steps: int | None = None
    step_size: float | None = None
    seed: int | None = None
    record_every: int | None = None
    run_async: bool | None = Field(default=None, alias="async")


class MMDRequest(_FlowRequest):
    """``POST /v1/flows/mmd``: ``noise_level`` 0 is the plain MMD flow."""

    source: Points
    target: Points
    kernel: KernelSpec
    noise_level: float | None = None


class DrMMDRequest(_FlowRequest):
    """``POST /v1/flows/drmmd``: ``lambda`` a number or ``"adaptive"`` (the service default)."""

    source: Points
    target: Points
    kernel: KernelSpec
    lambda_: float | Literal["adaptive"] | None = Field(default=None, alias="lambda")


class StudentTeacherTask(_Request):
    """The public student–teacher task of a Muon flow; every draw it makes is fixed by
    ``data_seed``. ``None`` fields take the service's defaults."""

    kind: Literal["student_teacher"] = "student_teacher"
    input_dim: int | None = None
    hidden: int | None = None
    teachers: int | None = None
    n_train: int | None = None
    output: Literal["quadexp", "linear"] | None = None
    data_seed: int | None = None


class MuonRequest(_FlowRequest):
    """``POST /v1/flows/muon``: regularised (or standard ``newton_schulz``) Muon."""

    task: StudentTeacherTask = Field(default_factory=StudentTeacherTask)
    particles: int | None = None
    momentum: float | None = None
    regularization: float | None = None
    update: Literal["regularized", "newton_schulz"] | None = None


class FlowDescription(_Response):
    """The public description of a flow run, ``seed`` included (API.md "Flows")."""

    flow: str
    particles: int
    dim: int
    steps: int
    step_size: float
    flow_time: float
    initialization: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None


class FlowResult(_Response):
    """A flow's answer (or a flow job's ``result``): final particles, the trace (rows
    ``{"step", ...metrics}``, the first before any step, the last the final state), the run's
    wall time, and the ``seed`` used — sent again with the same inputs it gives the same
    particles bit for bit."""

    particles: list[Any]
    trace: list[dict[str, Any]] = Field(default_factory=list)
    seconds: float
    seed: int | None = None
    description: FlowDescription | None = None

    @property
    def particles_array(self) -> np.ndarray:
        """The particles as a float64 array: ``(n, d)`` for MMD and DrMMD, ``(particles,
        hidden, input_dim + 1)`` for Muon."""
        return np.asarray(self.particles, dtype=np.float64)

    def trace_column(self, name: str) -> np.ndarray:
        """One trace metric (``"step"``, ``"mmd2"``, ``"loss"``, ...) as a float64 array, one
        value per row; NaN in rows without it (the first row has no step info)."""
        return np.asarray([row.get(name, np.nan) for row in self.trace], dtype=np.float64)


class WeightedPoints(_Request):
    """A weighted point cloud; ``weights`` ``None`` is uniform."""

    points: Points
    weights: list[float] | None = None


class MemoryCreate(_Request):
    """``POST /v1/memories``: patterns (weighted clouds of one dimension), blur, beta."""

    patterns: list[WeightedPoints]
    blur: float
    beta: float | None = None


class MemoryCreated(_Response):
    memory_id: str
    n_patterns: int


class MemoryRetrieve(_Request):
    """``POST /v1/memories/{id}/retrieve``; ``None`` fields take the service's defaults."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    query: WeightedPoints
    steps: int | None = None
    step_size: float | None = None
    weight_step: float | None = None
    run_async: bool | None = Field(default=None, alias="async")


class Retrieval(_Response):
    """A retrieval: the query's final points and weights, the nearest stored pattern (an
    index into the patterns), the debiased divergence to each pattern and the energy trace."""

    points: Points
    weights: list[float]
    nearest_pattern: int
    divergences: list[float]
    energy_trace: list[float] = Field(default_factory=list)
    seconds: float | None = None

    @property
    def points_array(self) -> np.ndarray:
        """The retrieved points as an ``(n, d)`` float64 array."""
        return np.asarray(self.points, dtype=np.float64)

    @property
    def weights_array(self) -> np.ndarray:
        """The retrieved weights (summing to one) as a float64 array."""
        return np.asarray(self.weights, dtype=np.float64)


# --- generators (public points or a release's samples: no budget, seeds allowed) -------------


class GeneratorFitOptions(_Request):
    """How a generator is fitted; ``None`` fields take the service's defaults: ``samples``
    (fit-sample size), ``max_steps`` (energy evaluations in total) and ``tolerance`` (the
    largest relative cell-mass error accepted)."""

    samples: int | None = None
    max_steps: int | None = None
    tolerance: float | None = None


class GeneratorCreate(_Request):
    """``POST /v1/generators``: exactly one of ``points`` and ``release_id`` (the service
    checks it). There is no ``dataset_id``: a generator is never fitted on a dataset's records,
    so that field is refused before sending (and by the service)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    points: Points | None = None
    release_id: str | None = None
    weights: list[float] | None = None
    source: Literal["uniform", "gaussian"] | None = None
    epsilon: float | None = None
    method: Literal["smoothed", "aeot_top2"] | None = None
    fit: GeneratorFitOptions | None = None
    seed: int | None = None
    run_async: bool | None = Field(default=None, alias="async")


class GeneratorFitReport(_Response):
    """What the fit did: ``steps`` (energy evaluations), ``converged`` (the tolerance was
    reached), ``energy``, ``max_rel_mass_error`` (both ``None`` when ``fit.max_steps`` ran out
    before the target ε was reached) and ``seconds``."""

    steps: int
    converged: bool
    energy: float | None
    max_rel_mass_error: float | None
    seconds: float


class GeneratorProvenance(_Response):
    """Where a generator's points came from: ``kind`` ``points`` (public points), or
    ``release`` with the release's ``release_id``, ``dataset_id`` and ``certificate``."""

    kind: str
    release_id: str | None = None
    dataset_id: str | None = None
    certificate: Certificate | None = None


class GeneratorInfo(_Response):
    """A fitted generator as the service describes it; ``charged`` is always zero (fitting is
    post-processing of public outputs)."""

    generator_id: str
    n_points: int
    dim: int
    epsilon: float
    method: str
    source: str
    fit: GeneratorFitReport
    provenance: GeneratorProvenance
    charged: Spend
    created_at: datetime | None = None


class GeneratorSampleRequest(_Request):
    """``POST /v1/generators/{id}/samples``: ``n`` samples drawn with ``seed``."""

    n: int
    seed: int


class GeneratorSamples(_Response):
    """Samples from a generator; the same ``seed`` gives the same samples."""

    generator_id: str
    seed: int
    samples: Points

    @property
    def samples_array(self) -> np.ndarray:
        """The samples as an ``(n, dim)`` float64 array."""
        return np.asarray(self.samples, dtype=np.float64)
