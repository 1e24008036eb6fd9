"""The asyncio client: ``AsyncClient``, its resources, ``AsyncJob`` handles, ``AsyncPaginator``.

The same thin loop as :mod:`privflow_client._client` over the same pure
:mod:`privflow_client._wire` and the same flow and memory fronts
(:mod:`privflow_client._flows`), with ``await`` where that one blocks. One ``AsyncClient`` serves
many concurrent tasks (``asyncio.gather``); each call keeps its own ``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import httpx
import numpy as np
from pydantic import PrivateAttr

from privflow_client import _wire as wire
from privflow_client._client import DEFAULT_TIMEOUT
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

__all__ = [
    "AsyncClient",
    "AsyncFlows",
    "AsyncGenerator",
    "AsyncGenerators",
    "AsyncJob",
    "AsyncMemories",
    "AsyncMemory",
    "AsyncPaginator",
]

T = TypeVar("T")


class AsyncPaginator(Generic[T]):
    """Every item of a paginated list (``async for``), fetching pages as it goes."""

    def __init__(
        self,
        send: Callable[[wire.Call[Page[T]]], Awaitable[Page[T]]],
        call: Callable[[str | None], Any],
    ) -> None:
        self._send = send
        self._call = call

    async def pages(self) -> AsyncIterator[Page[T]]:
        """Each page in turn, until one has no ``next_cursor``."""
        cursor: str | None = None
        while True:
            page = await self._send(self._call(cursor))
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def __aiter__(self) -> AsyncIterator[T]:
        async for page in self.pages():
            for item in page.items:
                yield item

    async def collect(self) -> list[T]:
        """All items in a list."""
        return [item async for item in self]


class AsyncJob(JobInfo):
    """A job bound to the ``AsyncClient`` that fetched it (see :class:`privflow_client.Job`)."""

    _client: AsyncClient | None = PrivateAttr(default=None)

    def _bound(self) -> AsyncClient:
        if self._client is None:
            raise PrivflowError("This job is not bound to a client", code="unbound_job")
        return self._client

    async def refresh(self) -> AsyncJob:
        """The job's current state (a new object)."""
        fresh = await self._bound().jobs.get(self.id)
        if fresh.release_id is None and self.release_id is not None:
            fresh.release_id = self.release_id
        return fresh

    async def wait(
        self, timeout: float | None = None, *, progress: bool = False, poll_interval: float = 0.5
    ) -> AsyncJob:
        """Poll until the job finishes and return its final state; ``JobTimeout`` after
        ``timeout`` seconds; ``progress=True`` draws a bar on stderr."""
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
                await asyncio.sleep(wire.poll_sleep(poll_interval, remaining))
                job = await job.refresh()
        finally:
            if bar is not None:
                bar.close()

    async def release(self, timeout: float | None = None, *, progress: bool = False) -> Release:
        """Wait for a release job and return its release, or raise the error it ended with."""
        return wire.job_release(await self.wait(timeout, progress=progress))

    async def flow(self, timeout: float | None = None, *, progress: bool = False) -> FlowResult:
        """Wait for a flow job and return its result, or raise the error it ended with."""
        return wire.job_output(await self.wait(timeout, progress=progress), FlowResult)

    async def retrieval(self, timeout: float | None = None, *, progress: bool = False) -> Retrieval:
        """Wait for a retrieval job and return its result, or raise the error it ended with."""
        return wire.job_output(await self.wait(timeout, progress=progress), Retrieval)

    async def generator(
        self, timeout: float | None = None, *, progress: bool = False
    ) -> AsyncGenerator:
        """Wait for a generator fit and return the generator, or raise the error it ended with."""
        info = wire.job_output(await self.wait(timeout, progress=progress), GeneratorInfo)
        return self._bound().generators.bind(info)

    async def cancel(self) -> AsyncJob:
        """Ask the service to stop the job; its charge stays spent."""
        return await self._bound().jobs.cancel(self.id)


class AsyncClient:
    """An asyncio privflow client; the parameters are those of :class:`privflow_client.Client`
    (``transport`` is an ``httpx.AsyncBaseTransport``)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: wire.RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url, self._api_key = wire.configure(base_url, api_key, os.environ)
        self.retry = retry or wire.RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": wire.USER_AGENT},
        )
        self._random = random.Random()
        self.keys = AsyncKeys(self)
        self.datasets = AsyncDatasets(self)
        self.releases = AsyncReleases(self)
        self.jobs = AsyncJobs(self)
        self.flows = AsyncFlows(self)
        self.memories = AsyncMemories(self)
        self.generators = AsyncGenerators(self)

    def __repr__(self) -> str:
        return f"AsyncClient({self.base_url!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def send(self, call: wire.Call[T]) -> T:
        """Send ``call``, retrying as the policy allows; its result or a ``PrivflowError``."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
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
            await asyncio.sleep(delay)

    async def ready(self) -> bool:
        """Whether ``/readyz`` answers 200; one attempt."""
        try:
            return await self.send(wire.readyz())
        except PrivflowError:
            return False


