"""The wire protocol, pure: request building, response parsing and retry decisions.

``Client`` and ``AsyncClient`` are thin I/O loops around this module: each API operation is a
:class:`Call` built here (method, path, query, JSON body, ``Idempotency-Key``, how to parse the
answer); the loops send it, ask :func:`retry_delay` whether and when to send it again, and hand
the final answer to :func:`parse`. Nothing here performs I/O, sleeps or reads the environment.

Retries (API.md "Conventions"): an attempt is repeated on a connection failure, a 429 (after
``Retry-After``) or a 502/503/504, with capped exponential backoff — but a request that may
already have reached the service is repeated only when that is safe (:attr:`Call.replay_safe`):
reads, deletes, grant upserts, and the POSTs that spend budget or start work (releases, flows,
memory retrievals, generator fits and samples), which carry an ``Idempotency-Key``. The key is
generated once per call and sent unchanged on every attempt, so the service answers a retried
release (or flow) with the first response and charges (or runs) it once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import numpy as np
from pydantic import BaseModel, ValidationError

from privflow_client._errors import ConnectionFailed, InvalidRequest, PrivflowError, error_for
from privflow_client._models import (
    Dataset,
    DatasetCreate,
    DrMMDRequest,
    FlowResult,
    GeneratorCreate,
    GeneratorInfo,
    GeneratorSampleRequest,
    GeneratorSamples,
    Grant,
    GrantCreate,
    JobAccepted,
    JobInfo,
    Key,
    KeyCreate,
    KeyCreated,
    LedgerEntry,
    MemoryCreate,
    MemoryCreated,
    MemoryRetrieve,
    MMDRequest,
    MuonRequest,
    Page,
    Release,
    Retrieval,
    SampleRequest,
)

__all__ = [
    "DEFAULT_URL",
    "USER_AGENT",
    "Call",
    "RetryPolicy",
    "build",
    "cancel_job",
    "configure",
    "connection_failed",
    "create_dataset",
    "create_key",
    "create_memory",
    "create_release",
    "delete_generator",
    "expect_answer",
    "expect_job",
    "expect_release",
    "fit_generator",
    "flow",
    "get_dataset",
    "get_generator",
    "get_job",
    "get_release",
    "grant",
    "job_output",
    "job_release",
    "list_datasets",
    "list_generators",
    "list_keys",
    "list_ledger",
    "parse",
    "parse_retry_after",
    "plain",
    "poll_sleep",
    "readyz",
    "records_list",
    "retrieve",
    "retry_delay",
    "revoke_key",
    "sample_generator",
    "sample_request",
    "weighted",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "privflow-client/0.1.0"
PROBLEM_JSON = "application/problem+json"

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport failures before the request left this process: safe to resend anything."""


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before sending a call again.

    ``max_attempts`` counts every attempt (1 = never retry). The n-th retry waits
    ``min(max_backoff, backoff * 2**(n-1))`` seconds scaled by a jitter in [0.5, 1], or what
    ``Retry-After`` asks (up to 25 % more, never less); an answer asking for more than
    ``max_retry_after`` seconds is not retried but raised (``Overloaded.retry_after``).
    """

    max_attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0
    statuses: frozenset[int] = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API operation, ready to send: everything but the transport.

    ``parse`` turns a 2xx status and decoded JSON body (``None`` when empty) into the result.
    ``replay_safe`` says whether sending it twice has the effect of sending it once;
    ``max_attempts`` overrides the policy's for this call.
    """

    method: str
    path: str
    parse: Callable[[int, Any], T]
    params: Mapping[str, str | int] | None = None
    body: Any = None
    idempotency_key: str | None = None
    replay_safe: bool = False
    max_attempts: int | None = None
    extra_headers: Mapping[str, str] = field(default_factory=dict)

    def headers(self, api_key: str | None) -> dict[str, str]:
        """Request headers: auth, ``Idempotency-Key`` (the same on every attempt), JSON."""
        out = {"Accept": f"application/json, {PROBLEM_JSON}", **self.extra_headers}
        if api_key:
            out["Authorization"] = f"Bearer {api_key}"
        if self.idempotency_key is not None:
            out["Idempotency-Key"] = self.idempotency_key
        return out


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); ``None`` if absent."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_delay(
    call: Call[Any],
    attempt: int,
    policy: RetryPolicy,
    *,
    status: int | None = None,
    retry_after: float | None = None,
    error: BaseException | None = None,
    jitter: float = 1.0,
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or ``None`` to stop retrying.

    Give either the answer's ``status`` (and its parsed ``Retry-After``) or the transport
    ``error`` of attempt ``attempt`` (1-based). ``jitter`` is a number in [0, 1].
    """
    if attempt >= (call.max_attempts or policy.max_attempts):
        return None
    if error is not None:
        if not isinstance(error, httpx.TransportError):
            return None
        if not (call.replay_safe or isinstance(error, _NOT_SENT)):
            return None  # it may have reached the service: resending could repeat the effect
    elif status is None or status not in policy.statuses:
        return None
    elif status != 429 and not call.replay_safe:
        return None  # a gateway error says nothing about whether the service acted
    if retry_after is not None:
        if retry_after > policy.max_retry_after:
            return None
        return retry_after * (1.0 + 0.25 * jitter)
    base = min(policy.max_backoff, policy.backoff * 2.0 ** (attempt - 1))
    return base * (0.5 + 0.5 * jitter)


def parse(call: Call[T], status: int, headers: Mapping[str, str], content: bytes) -> T:
    """The result of a final answer, or the :class:`PrivflowError` it stands for."""
    data: Any = None
    if content:
        try:
            data = json.loads(content)
        except ValueError:
            data = None
    if status >= 400 or status < 200:
        problem = data if isinstance(data, dict) else None
        raise error_for(status, problem, retry_after=parse_retry_after(headers.get("retry-after")))
    try:
        return call.parse(status, data)
    except ValidationError as exc:
        raise PrivflowError(
            f"Unexpected answer to {call.method} {call.path}: {exc.error_count()} field problems",
            code="unexpected_response",
            status=status,
        ) from exc


def connection_failed(call: Call[Any], error: BaseException) -> ConnectionFailed:
    """The error raised when no answer came back (after any retries)."""
    return ConnectionFailed(
        f"{call.method} {call.path}: {type(error).__name__}: {error}".rstrip(": ")
    )


def build(model: type[M], **fields: Any) -> M:
    """``model(**fields)``; a validation failure is :class:`InvalidRequest` (nothing sent)."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]}
            for err in exc.errors()
        ]
        names = ", ".join(dict.fromkeys(e["field"] for e in errors))
        raise InvalidRequest(
            f"Invalid fields (checked before sending): {names}", errors=errors
        ) from None


