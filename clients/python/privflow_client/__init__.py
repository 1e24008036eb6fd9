"""privflow-client: the Python SDK for the privflow differential-privacy sampling service.

It speaks only the REST contract (API.md)::

    from privflow_client import Client

    with Client("http://127.0.0.1:8000", api_key="pf_...") as client:
        release = client.releases.create(
            dataset_id, {"family": "quantile", "column": "age", "q": 0.5}, epsilon=0.5
        )
        release.samples_array  # (n_samples, width) NumPy array
        client.datasets.budget(dataset_id).remaining.epsilon
        flow = client.flows.mmd(source, target, bandwidth=1.0, seed=7)  # public clouds
        flow.particles_array  # the same seed and inputs give the same array
        generator = client.generators.fit(points, seed=0)  # public points or release_id=
        generator.sample(1000, seed=1)  # (1000, dim) NumPy array; same seed, same array

``AsyncClient`` is the asyncio twin. Errors are the ``PrivflowError`` tree of
``privflow_client._errors``; models are in ``privflow_client._models``; the pure wire logic
(requests, parsing, retries) is ``privflow_client._wire``.
"""

from privflow_client._async_client import (
    AsyncClient,
    AsyncGenerator,
    AsyncJob,
    AsyncMemory,
    AsyncPaginator,
)
from privflow_client._client import Client, Job, Paginator
from privflow_client._csv import read_csv, read_schema
from privflow_client._errors import (
    BudgetExceeded,
    ConnectionFailed,
    Forbidden,
    IdempotencyConflict,
    InternalError,
    InvalidRequest,
    JobTimeout,
    NotFound,
    Overloaded,
    PrivflowError,
    TooLarge,
    Unauthenticated,
)
from privflow_client._flows import Generator, Memory
from privflow_client._loss import LossSyntaxError, check_loss
from privflow_client._models import (
    ApproxDP,
    Budget,
    CategoryColumn,
    Certificate,
    CertificateValues,
    CustomUtility,
    Dataset,
    DatasetCreate,
    DrMMDRequest,
    FloatColumn,
    FlowDescription,
    FlowResult,
    GeneratorCreate,
    GeneratorFitOptions,
    GeneratorFitReport,
    GeneratorInfo,
    GeneratorProvenance,
    GeneratorSampleRequest,
    GeneratorSamples,
    Grant,
    GrantCreate,
    JobAccepted,
    JobInfo,
    KernelSpec,
    Key,
    KeyCreate,
    KeyCreated,
    KMeansUtility,
    LedgerEntry,
    LinearRegressionUtility,
    LogisticRegressionUtility,
    MeanUtility,
    MemoryCreate,
    MemoryCreated,
    MemoryRetrieve,
    MMDRequest,
    ModeUtility,
    MuonRequest,
    Page,
    Problem,
    PureDP,
    QuantileUtility,
    Release,
    ReleaseBudget,
    RenyiPoint,
    Retrieval,
    SampleRequest,
    SamplerInfo,
    SamplerParams,
    Spend,
    StudentTeacherTask,
    WeightedPoints,
    WorkEstimate,
)
from privflow_client._wire import RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "ApproxDP",
    "AsyncClient",
    "AsyncGenerator",
    "AsyncJob",
    "AsyncMemory",
    "AsyncPaginator",
    "Budget",
    "BudgetExceeded",
    "CategoryColumn",
    "Certificate",
    "CertificateValues",
    "Client",
    "ConnectionFailed",
    "CustomUtility",
    "Dataset",
    "DatasetCreate",
    "DrMMDRequest",
    "FloatColumn",
    "FlowDescription",
    "FlowResult",
    "Forbidden",
    "Generator",
    "GeneratorCreate",
    "GeneratorFitOptions",
    "GeneratorFitReport",
    "GeneratorInfo",
    "GeneratorProvenance",
    "GeneratorSampleRequest",
    "GeneratorSamples",
    "Grant",
    "GrantCreate",
    "IdempotencyConflict",
    "InternalError",
    "InvalidRequest",
    "Job",
    "JobAccepted",
    "JobInfo",
    "JobTimeout",
    "KMeansUtility",
    "KernelSpec",
    "Key",
    "KeyCreate",
    "KeyCreated",
    "LedgerEntry",
    "LinearRegressionUtility",
    "LogisticRegressionUtility",
    "LossSyntaxError",
    "MMDRequest",
    "MeanUtility",
    "Memory",
    "MemoryCreate",
    "MemoryCreated",
    "MemoryRetrieve",
    "ModeUtility",
    "MuonRequest",
    "NotFound",
    "Overloaded",
    "Page",
    "Paginator",
    "PrivflowError",
    "Problem",
    "PureDP",
    "QuantileUtility",
    "Release",
    "ReleaseBudget",
    "RenyiPoint",
    "Retrieval",
    "RetryPolicy",
    "SampleRequest",
    "SamplerInfo",
    "SamplerParams",
    "Spend",
    "StudentTeacherTask",
    "TooLarge",
    "Unauthenticated",
    "WeightedPoints",
    "WorkEstimate",
    "__version__",
    "check_loss",
    "read_csv",
    "read_schema",
]
