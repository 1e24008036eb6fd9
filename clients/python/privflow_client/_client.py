"""The synchronous client: ``Client``, its resources, ``Job`` handles and ``Paginator``.

A thin I/O loop over :mod:`privflow_client._wire`: every method builds a ``Call`` there, and
:meth:`Client.send` sends it, sleeping and resending as ``_wire.retry_delay`` decides. Flows,
memories and generators are the shared fronts of :mod:`privflow_client._flows` with a blocking
``_start``.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

import httpx
import numpy as np
from pydantic import PrivateAttr

from privflow_client import _wire as wire
from privflow_client._errors import JobTimeout, PrivflowError
from privflow_client._flows import FlowsAPI, Generator, GeneratorsAPI, MemoriesAPI, Memory
from privflow_client._models import (
    Budget,
    Column,
    Dataset,
    FlowResult,
    GeneratorInfo,
    Grant,
    JobInfo,
    Key,
    KeyCreated,
    LedgerEntry,
    MemoryCreated,
    Page,
    Release,
    Retrieval,
    Role,
    SamplerParams,
    Utility,
)
from privflow_client._progress import ProgressBar

__all__ = ["Client", "Flows", "Generators", "Job", "Memories", "Paginator"]

T = TypeVar("T")
DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
"""Releases answer when their samples are ready, so reads may take minutes."""


class Paginator(Generic[T]):
    """Every item of a paginated list, fetching pages (``limit``/``cursor``) as it goes."""

    def __init__(
        self, send: Callable[[wire.Call[Page[T]]], Page[T]], call: Callable[[str | None], Any]
    ) -> None:
        self._send = send
        self._call = call

    def pages(self) -> Iterator[Page[T]]:
        """Each page in turn, until one has no ``next_cursor``."""
        cursor: str | None = None
        while True:
            page = self._send(self._call(cursor))
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page.items


class Job(JobInfo):
    """A job bound to the client that fetched it: refresh, wait, cancel, get its release (or
    its flow result, its retrieval, or the generator it fitted)."""

    _client: Client | None = PrivateAttr(default=None)

    def _bound(self) -> Client:
        if self._client is None:
            raise PrivflowError("This job is not bound to a client", code="unbound_job")
        return self._client

    def refresh(self) -> Job:
        """The job's current state (a new object; this one is left as it was)."""
        fresh = self._bound().jobs.get(self.id)
        if fresh.release_id is None and self.release_id is not None:
            fresh.release_id = self.release_id
        return fresh

    def wait(
        self, timeout: float | None = None, *, progress: bool = False, poll_interval: float = 0.5
    ) -> Job:
        """Poll until the job finishes and return its final state (whatever the status).

        ``progress=True`` draws a progress bar on stderr. Raises :class:`JobTimeout` after
        ``timeout`` seconds (the job goes on; cancel it to stop it).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = ProgressBar(f"job {self.id}") if progress else None
        job = self
        try:
            while True:
                if bar is not None:
                    bar.update(
                        1.0 if job.status == "succeeded" else job.progress,
                        job.status,
                        None if job.work is None else job.work.estimated_seconds,
                    )
                if job.finished:
                    return job
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise JobTimeout(f"Job {self.id} still {job.status} after {timeout} s")
                time.sleep(wire.poll_sleep(poll_interval, remaining))
                job = job.refresh()
        finally:
            if bar is not None:
                bar.close()

    def release(self, timeout: float | None = None, *, progress: bool = False) -> Release:
        """Wait for a release job and return its :class:`Release`; a failed or cancelled job
        raises its error (``InternalError``, or code ``cancelled``)."""
        return wire.job_release(self.wait(timeout, progress=progress))

    def flow(self, timeout: float | None = None, *, progress: bool = False) -> FlowResult:
        """Wait for a flow job (``client.flows.submit_*``) and return its :class:`FlowResult`;
        a failed or cancelled job raises its error."""
        return wire.job_output(self.wait(timeout, progress=progress), FlowResult)

    def retrieval(self, timeout: float | None = None, *, progress: bool = False) -> Retrieval:
        """Wait for a retrieval job (``memory.submit``) and return its :class:`Retrieval`."""
        return wire.job_output(self.wait(timeout, progress=progress), Retrieval)

    def generator(
        self, timeout: float | None = None, *, progress: bool = False
    ) -> Generator[np.ndarray, None]:
        """Wait for a generator fit (``client.generators.submit_fit``) and return the
        :class:`Generator`; a failed or cancelled fit raises its error."""
        info = wire.job_output(self.wait(timeout, progress=progress), GeneratorInfo)
        return self._bound().generators.bind(info)

    def cancel(self) -> Job:
        """Ask the service to stop the job; its charge stays spent."""
        return self._bound().jobs.cancel(self.id)


class Client:
    """A synchronous privflow client.

    Parameters
    ----------
    base_url
        The service's URL; default ``PRIVFLOW_URL``, else ``http://127.0.0.1:8000``.
    api_key
        The API key; default ``PRIVFLOW_API_KEY``.
    timeout
        Seconds (or an ``httpx.Timeout``) per attempt; releases answer when sampled.
    retry
        When to resend (``RetryPolicy()``: 5 attempts, capped exponential backoff).
    transport
        An ``httpx`` transport, e.g. ``httpx.MockTransport`` in tests.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: wire.RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url, self._api_key = wire.configure(base_url, api_key, os.environ)
        self.retry = retry or wire.RetryPolicy()
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": wire.USER_AGENT},
        )
        self._random = random.Random()
        self.keys = Keys(self)
        self.datasets = Datasets(self)
        self.releases = Releases(self)
        self.jobs = Jobs(self)
        self.flows = Flows(self)
        self.memories = Memories(self)
        self.generators = Generators(self)

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def send(self, call: wire.Call[T]) -> T:
        """Send ``call``, retrying as the policy allows; its result or a ``PrivflowError``."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.body,
                    headers=call.headers(self._api_key),
                )
            except httpx.TransportError as exc:
                delay = wire.retry_delay(
                    call, attempt, self.retry, error=exc, jitter=self._random.random()
                )
                if delay is None:
                    raise wire.connection_failed(call, exc) from exc
            else:
                delay = wire.retry_delay(
                    call,
                    attempt,
                    self.retry,
                    status=response.status_code,
                    retry_after=wire.parse_retry_after(response.headers.get("retry-after")),
                    jitter=self._random.random(),
                )
                if delay is None:
                    return wire.parse(
                        call, response.status_code, response.headers, response.content
                    )
            time.sleep(delay)

    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200 (database up, kernels compiled); one attempt."""
        try:
            return self.send(wire.readyz())
        except PrivflowError:
            return False


