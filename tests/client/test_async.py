"""The asyncio client on a real service: concurrent releases never overspend, pagination, jobs
and errors behave as in the synchronous client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest
from privflow_client import (
    AsyncClient,
    AsyncJob,
    BudgetExceeded,
    Client,
    Dataset,
    KeyCreated,
    NotFound,
    Release,
)

from tests.client.conftest import Server

MEDIAN = {"family": "quantile", "column": "age", "q": 0.5}
MakeAnalyst = Callable[..., tuple[KeyCreated, Client]]


def test_twenty_concurrent_releases_on_a_budget_for_ten_give_ten_and_ten_refusals(
    server: Server,
    admin: Client,
    make_dataset: Callable[..., Dataset],
    make_analyst: MakeAnalyst,
) -> None:
    dataset = make_dataset(epsilon=5.0)
    key, _ = make_analyst(dataset.id)

    async def race() -> list[Release | BaseException]:
        async with AsyncClient(server.url, key.key) as client:
            requests = [
                client.releases.create(dataset.id, MEDIAN, epsilon=0.5, method="exact")
                for _ in range(20)
            ]
            return await asyncio.gather(*requests, return_exceptions=True)

    outcomes = asyncio.run(race())
    released = [o for o in outcomes if isinstance(o, Release)]
    refused = [o for o in outcomes if isinstance(o, BudgetExceeded)]
    assert (len(released), len(refused)) == (10, 10), [type(o).__name__ for o in outcomes]

    budget = admin.datasets.budget(dataset.id)
    assert budget.spent.epsilon == pytest.approx(5.0) and budget.remaining.epsilon <= 1e-9
    ledger = list(admin.datasets.ledger(dataset.id, page_size=3))
    assert sorted(e.release_id for e in ledger) == sorted(r.release_id for r in released)
    assert all(e.status == "succeeded" and e.key_id == key.id for e in ledger)


def test_async_pagination_jobs_and_errors(
    server: Server, make_dataset: Callable[..., Dataset]
) -> None:
    made = {make_dataset(epsilon=1.0).id for _ in range(3)}

    async def scenario() -> None:
        async with AsyncClient(server.url, server.admin_key) as client:
            assert await client.ready()
            listed = [d.id async for d in client.datasets.list(page_size=1)]
            assert made <= set(listed) and len(listed) == len(set(listed))
            keys = await client.keys.list(page_size=1).collect()
            assert keys[0].id == "key_admin"

            dataset_id = sorted(made)[0]
            job = await client.releases.submit(
                dataset_id,
                {"family": "mode", "column": "city"},
                epsilon=0.4,
                n_samples=2,
                method="exact",
            )
            assert isinstance(job, AsyncJob)
            release = await job.release(timeout=60)
            assert release.release_id == job.release_id
            assert release.samples_array.dtype == object
            assert (await client.jobs.get(job.id)).status == "succeeded"
            assert (await client.datasets.budget(dataset_id)).spent.epsilon == pytest.approx(0.4)
            [entry] = await client.datasets.ledger(dataset_id).collect()
            assert entry.release_id == release.release_id
            fetched = await client.releases.get(release.release_id)
            assert np.array_equal(fetched.samples_array, release.samples_array)

            key = await client.keys.create("short-lived")
            grant = await client.datasets.grant(dataset_id, key.id, epsilon_cap=0.1)
            assert grant.epsilon_cap == 0.1
            await client.keys.revoke(key.id)
            with pytest.raises(NotFound):
                await client.datasets.get("ds_missing")
            with pytest.raises(BudgetExceeded):
                await client.releases.create(dataset_id, MEDIAN, epsilon=5.0, method="exact")

    asyncio.run(scenario())
