"""API.md's generators through the SDK: request bodies and retries on a mock transport, then
against a real ``privflow serve`` a fit on public points (same seed -> identical arrays), a fit
on a release (charges nothing, carries its certificate), a ``dataset_id`` refused before sending
and by the service, list/get/delete, jobs and the asyncio client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from privflow_client import (
    AsyncClient,
    AsyncJob,
    Client,
    Dataset,
    Generator,
    GeneratorInfo,
    InvalidRequest,
    Job,
    KeyCreated,
    NotFound,
    RetryPolicy,
)
from privflow_client import _wire as wire

from tests.client.conftest import Server
from tests.client.test_wire import _scripted

MakeAnalyst = Callable[..., tuple[KeyCreated, Client]]
FAST = RetryPolicy(backoff=0.01, max_backoff=0.05)
FAST_FIT = {"samples": 4096, "max_steps": 400, "tolerance": 0.05}


def _ring(n: int = 60, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    radius = 2.0 + rng.normal(scale=0.1, size=n)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


INFO: dict[str, Any] = {
    "generator_id": "gen_1", "n_points": 2, "dim": 2, "epsilon": 0.003, "method": "smoothed",
    "source": "uniform", "charged": {"epsilon": 0.0, "delta": 0.0},
    "fit": {"steps": 10, "converged": True, "energy": 0.1, "max_rel_mass_error": 0.01,
            "seconds": 0.1},
    "provenance": {"kind": "points"}, "created_at": "2024-01-01T00:00:00Z",
}  # fmt: skip


# --- request bodies and retries, no service --------------------------------------------------


def test_generator_bodies_are_plain_json_and_a_dataset_id_is_refused_before_sending() -> None:
    call = wire.fit_generator(
        {"points": np.zeros((2, 2), dtype=np.float32), "weights": np.full(2, 0.5),
         "epsilon": np.float64(0.01), "fit": FAST_FIT, "seed": np.int64(3)},
        wait=False,
    )  # fmt: skip
    assert call.method == "POST" and call.path == "/v1/generators"
    assert call.body == {
        "points": [[0.0, 0.0], [0.0, 0.0]], "weights": [0.5, 0.5], "epsilon": 0.01,
        "fit": FAST_FIT, "seed": 3, "async": True,
    }  # fmt: skip
    assert call.replay_safe and call.idempotency_key is not None
    assert wire.fit_generator({"release_id": "rel_1"}).body == {"release_id": "rel_1"}

    sample = wire.sample_generator("gen/1", np.int64(5), 7, idempotency_key="k")
    assert sample.path == "/v1/generators/gen%2F1/samples" and sample.body == {"n": 5, "seed": 7}
    assert sample.replay_safe and sample.idempotency_key == "k"
    assert wire.delete_generator("gen_1").replay_safe
    assert wire.list_generators(5, "c").params == {"limit": 5, "cursor": "c"}

    client = Client("http://svc", transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    with client, pytest.raises(InvalidRequest) as raised:
        client.generators.fit(dataset_id="ds_1")  # type: ignore[call-arg]
    assert raised.value.status is None  # nothing was sent
    assert [e["field"] for e in raised.value.errors] == ["dataset_id"]
    with pytest.raises(InvalidRequest, match="method"):
        wire.fit_generator({"points": [[0.0]], "method": "top2"})


def test_a_fit_is_resent_with_one_idempotency_key_and_samples_come_back_as_arrays() -> None:
    seen, handler = _scripted(
        [httpx.Response(503), httpx.ReadError("reset"), httpx.Response(201, json=INFO)]
    )
    with Client("http://svc", retry=FAST, transport=httpx.MockTransport(handler)) as client:
        generator = client.generators.fit([[0.0, 0.0], [1.0, 1.0]], fit=FAST_FIT, seed=1)
        assert isinstance(generator, Generator) and generator.generator_id == "gen_1"
        assert generator.info.fit.converged and generator.info.charged.epsilon == 0.0
        assert "gen_1" in repr(generator)
    assert len(seen) == 3 and len({r.headers["Idempotency-Key"] for r in seen}) == 1
    assert json.loads(seen[0].content)["fit"] == FAST_FIT

    answer = {"generator_id": "gen_1", "seed": 4, "samples": [[0.5, 1.0], [2.0, 3.0]]}
    seen, handler = _scripted([httpx.Response(502), httpx.Response(200, json=answer)])
    with Client("http://svc", retry=FAST, transport=httpx.MockTransport(handler)) as client:
        samples = client.generators.bind(GeneratorInfo.model_validate(INFO)).sample(2, 4)
    assert samples.dtype == np.float64 and samples.tolist() == answer["samples"]
    assert len({r.headers["Idempotency-Key"] for r in seen}) == 1


# --- against the service ----------------------------------------------------------------------


def test_a_generator_fitted_on_points_samples_reproducibly(admin: Client) -> None:
    points = _ring()
    generator = admin.generators.fit(points, fit=FAST_FIT, seed=2)
    info = generator.info
    assert (info.n_points, info.dim, info.epsilon, info.method) == (60, 2, 0.003, "smoothed")
    assert info.source == "uniform" and info.provenance.kind == "points"
    assert (info.charged.epsilon, info.charged.delta) == (0.0, 0.0)
    assert info.fit.steps >= 1 and info.fit.max_rel_mass_error >= 0.0

    samples = generator.sample(500, seed=11)
    assert samples.shape == (500, 2) and samples.dtype == np.float64
    assert np.all(np.isfinite(samples))
    radius = np.linalg.norm(samples, axis=1)
    assert 1.5 < np.median(radius) < 2.5  # the samples follow the ring
    again = admin.generators.sample(generator.generator_id, 500, 11)
    assert np.array_equal(again, samples)  # same seed, identical array
    assert not np.array_equal(generator.sample(500, seed=12), samples)

    by_id = admin.generators.get(generator.generator_id)
    assert by_id.info == info
    listed = {g.generator_id: g for g in admin.generators.list(page_size=1)}
    assert listed[generator.generator_id] == info

    hard = admin.generators.fit(points.tolist(), epsilon=0.0, method="aeot_top2", fit=FAST_FIT)
    assert (hard.info.epsilon, hard.info.method) == (0.0, "aeot_top2")
    assert hard.sample(10, 0).shape == (10, 2)


def test_a_generator_fitted_on_a_release_charges_nothing_and_carries_its_certificate(
    make_dataset: Callable[..., Dataset], make_analyst: MakeAnalyst, admin: Client
) -> None:
    dataset = make_dataset(epsilon=3.0)
    _, analyst = make_analyst(dataset.id)
    release = analyst.releases.create(
        dataset.id, {"family": "quantile", "column": "age", "q": 0.5}, epsilon=1.0,
        n_samples=20, method="exact",
    )  # fmt: skip
    spent = admin.datasets.budget(dataset.id).spent.epsilon
    generator = analyst.generators.fit(release_id=release.release_id, fit=FAST_FIT, seed=1)
    info = generator.info
    assert (info.n_points, info.dim) == (20, 1)
    assert (info.charged.epsilon, info.charged.delta) == (0.0, 0.0)
    provenance = info.provenance
    assert provenance.kind == "release" and provenance.release_id == release.release_id
    assert provenance.dataset_id == dataset.id and provenance.certificate == release.certificate
    assert admin.datasets.budget(dataset.id).spent.epsilon == spent  # nothing charged
    samples = generator.sample(50, seed=3)
    assert samples.shape == (50, 1) and np.all((samples > -10.0) & (samples < 110.0))

    with pytest.raises(InvalidRequest) as raised:  # both, or neither, of points and release_id
        analyst.generators.fit(_ring(), release_id=release.release_id)
    assert raised.value.status == 422 and raised.value.errors[0]["field"] == "points"
    _, stranger = make_analyst()
    with pytest.raises(NotFound):  # a release the key may not read
        stranger.generators.fit(release_id=release.release_id, fit=FAST_FIT)


def test_a_dataset_id_is_refused_by_the_service_too(
    server: Server, make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset()
    answer = httpx.post(
        f"{server.url}/v1/generators",
        json={"dataset_id": dataset.id, "fit": FAST_FIT},
        headers={"Authorization": f"Bearer {server.admin_key}"},
    )
    assert answer.status_code == 422
    assert "dataset_id" in [e["field"] for e in answer.json()["errors"]]


def test_delete_makes_a_generator_not_found_and_other_keys_never_see_it(
    admin: Client, make_analyst: MakeAnalyst
) -> None:
    _, analyst = make_analyst()
    generator = analyst.generators.fit(_ring(20, seed=1), fit=FAST_FIT)
    with pytest.raises(NotFound):
        make_analyst()[1].generators.get(generator.generator_id)
    assert admin.generators.get(generator.generator_id).info == generator.info  # admins see all
    assert generator.delete() is None
    for call in (
        lambda: analyst.generators.get(generator.generator_id),
        lambda: generator.sample(5, seed=0),
        lambda: analyst.generators.delete(generator.generator_id),
    ):
        with pytest.raises(NotFound):
            call()
    assert generator.generator_id not in {g.generator_id for g in analyst.generators.list()}


def test_a_fit_job_yields_the_same_generator_as_a_synchronous_fit(admin: Client) -> None:
    points = _ring(40, seed=3)
    synchronous = admin.generators.fit(points, fit=FAST_FIT, seed=5)
    job = admin.generators.submit_fit(points, fit=FAST_FIT, seed=5)
    assert isinstance(job, Job) and job.kind == "generator_fit"
    generator = job.generator(timeout=120)
    assert isinstance(generator, Generator) and generator.generator_id != synchronous.generator_id
    assert np.array_equal(generator.sample(100, 1), synchronous.sample(100, 1))


def test_the_async_client_fits_samples_lists_and_deletes(server: Server, admin: Client) -> None:
    points = _ring(30, seed=4)
    synchronous = admin.generators.fit(points, fit=FAST_FIT, seed=6)
    expected = synchronous.sample(64, 9)

    async def scenario() -> None:
        async with AsyncClient(server.url, server.admin_key) as client:
            generator = await client.generators.fit(points, fit=FAST_FIT, seed=6)
            assert isinstance(generator, Generator) and generator.info.n_points == 30
            runs = await asyncio.gather(*(generator.sample(64, 9) for _ in range(3)))
            for run in runs:
                assert np.array_equal(run, expected)
            by_id = await client.generators.sample(synchronous.generator_id, 64, 9)
            assert np.array_equal(by_id, expected)
            assert (await client.generators.get(generator.generator_id)).info == generator.info
            listed = await client.generators.list().collect()
            assert generator.generator_id in {g.generator_id for g in listed}

            job = await client.generators.submit_fit(points, fit=FAST_FIT, seed=6)
            assert isinstance(job, AsyncJob) and job.kind == "generator_fit"
            from_job = await job.generator(timeout=120)
            assert np.array_equal(await from_job.sample(64, 9), expected)

            await generator.delete()
            with pytest.raises(NotFound):
                await client.generators.get(generator.generator_id)
            with pytest.raises(InvalidRequest) as raised:
                await client.generators.fit(dataset_id="ds_1")  # type: ignore[call-arg]
            assert raised.value.status is None

    asyncio.run(scenario())