class _Resource:
    def __init__(self, client: Client) -> None:
        self._client = client

    def _start(self, call: wire.Call[Any], wait: bool) -> Any:
        """Send work: its answer when ``wait``, else the :class:`Job` it became."""
        answer = self._client.send(call)
        if wait:
            return wire.expect_answer(answer)
        return self._client.jobs.get(wire.expect_job(answer).job_id)

    def _call(self, call: wire.Call[Any], then: Callable[[Any], T]) -> T:
        return then(self._client.send(call))

    def _paginate(self, make: Callable[[str | None], wire.Call[Page[Any]]]) -> Paginator[Any]:
        return Paginator(self._client.send, make)


class Keys(_Resource):
    """``/v1/keys`` (admin)."""

    def create(self, name: str, role: Role = "analyst") -> KeyCreated:
        """A new key; its secret ``key`` is shown only in this answer."""
        return self._client.send(wire.create_key(name, role))

    def list(self, *, page_size: int | None = None) -> Paginator[Key]:
        """Every key (never their secrets)."""
        return Paginator(self._client.send, lambda c: wire.list_keys(page_size, c))

    def revoke(self, key_id: str) -> None:
        """Revoke a key at once."""
        self._client.send(wire.revoke_key(key_id))


class Datasets(_Resource):
    """``/v1/datasets``: register (admin), read, grant, ledger."""

    def create(
        self,
        name: str,
        columns: Sequence[Column | Mapping[str, Any]],
        records: Sequence[Sequence[float | int | str]] | Any,
        *,
        epsilon: float,
        delta: float = 0.0,
        neighbouring: str | None = None,
        size_bound: int | None = None,
        accountant: str | None = None,
    ) -> Dataset:
        """Register ``records`` (rows in ``columns`` order; a 2-D array works) with a budget of
        (``epsilon``, ``delta``). Out-of-bounds values are refused with ``InvalidRequest``."""
        return self._client.send(
            wire.create_dataset(
                name,
                columns,
                records,
                epsilon=epsilon,
                delta=delta,
                neighbouring=neighbouring,
                size_bound=size_bound,
                accountant=accountant,
            )
        )

    def list(self, *, page_size: int | None = None) -> Paginator[Dataset]:
        """Every dataset this key may see."""
        return Paginator(self._client.send, lambda c: wire.list_datasets(page_size, c))

    def get(self, dataset_id: str) -> Dataset:
        return self._client.send(wire.get_dataset(dataset_id))

    def budget(self, dataset_id: str) -> Budget:
        """The dataset's budget: totals, ``spent`` and ``remaining``."""
        return self.get(dataset_id).budget

    def grant(
        self,
        dataset_id: str,
        key_id: str,
        *,
        epsilon_cap: float | None = None,
        delta_cap: float | None = None,
    ) -> Grant:
        """Let ``key_id`` release from the dataset, optionally capped (replaces older caps)."""
        return self._client.send(wire.grant(dataset_id, key_id, epsilon_cap, delta_cap))

    def ledger(self, dataset_id: str, *, page_size: int | None = None) -> Paginator[LedgerEntry]:
        """Every ledger entry of the dataset this key may see."""
        return Paginator(self._client.send, lambda c: wire.list_ledger(dataset_id, page_size, c))


