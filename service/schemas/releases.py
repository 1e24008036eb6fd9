"""Private-release requests and responses (API.md "Private releases"), ledger entries, jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from service.schemas.common import Epsilon, Probability, Request, Spend

__all__ = [
    "CompositionOut",
    "JobAccepted",
    "JobOut",
    "LedgerEntryOut",
    "ReleaseOut",
    "SampleRequest",
    "SamplerParams",
    "Utility",
    "WorkOut",
]

ColumnName = Annotated[str, Field(min_length=1, max_length=200)]
Columns = Annotated[list[ColumnName], Field(min_length=1, max_length=16)]
Positive = Annotated[float, Field(gt=0, le=1e12, allow_inf_nan=False)]
Form = Annotated[
    Literal["gradient_norm", "loss"],
    Field(
        description="gradient_norm (default): u = -|sum_x grad l(theta, x)|, error O(1/(eps n)); "
        "loss: u = -sum_x l(theta, x) clipped, the Gibbs form, error O(1/sqrt(eps n))."
    ),
]


class QuantileUtility(Request):
    family: Literal["quantile"]
    column: ColumnName
    q: Annotated[float, Field(gt=0, lt=1)]


class MeanUtility(Request):
    family: Literal["mean"]
    columns: Columns
    clip: Positive | None = Field(
        default=None,
        description="gradient form: clips each record's gradient theta - x to this norm; loss "
        "form: the loss clip c of min(|theta - x|^2, c^2). Default: none (the box diameter).",
    )
    form: Form = "gradient_norm"


class LinearRegressionUtility(Request):
    family: Literal["linear_regression"]
    features: Columns
    target: ColumnName
    radius: Positive
    form: Form = "gradient_norm"


class LogisticRegressionUtility(Request):
    family: Literal["logistic_regression"]
    features: Columns
    label: ColumnName
    radius: Positive
    form: Form = "gradient_norm"


class KMeansUtility(Request):
    family: Literal["kmeans"]
    columns: Columns
    k: Annotated[int, Field(ge=1, le=64)]
    clip: Positive | None = Field(
        default=None,
        description="gradient form: clips each record's gradient c_j - x to this norm; loss "
        "form: tau of min(min_j |x - c_j|^2, tau^2). Default: none (the box diameter).",
    )
    form: Form = Field(
        default="loss",
        description="k-means defaults to the loss form: the gradient form's maximum is attained "
        "at degenerate stationary points (empty centres).",
    )


class ModeUtility(Request):
    family: Literal["mode"]
    column: ColumnName


Finite = Annotated[float, Field(ge=-1e12, le=1e12, allow_inf_nan=False)]
Interval = Annotated[list[Finite], Field(min_length=2, max_length=2)]
Alias = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")]


class BoxDomain(Request):
    box: Annotated[
        list[Interval],
        Field(min_length=1, max_length=10, description="[lower, upper] per coordinate of theta"),
    ]


class Ball(Request):
    center: Annotated[list[Finite], Field(min_length=1, max_length=10)]
    radius: Positive


class BallDomain(Request):
    ball: Ball


class CustomUtility(Request):
    """A user-written per-record loss (docs/privacy.md, "Custom utilities")."""

    family: Literal["custom"]
    loss: Annotated[
        str,
        Field(
            min_length=1,
            max_length=2000,
            description="l(theta, record) in the loss grammar: numbers, theta[i], the column "
            "aliases, + - * / ** (integer exponents), unary minus, pi, abs min max exp log log1p "
            "sqrt tanh sin cos sigmoid softplus huber clip where(cond, a, b).",
        ),
    ]
    columns: Annotated[
        dict[Alias, ColumnName],
        Field(min_length=1, max_length=16, description="alias -> float column of the dataset"),
    ]
    domain: BoxDomain | BallDomain = Field(
        description="theta's public domain: a box (dim <= 10; <= 3 for exact) or a ball"
    )
    clip: Positive = Field(
        description="gradient_norm: each record's gradient is clipped to this norm G; loss: "
        "each record's loss to [0, clip]. The sensitivity follows from it."
    )
    form: Form = "gradient_norm"


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


SEED_REFUSED = "a seed is refused on private releases (private randomness is never reproducible)"


def _refuse_seed(value: Any) -> None:
    if value is not None:
        raise ValueError(SEED_REFUSED)


Seed = Annotated[
    Any,
    Field(default=None, description="Refused (422): private releases seed from the OS CSPRNG."),
]


class SamplerParams(Request):
    """Optional overrides; every field the client leaves out comes from public parameters."""

    particles: Annotated[int, Field(ge=2, le=200_000)] | None = None
    step_size: Annotated[float, Field(ge=1e-4, le=1.0)] | None = None
    relaxation_moves: Annotated[int, Field(ge=0, le=10_000)] | None = None
    seed: Seed

    @field_validator("seed")
    @classmethod
    def _no_seed(cls, value: Any) -> None:
        _refuse_seed(value)


class SampleRequest(Request):
    utility: Utility
    epsilon: Epsilon
    delta: Probability = 0.0
    n_samples: Annotated[int, Field(ge=1, le=10_000)] = 1
    method: Literal["shk", "exact"] = "shk"
    sampler: SamplerParams | None = None
    run_async: bool = Field(
        default=False,
        alias="async",
        description="Return 202 with a job id instead of waiting for the samples.",
    )
    seed: Seed

    @field_validator("seed")
    @classmethod
    def _no_seed(cls, value: Any) -> None:
        _refuse_seed(value)


class WorkOut(BaseModel):
    """The public work estimate of a release or job (from public parameters only)."""

    units: Annotated[
        int, Field(description="work units: kernel pairs or particle-record terms x dimension")
    ]
    estimated_seconds: Annotated[
        float, Field(description="units / the service's work_units_per_second (an estimate)")
    ]


class ReleaseOut(BaseModel):
    release_id: str
    dataset_id: str
    samples: list[list[float | str]]
    certificate: dict[str, Any]
    charged: Spend
    budget: Annotated[dict[str, Spend], Field(description="spent and remaining after the charge")]
    sampler: dict[str, Any] | None
    work: WorkOut | None = None
    created_at: datetime


class LedgerEntryOut(BaseModel):
    release_id: str
    key_id: str
    created_at: datetime
    utility: dict[str, Any]
    method: str
    charged: Spend
    certificate: dict[str, Any]
    status: Literal["running", "succeeded", "failed", "cancelled", "aborted"]


Point = tuple[float, float | None]
"""``[delta, epsilon]``; epsilon is null where the accountant gives no bound at that delta."""


class ChargedSums(BaseModel):
    pure_epsilon: float
    zcdp_rho: float
    delta: float


class CertifiedSums(BaseModel):
    pure_epsilon: float
    zcdp_rho: float


class CompositionOut(BaseModel):
    """A dataset's (epsilon, delta) curve from its ledger, by two accountants, and its budget."""

    dataset_id: str
    accountant: str
    budget: Annotated[Spend, Field(description="the dataset's totals (epsilon_B, delta_B)")]
    charged: Annotated[
        ChargedSums, Field(description="sums of the ledger's charges over every entry")
    ]
    certified: Annotated[
        CertifiedSums,
        Field(description="sums of the entries' certificates (pure_dp.epsilon, zcdp.rho)"),
    ]
    pure: Annotated[
        list[Point], Field(description="basic composition (23) of the charges at each delta")
    ]
    zcdp: Annotated[
        list[Point], Field(description="zCDP composition of the charges, converted by (21)")
    ]


class JobAccepted(BaseModel):
    job_id: str
    release_id: str | None = None


class JobOut(BaseModel):
    id: str
    kind: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: float
    work: WorkOut | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    created_at: datetime
    finished_at: datetime | None = None