def _model(adapter_type: type[M]) -> Callable[[int, Any], M]:
    return lambda _status, data: adapter_type.model_validate(data)


def _segment(value: str) -> str:
    return quote(str(value), safe="")


def _body(model: BaseModel) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _page(model: type[Any]) -> Callable[[int, Any], Page[Any]]:
    page_model = Page[model]  # type: ignore[valid-type]
    return lambda _status, data: page_model.model_validate(data)


def _list_call(path: str, model: type[Any], limit: int | None, cursor: str | None) -> Call[Any]:
    params: dict[str, str | int] = {}
    if limit is not None:
        params["limit"] = limit
    if cursor is not None:
        params["cursor"] = cursor
    return Call("GET", path, _page(model), params=params, replay_safe=True)


# --- operations -----------------------------------------------------------------------------


def create_key(name: str, role: str) -> Call[KeyCreated]:
    body = build(KeyCreate, name=name, role=role)
    return Call("POST", "/v1/keys", _model(KeyCreated), body=_body(body))


def list_keys(limit: int | None, cursor: str | None) -> Call[Page[Key]]:
    return _list_call("/v1/keys", Key, limit, cursor)


def revoke_key(key_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/keys/{_segment(key_id)}", lambda _s, _d: None, replay_safe=True)


def create_dataset(
    name: str,
    columns: Any,
    records: Any,
    *,
    epsilon: float,
    delta: float,
    neighbouring: str | None,
    size_bound: int | None,
    accountant: str | None,
) -> Call[Dataset]:
    body = build(
        DatasetCreate,
        name=name,
        columns=list(columns),
        records=records_list(records),
        budget={"epsilon": epsilon, "delta": delta},
        neighbouring=neighbouring,
        size_bound=size_bound,
        accountant=accountant,
    )
    return Call("POST", "/v1/datasets", _model(Dataset), body=_body(body))


def list_datasets(limit: int | None, cursor: str | None) -> Call[Page[Dataset]]:
    return _list_call("/v1/datasets", Dataset, limit, cursor)


def get_dataset(dataset_id: str) -> Call[Dataset]:
    return Call("GET", f"/v1/datasets/{_segment(dataset_id)}", _model(Dataset), replay_safe=True)


def grant(
    dataset_id: str, key_id: str, epsilon_cap: float | None, delta_cap: float | None
) -> Call[Grant]:
    # A grant is an upsert of caps (spending is kept), so sending it twice equals once.
    body = build(GrantCreate, key_id=key_id, epsilon_cap=epsilon_cap, delta_cap=delta_cap)
    path = f"/v1/datasets/{_segment(dataset_id)}/grants"
    return Call("POST", path, _model(Grant), body=_body(body), replay_safe=True)


def list_ledger(dataset_id: str, limit: int | None, cursor: str | None) -> Call[Page[LedgerEntry]]:
    return _list_call(f"/v1/datasets/{_segment(dataset_id)}/ledger", LedgerEntry, limit, cursor)


def _answer_or_job(model: type[M]) -> Callable[[int, Any], M | JobAccepted]:
    """Parse a work answer: 202 is the job it became (``"async": true``), else ``model``."""

    def parse(status: int, data: Any) -> M | JobAccepted:
        if status == 202:
            return JobAccepted.model_validate(data)
        return model.model_validate(data)

    return parse


def _work(
    path: str, body: BaseModel, model: type[M], idempotency_key: str | None
) -> Call[M | JobAccepted]:
    """A POST that spends budget or starts work: it always carries an ``Idempotency-Key`` (a
    fresh uuid4 unless given), so every retry of this call is the same request to the service
    (which answers it with the first answer, and charges or runs it once)."""
    return Call(
        "POST",
        path,
        _answer_or_job(model),
        body=_body(body),
        idempotency_key=idempotency_key or str(uuid.uuid4()),
        replay_safe=True,
    )


def create_release(
    dataset_id: str, body: SampleRequest, idempotency_key: str | None = None
) -> Call[Release | JobAccepted]:
    """A release spends budget: one ``Idempotency-Key`` across its retries (see ``_work``)."""
    return _work(f"/v1/datasets/{_segment(dataset_id)}/samples", body, Release, idempotency_key)


_FLOWS: dict[str, type[BaseModel]] = {"mmd": MMDRequest, "drmmd": DrMMDRequest, "muon": MuonRequest}


def flow(
    name: str, fields: Mapping[str, Any], *, wait: bool = True, idempotency_key: str | None = None
) -> Call[FlowResult | JobAccepted]:
    """``POST /v1/flows/{name}`` (``mmd``, ``drmmd`` or ``muon``) from the SDK's keyword
    arguments: NumPy arrays become lists, and MMD/DrMMD's ``kernel`` (a name, default
    ``gaussian``) and ``bandwidth`` become the request's kernel spec. ``wait=False`` asks for a
    job. A flow starts work, so it carries an ``Idempotency-Key`` like a release."""
    values = {key: plain(value) for key, value in fields.items()}
    if name in ("mmd", "drmmd"):
        kernel = {"name": values.pop("kernel", "gaussian")}
        if "bandwidth" in values:
            kernel["bandwidth"] = values.pop("bandwidth")
        values["kernel"] = kernel
    body = build(_FLOWS[name], **values, run_async=None if wait else True)
    return _work(f"/v1/flows/{name}", body, FlowResult, idempotency_key)


def create_memory(
    patterns: Any, blur: float, beta: float | None, idempotency_key: str | None = None
) -> Call[MemoryCreated]:
    """``POST /v1/memories``. Storing starts work, so it carries one ``Idempotency-Key`` across
    its retries: a resend after a lost answer returns the first memory instead of storing the
    patterns twice."""
    body = build(
        MemoryCreate, patterns=[weighted(pattern) for pattern in patterns], blur=blur, beta=beta
    )
    return Call(
        "POST",
        "/v1/memories",
        _model(MemoryCreated),
        body=_body(body),
        idempotency_key=idempotency_key or str(uuid.uuid4()),
        replay_safe=True,
    )


def retrieve(
    memory_id: str,
    query: Any,
    fields: Mapping[str, Any],
    *,
    wait: bool = True,
    idempotency_key: str | None = None,
) -> Call[Retrieval | JobAccepted]:
    """``POST /v1/memories/{id}/retrieve``: ``query`` as in :func:`weighted` (``fields`` may
    hold its ``weights``, and ``steps``, ``step_size``, ``weight_step``); ``wait=False`` asks
    for a job. It starts work: one ``Idempotency-Key`` across its retries."""
    values = {key: plain(value) for key, value in fields.items()}
    body = build(
        MemoryRetrieve,
        query=weighted(query, values.pop("weights", None)),
        **values,
        run_async=None if wait else True,
    )
    path = f"/v1/memories/{_segment(memory_id)}/retrieve"
    return _work(path, body, Retrieval, idempotency_key)


def fit_generator(
    fields: Mapping[str, Any], *, wait: bool = True, idempotency_key: str | None = None
) -> Call[GeneratorInfo | JobAccepted]:
    """``POST /v1/generators`` from the SDK's keyword arguments (``points`` or ``release_id``,
    ``weights``, ``source``, ``epsilon``, ``method``, ``fit``, ``seed``); NumPy arrays become
    lists. A ``dataset_id`` is refused here, before sending (a generator never reads a
    dataset's records). ``wait=False`` asks for a job. A fit starts work: one
    ``Idempotency-Key`` across its retries."""
    values = {key: plain(value) for key, value in fields.items()}
    body = build(GeneratorCreate, **values, run_async=None if wait else True)
    return _work("/v1/generators", body, GeneratorInfo, idempotency_key)


def sample_generator(
    generator_id: str, n: int, seed: int, idempotency_key: str | None = None
) -> Call[GeneratorSamples | JobAccepted]:
    """``POST /v1/generators/{id}/samples``: ``n`` samples drawn with ``seed`` (the same seed,
    the same samples), with an ``Idempotency-Key`` like every work-starting POST."""
    body = build(GeneratorSampleRequest, n=plain(n), seed=plain(seed))
    path = f"/v1/generators/{_segment(generator_id)}/samples"
    return _work(path, body, GeneratorSamples, idempotency_key)


def list_generators(limit: int | None, cursor: str | None) -> Call[Page[GeneratorInfo]]:
    return _list_call("/v1/generators", GeneratorInfo, limit, cursor)


def get_generator(generator_id: str) -> Call[GeneratorInfo]:
    path = f"/v1/generators/{_segment(generator_id)}"
    return Call("GET", path, _model(GeneratorInfo), replay_safe=True)


def delete_generator(generator_id: str) -> Call[None]:
    path = f"/v1/generators/{_segment(generator_id)}"
    return Call("DELETE", path, lambda _s, _d: None, replay_safe=True)


def get_release(release_id: str) -> Call[Release]:
    return Call("GET", f"/v1/releases/{_segment(release_id)}", _model(Release), replay_safe=True)


def get_job(job_id: str) -> Call[JobInfo]:
    return Call("GET", f"/v1/jobs/{_segment(job_id)}", _model(JobInfo), replay_safe=True)


def cancel_job(job_id: str) -> Call[JobInfo]:
    return Call("DELETE", f"/v1/jobs/{_segment(job_id)}", _model(JobInfo), replay_safe=True)


def readyz() -> Call[bool]:
    """``GET /readyz``: 200 -> True (503 is raised as a ``not_ready`` problem)."""
    return Call("GET", "/readyz", lambda status, _d: status == 200, max_attempts=1)


# --- arguments to request bodies, answers to results ----------------------------------------


def configure(
    base_url: str | None, api_key: str | None, environ: Mapping[str, str]
) -> tuple[str, str | None]:
    """Base URL and API key: the arguments, else ``PRIVFLOW_URL`` / ``PRIVFLOW_API_KEY``, else
    ``http://127.0.0.1:8000`` and no key (only health endpoints answer without one)."""
    url = base_url or environ.get("PRIVFLOW_URL") or DEFAULT_URL
    key = api_key or environ.get("PRIVFLOW_API_KEY") or None
    return url.rstrip("/"), key


def records_list(records: Any) -> Any:
    """Records as JSON-ready lists (a NumPy array is converted with ``tolist``)."""
    if isinstance(records, np.ndarray):
        return records.tolist()
    return [row.tolist() if isinstance(row, np.ndarray) else list(row) for row in records]


def plain(value: Any) -> Any:
    """``value`` ready for JSON: NumPy arrays and scalars become lists and numbers, all the way
    down through lists, tuples and dicts (anything else is left to the request model)."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    return value


def weighted(cloud: Any, weights: Any = None) -> Any:
    """A weighted point cloud of a memory request: ``{"points", "weights"}`` (a mapping or a
    ``WeightedPoints``, taken as it is), or points — a 2-D array or a list of rows — with
    ``weights`` (``None``: uniform)."""
    if isinstance(cloud, BaseModel | Mapping):
        if weights is not None:
            raise InvalidRequest(
                "Give weights inside the weighted cloud or as weights=, not both",
                errors=[{"field": "weights", "message": "given twice"}],
            )
        return plain(cloud) if isinstance(cloud, Mapping) else cloud
    return {"points": plain(cloud), "weights": plain(weights)}


def sample_request(
    utility: Any,
    epsilon: float,
    *,
    delta: float | None,
    n_samples: int | None,
    method: str | None,
    sampler: Any,
    run_async: bool | None = None,
) -> SampleRequest:
    """The validated body of ``POST /v1/datasets/{id}/samples``."""
    return build(
        SampleRequest,
        utility=utility,
        epsilon=epsilon,
        delta=delta,
        n_samples=n_samples,
        method=method,
        sampler=sampler,
        run_async=run_async,
    )


def expect_release(result: Release | JobAccepted) -> Release:
    if not isinstance(result, Release):
        raise PrivflowError("Expected a release, got a job", code="unexpected_response")
    return result


def expect_answer(result: T | JobAccepted) -> T:
    """The answer of work that was asked to run synchronously (never a 202 job)."""
    if isinstance(result, JobAccepted):
        raise PrivflowError("Expected an answer, got a job", code="unexpected_response")
    return result


def expect_job(result: T | JobAccepted) -> JobAccepted:
    if not isinstance(result, JobAccepted):
        raise PrivflowError(
            f"Expected a job, got {type(result).__name__}", code="unexpected_response"
        )
    return result


def job_output(job: JobInfo, model: type[M]) -> M:
    """What a finished job produced as ``model`` (``Release``, ``FlowResult``, ``Retrieval``),
    or the error it ended with."""
    if job.status == "succeeded" and job.result is not None:
        try:
            return model.model_validate(job.result)
        except ValidationError as exc:
            raise PrivflowError(
                f"Job {job.id} ({job.kind}) did not produce a {model.__name__}",
                code="unexpected_response",
            ) from exc
    if job.status in ("failed", "cancelled"):
        # A job cancelled while still queued ends with no error body: say what happened.
        status = 409 if job.status == "cancelled" else 500
        code = "cancelled" if job.status == "cancelled" else "internal"
        problem = job.error.model_dump() if job.error is not None else {
            "status": status, "code": code, "detail": f"Job {job.id} was {job.status}.",
        }  # fmt: skip
        raise error_for(int(problem.get("status") or status), problem)
    raise PrivflowError(f"Job {job.id} has not finished ({job.status})", code="job_not_finished")


def job_release(job: JobInfo) -> Release:
    """The release a finished release job produced, or the error it ended with."""
    return job_output(job, Release)


def poll_sleep(poll_interval: float, remaining: float | None) -> float:
    """How long to sleep before the next job poll, never past the deadline."""
    return poll_interval if remaining is None else max(0.0, min(poll_interval, remaining))