class _AsyncResource:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def _start(self, call: wire.Call[Any], wait: bool) -> Any:
        """Send work: its answer when ``wait``, else the :class:`AsyncJob` it became."""
        answer = await self._client.send(call)
        if wait:
            return wire.expect_answer(answer)
        return await self._client.jobs.get(wire.expect_job(answer).job_id)

    async def _call(self, call: wire.Call[Any], then: Callable[[Any], T]) -> T:
        return then(await self._client.send(call))

    def _paginate(self, make: Callable[[str | None], wire.Call[Page[Any]]]) -> AsyncPaginator[Any]:
        return AsyncPaginator(self._client.send, make)


class AsyncKeys(_AsyncResource):
    """``/v1/keys`` (admin)."""

    async def create(self, name: str, role: Role = "analyst") -> KeyCreated:
        return await self._client.send(wire.create_key(name, role))

    def list(self, *, page_size: int | None = None) -> AsyncPaginator[Key]:
        return AsyncPaginator(self._client.send, lambda c: wire.list_keys(page_size, c))

    async def revoke(self, key_id: str) -> None:
        await self._client.send(wire.revoke_key(key_id))


class AsyncDatasets(_AsyncResource):
    """``/v1/datasets``: register (admin), read, grant, ledger."""

    async def create(
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
        return await self._client.send(
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

    def list(self, *, page_size: int | None = None) -> AsyncPaginator[Dataset]:
        return AsyncPaginator(self._client.send, lambda c: wire.list_datasets(page_size, c))

    async def get(self, dataset_id: str) -> Dataset:
        return await self._client.send(wire.get_dataset(dataset_id))

    async def budget(self, dataset_id: str) -> Budget:
        return (await self.get(dataset_id)).budget

    async def grant(
        self,
        dataset_id: str,
        key_id: str,
        *,
        epsilon_cap: float | None = None,
        delta_cap: float | None = None,
    ) -> Grant:
        return await self._client.send(wire.grant(dataset_id, key_id, epsilon_cap, delta_cap))

    def ledger(
        self, dataset_id: str, *, page_size: int | None = None
    ) -> AsyncPaginator[LedgerEntry]:
        return AsyncPaginator(
            self._client.send, lambda c: wire.list_ledger(dataset_id, page_size, c)
        )


class AsyncReleases(_AsyncResource):
    """Private releases (see :class:`privflow_client._client.Releases`)."""

    async def create(
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
        body = wire.sample_request(
            utility, epsilon, delta=delta, n_samples=n_samples, method=method, sampler=sampler
        )
        call = wire.create_release(dataset_id, body, idempotency_key)
        return wire.expect_release(await self._client.send(call))

    async def submit(
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
    ) -> AsyncJob:
        body = wire.sample_request(
            utility,
            epsilon,
            delta=delta,
            n_samples=n_samples,
            method=method,
            sampler=sampler,
            run_async=True,
        )
        call = wire.create_release(dataset_id, body, idempotency_key)
        accepted = wire.expect_job(await self._client.send(call))
        job = await self._client.jobs.get(accepted.job_id)
        job.release_id = accepted.release_id
        return job

    async def get(self, release_id: str) -> Release:
        return await self._client.send(wire.get_release(release_id))


class AsyncJobs(_AsyncResource):
    """``/v1/jobs/{id}``."""

    async def get(self, job_id: str) -> AsyncJob:
        return self._bind(await self._client.send(wire.get_job(job_id)))

    async def cancel(self, job_id: str) -> AsyncJob:
        return self._bind(await self._client.send(wire.cancel_job(job_id)))

    def _bind(self, info: JobInfo) -> AsyncJob:
        job = AsyncJob.model_validate(info.model_dump())
        if job.release_id is None and job.result is not None:
            job.release_id = job.result.get("release_id")
        job._client = self._client
        return job


AsyncMemory = Memory[Awaitable[Retrieval], Awaitable[AsyncJob]]
"""A memory bound to an ``AsyncClient``: ``await memory.retrieve(query)``."""


class AsyncFlows(_AsyncResource, FlowsAPI[Awaitable[FlowResult], Awaitable[AsyncJob]]):
    """``/v1/flows/*``: ``await client.flows.mmd(...)`` (see ``_flows.FlowsAPI``)."""


class AsyncMemories(
    _AsyncResource,
    MemoriesAPI[Awaitable[AsyncMemory], Awaitable[Retrieval], Awaitable[AsyncJob]],
):
    """``/v1/memories``: ``await client.memories.create(...)`` (see ``_flows.MemoriesAPI``)."""

    async def _create(self, call: wire.Call[MemoryCreated]) -> AsyncMemory:
        return Memory(await self._client.send(call), self)


AsyncGenerator = Generator[Awaitable[np.ndarray], Awaitable[None]]
"""A generator bound to an ``AsyncClient``: ``await generator.sample(n, seed)``."""


class AsyncGenerators(
    _AsyncResource,
    GeneratorsAPI[
        Awaitable[AsyncGenerator],
        Awaitable[np.ndarray],
        AsyncPaginator[GeneratorInfo],
        Awaitable[None],
        Awaitable[AsyncJob],
    ],
):
    """``/v1/generators``: ``await client.generators.fit(...)`` (see
    ``_flows.GeneratorsAPI``)."""