class Releases(_Resource):
    """Private releases: ``POST /v1/datasets/{id}/samples`` and ``GET /v1/releases/{id}``."""

    def create(
        self,
        dataset_id: str,
        utility: Utility | Mapping[str, Any],
        *,
        epsilon: float,
        delta: float | None = None,
        n_samples: int | None = None,
        method: str | None = None,
        sampler: SamplerParams | Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Release:
        """Spend ``epsilon`` on ``n_samples`` samples of the exponential mechanism.

        Retries resend the same ``Idempotency-Key`` (a fresh uuid4 unless given), so the
        release is charged once however often it is sent. ``BudgetExceeded``: nothing spent.
        """
        body = wire.sample_request(
            utility, epsilon, delta=delta, n_samples=n_samples, method=method, sampler=sampler
        )
        call = wire.create_release(dataset_id, body, idempotency_key)
        return wire.expect_release(self._client.send(call))

    def submit(
        self,
        dataset_id: str,
        utility: Utility | Mapping[str, Any],
        *,
        epsilon: float,
        delta: float | None = None,
        n_samples: int | None = None,
        method: str | None = None,
        sampler: SamplerParams | Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """As :meth:`create` but as a job (``"async": true``): charged now, sampled in the
        background. ``job.wait()`` / ``job.release()`` get the outcome."""
        body = wire.sample_request(
            utility,
            epsilon,
            delta=delta,
            n_samples=n_samples,
            method=method,
            sampler=sampler,
            run_async=True,
        )
        accepted = wire.expect_job(
            self._client.send(wire.create_release(dataset_id, body, idempotency_key))
        )
        job = self._client.jobs.get(accepted.job_id)
        job.release_id = accepted.release_id
        return job

    def get(self, release_id: str) -> Release:
        """A stored release (samples and certificate are public outputs)."""
        return self._client.send(wire.get_release(release_id))


class Jobs(_Resource):
    """``/v1/jobs/{id}``."""

    def get(self, job_id: str) -> Job:
        return self._bind(self._client.send(wire.get_job(job_id)))

    def cancel(self, job_id: str) -> Job:
        """Cancel a job (idempotent; a finished job stays as it is; charges stay spent)."""
        return self._bind(self._client.send(wire.cancel_job(job_id)))

    def _bind(self, info: JobInfo) -> Job:
        job = Job.model_validate(info.model_dump())
        if job.release_id is None and job.result is not None:
            job.release_id = job.result.get("release_id")
        job._client = self._client
        return job


class Flows(_Resource, FlowsAPI[FlowResult, Job]):
    """``/v1/flows/*``: see :class:`privflow_client._flows.FlowsAPI`."""


class Memories(_Resource, MemoriesAPI[Memory[Retrieval, Job], Retrieval, Job]):
    """``/v1/memories``: see :class:`privflow_client._flows.MemoriesAPI`."""

    def _create(self, call: wire.Call[MemoryCreated]) -> Memory[Retrieval, Job]:
        return Memory(self._client.send(call), self)


class Generators(
    _Resource,
    GeneratorsAPI[Generator[np.ndarray, None], np.ndarray, Paginator[GeneratorInfo], None, Job],
):
    """``/v1/generators``: see :class:`privflow_client._flows.GeneratorsAPI`."""
