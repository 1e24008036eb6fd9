"""The SDK as a package: it talks HTTP only (no service or core imports), every module has a
docstring, the public names are pinned, and importing it reads no settings."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import privflow_client

from tests.client.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "clients" / "python" / "privflow_client"
ALLOWED_TOP_LEVEL = {"httpx", "pydantic", "numpy", "privflow_client"}

PUBLIC = [
    "ApproxDP", "AsyncClient", "AsyncGenerator", "AsyncJob", "AsyncMemory", "AsyncPaginator",
    "Budget", "BudgetExceeded", "CategoryColumn", "Certificate", "CertificateValues", "Client",
    "ConnectionFailed", "CustomUtility", "Dataset", "DatasetCreate", "DrMMDRequest",
    "FloatColumn", "FlowDescription", "FlowResult", "Forbidden", "Generator", "GeneratorCreate",
    "GeneratorFitOptions", "GeneratorFitReport", "GeneratorInfo", "GeneratorProvenance",
    "GeneratorSampleRequest", "GeneratorSamples", "Grant", "GrantCreate", "IdempotencyConflict",
    "InternalError", "InvalidRequest", "Job", "JobAccepted", "JobInfo", "JobTimeout",
    "KMeansUtility", "KernelSpec", "Key", "KeyCreate", "KeyCreated", "LedgerEntry",
    "LinearRegressionUtility", "LogisticRegressionUtility", "LossSyntaxError", "MMDRequest",
    "MeanUtility", "Memory", "MemoryCreate", "MemoryCreated", "MemoryRetrieve", "ModeUtility",
    "MuonRequest", "NotFound", "Overloaded", "Page", "Paginator", "PrivflowError", "Problem",
    "PureDP", "QuantileUtility", "Release", "ReleaseBudget", "RenyiPoint", "Retrieval",
    "RetryPolicy", "SampleRequest", "SamplerInfo", "SamplerParams", "Spend",
    "StudentTeacherTask", "TooLarge", "Unauthenticated", "WeightedPoints", "WorkEstimate",
    "__version__",
    "check_loss", "read_csv", "read_schema",
]  # fmt: skip


def _modules() -> list[Path]:
    return sorted(PACKAGE.glob("*.py"))


def test_the_sdk_imports_only_the_standard_library_httpx_pydantic_and_numpy() -> None:
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in ALLOWED_TOP_LEVEL or top in sys.stdlib_module_names, (path, name)


def test_every_module_has_a_docstring() -> None:
    missing = [p.name for p in _modules() if ast.get_docstring(ast.parse(p.read_text())) is None]
    assert missing == []


def test_public_names_are_pinned_and_exported() -> None:
    assert privflow_client.__all__ == PUBLIC
    assert all(hasattr(privflow_client, name) for name in PUBLIC)
    errors = [getattr(privflow_client, n) for n in PUBLIC if n[0].isupper()]
    errors = [e for e in errors if isinstance(e, type) and issubclass(e, Exception)]
    assert all(issubclass(e, privflow_client.PrivflowError) for e in errors)


def test_importing_the_sdk_reads_no_privflow_settings() -> None:
    """Settings are read when a client is built, never at import time."""
    probe = (
        "import os\n"
        "class Env(dict):\n"
        "    def _check(self, k):\n"
        "        assert not str(k).startswith('PRIVFLOW'), k\n"
        "    def __getitem__(self, k):\n"
        "        self._check(k); return super().__getitem__(k)\n"
        "    def get(self, k, d=None):\n"
        "        self._check(k); return super().get(k, d)\n"
        "os.environ = Env(os.environ)\n"
        "import privflow_client\n"
        "try:\n"
        "    privflow_client.Client().close()\n"
        "except AssertionError:\n"
        "    raise SystemExit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 3, done.stderr  # the import passed; building a client reads them
