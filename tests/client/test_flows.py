"""API.md's flows and memories through the SDK: request bodies and retries on a mock transport,
then against a real ``privflow serve`` every endpoint, seeds reproducible through the SDK (same
seed -> identical arrays), jobs, field-naming errors, one Idempotency-Key across retries, and
the asyncio client."""

from __future__ import annotations

import asyncio
import itertools
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
    FlowResult,
    IdempotencyConflict,
    InvalidRequest,
    Job,
    JobAccepted,
    JobInfo,
    KeyCreated,
    Memory,
    NotFound,
    PrivflowError,
    Retrieval,
    RetryPolicy,
    StudentTeacherTask,
)
from privflow_client import _wire as wire

from tests.client._proxy import DroppingProxy
from tests.client.conftest import Server
from tests.client.test_wire import _scripted

MakeAnalyst = Callable[..., tuple[KeyCreated, Client]]
TASK = {"kind": "student_teacher", "input_dim": 6, "n_train": 100, "data_seed": 2}
MUON = {"task": TASK, "particles": 8, "steps": 30, "step_size": 0.01}
FAST = RetryPolicy(backoff=0.01, max_backoff=0.05)


def _clouds(seed: int = 0, n: int = 40, m: int = 50) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) + 1.5


def _patterns(seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(15, 2)) + 5.0 * k for k in range(3)]


def _noisy(pattern: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.permutation(pattern + rng.normal(scale=0.4, size=pattern.shape))


def _assert_same_run(a: FlowResult, b: FlowResult) -> None:
    assert np.array_equal(a.particles_array, b.particles_array)  # bit for bit
    assert a.trace == b.trace and a.seed == b.seed


# --- request bodies and retries, no service --------------------------------------------------

FLOW_ANSWER: dict[str, Any] = {
    "particles": [[0.5, 1.0]], "trace": [{"step": 0, "mmd2": 0.25}], "seconds": 0.01, "seed": 3,
}  # fmt: skip


def test_flow_and_memory_bodies_are_plain_json_with_the_api_names() -> None:
    call = wire.flow(
        "drmmd",
        {"source": np.ones((2, 2), dtype=np.float32), "target": [np.arange(2)],
         "bandwidth": np.float64(0.5), "lambda_": "adaptive", "seed": np.int64(9)},
        wait=False,
    )  # fmt: skip
    assert call.body == {
        "source": [[1.0, 1.0], [1.0, 1.0]], "target": [[0.0, 1.0]], "seed": 9, "async": True,
        "kernel": {"name": "gaussian", "bandwidth": 0.5}, "lambda": "adaptive",
    }  # fmt: skip
    assert call.replay_safe and call.idempotency_key is not None
    assert wire.flow("muon", {}, idempotency_key="mine").idempotency_key == "mine"
    assert wire.flow("muon", {}).body == {"task": {"kind": "student_teacher"}}

    retrieve = wire.retrieve("mem/1", np.zeros((1, 2)), {"weights": np.ones(1), "steps": 3})
    assert retrieve.path == "/v1/memories/mem%2F1/retrieve" and retrieve.replay_safe
    assert retrieve.body == {"query": {"points": [[0.0, 0.0]], "weights": [1.0]}, "steps": 3}
    create = wire.create_memory(np.zeros((2, 1, 2)), 0.5, None)
    assert create.body == {"patterns": [{"points": [[0.0, 0.0]]}] * 2, "blur": 0.5}
    assert create.replay_safe and create.idempotency_key is not None  # stored once on a resend
    assert wire.create_memory(np.zeros((1, 1, 2)), 0.5, None, "mine").idempotency_key == "mine"
    with pytest.raises(InvalidRequest, match="weights"):
        wire.retrieve("m", {"points": [[0.0]]}, {"weights": [1.0]})


def test_a_flow_is_resent_with_one_idempotency_key_and_job_results_are_typed() -> None:
    seen, handler = _scripted(
        [httpx.Response(503), httpx.ReadError("reset"), httpx.Response(200, json=FLOW_ANSWER)]
    )
    with Client("http://svc", retry=FAST, transport=httpx.MockTransport(handler)) as client:
        result = client.flows.mmd([[0.0, 0.0]], [[1.0, 1.0]], bandwidth=1.0, seed=3)
    assert result.particles_array.tolist() == [[0.5, 1.0]] and len(seen) == 3
    assert len({r.headers["Idempotency-Key"] for r in seen}) == 1
    assert json.loads(seen[0].content)["kernel"] == {"name": "gaussian", "bandwidth": 1.0}

    done = JobInfo(id="job_1", kind="mmd", status="succeeded", result=FLOW_ANSWER)
    assert wire.job_output(done, FlowResult).seed == 3
    with pytest.raises(PrivflowError, match="did not produce a Retrieval") as raised:
        wire.job_output(done, Retrieval)
    assert raised.value.code == "unexpected_response"
    with pytest.raises(PrivflowError, match="got a job"):
        wire.expect_answer(wire.expect_job(JobAccepted(job_id="job_1")))


# --- against the service ----------------------------------------------------------------------


def test_mmd_flow_takes_arrays_or_lists_and_a_seed_reproduces_it(admin: Client) -> None:
    source, target = _clouds()
    result = admin.flows.mmd(source, target, bandwidth=1.0, steps=30, seed=7)
    assert isinstance(result, FlowResult) and result.seed == 7
    particles = result.particles_array
    assert particles.shape == (40, 2) and particles.dtype == np.float64
    steps, mmd2 = result.trace_column("step"), result.trace_column("mmd2")
    assert (steps[0], steps[-1]) == (0, 30) and np.all(np.diff(steps) > 0)
    assert np.all(np.diff(mmd2) <= 1e-12) and mmd2[-1] < mmd2[0]  # the plain flow descends
    assert np.isnan(result.trace_column("no_such_metric")).all()
    assert result.description is not None and result.description.steps == 30
    assert result.description.seed == 7 and result.seconds >= 0.0

    again = admin.flows.mmd(source.tolist(), target.tolist(), bandwidth=1.0, steps=30, seed=7)
    _assert_same_run(again, result)  # lists or arrays, the same request
    other = admin.flows.mmd(source, target, bandwidth=1.0, steps=30, seed=7, noise_level=0.5)
    assert not np.array_equal(other.particles_array, particles)
    imq = admin.flows.mmd(source, target, kernel="imq", bandwidth=1.0, steps=5, seed=7)
    assert imq.description is not None and imq.description.parameters != {}

    unseeded = admin.flows.mmd(source, target, bandwidth=1.0, steps=5)
    assert isinstance(unseeded.seed, int)  # the seed used comes back (replay: next test)


def test_every_unseeded_run_replays_with_the_seed_it_returns(admin: Client) -> None:
    source, target = _clouds(n=5, m=5)
    for _ in range(8):  # all 8 fresh seeds below 2**63 by chance: 1 in 256
        unseeded = admin.flows.mmd(source, target, bandwidth=1.0, steps=3)
        assert unseeded.seed is not None
        replay = admin.flows.mmd(source, target, bandwidth=1.0, steps=3, seed=unseeded.seed)
        _assert_same_run(replay, unseeded)


def test_drmmd_flow_with_a_fixed_or_adaptive_lambda(admin: Client) -> None:
    source, target = _clouds(1)
    for lambda_ in (0.01, "adaptive"):
        result = admin.flows.drmmd(source, target, bandwidth=1.0, lambda_=lambda_, steps=20,
                                   seed=1, record_every=5)  # fmt: skip
        assert {"drmmd", "mmd2", "lambda"} <= set(result.trace[-1])
        assert list(result.trace_column("step")) == [0, 5, 10, 15, 20]
        drmmd = result.trace_column("drmmd")
        assert drmmd[-1] < drmmd[0]
        again = admin.flows.drmmd(source, target, bandwidth=1.0, lambda_=lambda_, steps=20,
                                  seed=1, record_every=5)  # fmt: skip
        _assert_same_run(again, result)


def test_muon_flow_on_the_student_teacher_task(admin: Client) -> None:
    result = admin.flows.muon(**MUON, seed=4)
    assert result.particles_array.shape == (8, 3, 7)  # (particles, hidden, input_dim + 1)
    hamiltonian = result.trace_column("hamiltonian")
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(hamiltonian))
    loss = result.trace_column("loss")
    assert loss[-1] < loss[0]
    modelled = admin.flows.muon(**{**MUON, "task": StudentTeacherTask(**TASK)}, seed=4)
    _assert_same_run(modelled, result)
    standard = admin.flows.muon(**MUON, seed=4, update="newton_schulz")
    assert standard.trace[0]["loss"] == result.trace[0]["loss"]  # same initial particles
    assert not np.array_equal(standard.particles_array, result.particles_array)


def test_flow_jobs_wait_and_yield_the_synchronous_result(
    admin: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = _clouds(2)
    synchronous = admin.flows.mmd(source, target, bandwidth=1.0, steps=30, seed=5)
    job = admin.flows.submit_mmd(source, target, bandwidth=1.0, steps=30, seed=5)
    assert isinstance(job, Job) and job.kind == "mmd" and job.release_id is None
    result = job.flow(timeout=120, progress=True)
    _assert_same_run(result, synchronous)
    assert admin.jobs.get(job.id).status == "succeeded" and "100%" in capsys.readouterr().err

    drmmd = admin.flows.submit_drmmd(source, target, bandwidth=1.0, steps=10, seed=5)
    assert "drmmd" in drmmd.flow(timeout=120).trace[-1]
    muon = admin.flows.submit_muon(**MUON, seed=4).flow(timeout=120)
    _assert_same_run(muon, admin.flows.muon(**MUON, seed=4))


def test_memories_store_patterns_and_retrieve_the_one_a_query_came_from(admin: Client) -> None:
    patterns = _patterns()
    memory = admin.memories.create(patterns, blur=0.5, beta=1.0)
    assert isinstance(memory, Memory) and memory.n_patterns == 3
    assert memory.memory_id in repr(memory)
    for k, pattern in enumerate(patterns):
        retrieval = memory.retrieve(_noisy(pattern, k), steps=8)
        assert isinstance(retrieval, Retrieval) and retrieval.nearest_pattern == k
        assert int(np.argmin(retrieval.divergences)) == k
        weights = retrieval.weights_array
        assert weights.sum() == pytest.approx(1.0) and weights.min() >= 0.0
        assert retrieval.points_array.shape == (15, 2)
        energy = retrieval.energy_trace
        assert len(energy) == 9 and all(b <= a + 1e-12 for a, b in itertools.pairwise(energy))

    query = _noisy(patterns[1], 9)
    by_id = admin.memories.retrieve(memory.memory_id, query, steps=8, weights=np.full(15, 1 / 15))
    job = memory.submit(query, steps=8)
    assert isinstance(job, Job) and job.kind == "sinkhorn_memory"
    from_job = job.retrieval(timeout=120)
    assert from_job.points == by_id.points and from_job.nearest_pattern == 1

    weighted = admin.memories.create(
        [{"points": patterns[0], "weights": np.full(15, 1 / 15)}, patterns[1]], blur=0.5
    )
    assert weighted.n_patterns == 2
    assert weighted.retrieve({"points": query}, steps=4).nearest_pattern == 1

    # a retry with the same Idempotency-Key is the first memory, not a second one
    first = admin.memories.create(patterns, blur=0.5, idempotency_key="store-once")
    again = admin.memories.create(patterns, blur=0.5, idempotency_key="store-once")
    assert again.memory_id == first.memory_id != memory.memory_id


def test_dimension_mismatches_and_bad_values_are_invalid_requests_naming_the_field(
    admin: Client,
) -> None:
    source, target = _clouds(n=5, m=5)
    with pytest.raises(InvalidRequest) as raised:
        admin.flows.mmd(source, np.zeros((5, 3)), bandwidth=1.0, steps=2)
    assert raised.value.status == 422 and [e["field"] for e in raised.value.errors] == ["target"]
    with pytest.raises(InvalidRequest) as raised:
        admin.flows.submit_drmmd(source, target, bandwidth=-1.0)  # refused before any job
    assert "kernel.bandwidth" in [e["field"] for e in raised.value.errors]

    memory = admin.memories.create(_patterns(), blur=0.5)
    with pytest.raises(InvalidRequest) as raised:
        memory.retrieve(np.zeros((4, 3)))
    assert raised.value.status == 422 and raised.value.errors[0]["field"] == "query.points"
    with pytest.raises(InvalidRequest) as raised:
        admin.memories.create([{"points": [[0.0, 1.0]], "weights": [0.5, 0.5]}], blur=0.5)
    assert raised.value.errors[0]["field"] == "patterns[0].weights"
    with pytest.raises(InvalidRequest) as raised:
        admin.memories.create([np.zeros((3, 2)), np.zeros((3, 1))], blur=0.5)
    assert raised.value.errors[0]["field"] == "patterns"

    # Typos and missing arguments are refused by the request models, before sending.
    with pytest.raises(InvalidRequest) as raised:
        admin.flows.mmd(source, target, bandwith=1.0)  # type: ignore[call-arg]
    assert raised.value.status is None
    assert {"bandwith", "kernel.bandwidth"} <= {e["field"] for e in raised.value.errors}
    with pytest.raises(InvalidRequest, match=r"task\.input_dims"):
        admin.flows.muon(task={"kind": "student_teacher", "input_dims": 3})


def test_another_keys_memory_is_not_found(admin: Client, make_analyst: MakeAnalyst) -> None:
    memory = admin.memories.create(_patterns(), blur=0.5)
    _, analyst = make_analyst()
    with pytest.raises(NotFound):
        analyst.memories.retrieve(memory.memory_id, [[0.0, 0.0]])
    with pytest.raises(NotFound):
        analyst.memories.submit("mem_missing", [[0.0, 0.0]])


def test_a_flow_whose_answer_was_lost_is_resent_with_its_idempotency_key(
    server: Server, admin: Client
) -> None:
    source, target = _clouds(4, n=10, m=10)
    with (
        DroppingProxy(server.port, drop=1) as proxy,
        Client(proxy.url, server.admin_key, retry=FAST) as client,
    ):
        result = client.flows.mmd(source, target, bandwidth=1.0, steps=5)  # no seed
        assert (proxy.dropped, proxy.connections) == (1, 2)
    assert isinstance(result.seed, int)

    first = admin.flows.mmd(source, target, bandwidth=1.0, steps=5, idempotency_key="flow-k")
    second = admin.flows.mmd(source, target, bandwidth=1.0, steps=5, idempotency_key="flow-k")
    assert second == first  # the stored answer: unseeded, yet the same seed and timings
    with pytest.raises(IdempotencyConflict):
        admin.flows.mmd(source, target, bandwidth=1.0, steps=6, idempotency_key="flow-k")


def test_the_async_client_runs_flows_memories_and_jobs(server: Server, admin: Client) -> None:
    source, target = _clouds(6, n=20, m=20)
    synchronous = admin.flows.mmd(source, target, bandwidth=1.0, steps=20, seed=3)
    patterns = _patterns(8)

    async def scenario() -> None:
        async with AsyncClient(server.url, server.admin_key) as client:
            runs = await asyncio.gather(
                *(client.flows.mmd(source, target, bandwidth=1.0, steps=20, seed=3)
                  for _ in range(3))
            )  # fmt: skip
            for run in runs:
                _assert_same_run(run, synchronous)
            job = await client.flows.submit_drmmd(source, target, bandwidth=1.0, steps=10)
            assert isinstance(job, AsyncJob) and job.kind == "drmmd"
            assert "drmmd" in (await job.flow(timeout=120)).trace[-1]
            muon = await client.flows.muon(**MUON, seed=4)
            assert muon.particles_array.shape == (8, 3, 7)

            memory = await client.memories.create(patterns, blur=0.5)
            assert isinstance(memory, Memory) and memory.n_patterns == 3
            retrieval = await memory.retrieve(_noisy(patterns[2], 1), steps=8)
            assert retrieval.nearest_pattern == 2
            pending = await memory.submit(_noisy(patterns[0], 2), steps=8)
            assert (await pending.retrieval(timeout=120)).nearest_pattern == 0
            by_id = await client.memories.retrieve(memory.memory_id, _noisy(patterns[1], 3))
            assert by_id.nearest_pattern == 1
            with pytest.raises(InvalidRequest) as raised:
                await client.flows.drmmd(source, np.zeros((2, 1)), bandwidth=1.0)
            assert raised.value.errors[0]["field"] == "target"

    asyncio.run(scenario())
