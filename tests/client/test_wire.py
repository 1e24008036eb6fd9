"""The pure wire module and the client loops on a mock transport: retry decisions, Retry-After,
error mapping by problem code, one Idempotency-Key across attempts, models, the progress bar."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import numpy as np
import pytest
from privflow_client import (
    AsyncClient,
    BudgetExceeded,
    Client,
    ConnectionFailed,
    Forbidden,
    IdempotencyConflict,
    InternalError,
    InvalidRequest,
    JobInfo,
    NotFound,
    Overloaded,
    PrivflowError,
    Release,
    RetryPolicy,
    TooLarge,
    Unauthenticated,
)
from privflow_client import _wire as wire
from privflow_client._errors import error_for
from privflow_client._progress import ProgressBar

POLICY = RetryPolicy(max_attempts=20, backoff=0.5, max_backoff=8.0, max_retry_after=60.0)
FAST = RetryPolicy(max_attempts=4, backoff=0.001, max_backoff=0.002)
GET = wire.get_dataset("ds_1")
KEY_POST = wire.create_key("k", "analyst")
RELEASE_POST = wire.create_release(
    "ds_1", wire.sample_request({"family": "mode", "column": "c"}, 1.0, delta=None,
                                n_samples=None, method="exact", sampler=None),
)  # fmt: skip
RELEASE_BODY: dict[str, Any] = {
    "release_id": "rel_1",
    "dataset_id": "ds_1",
    "samples": [[1.5], [2.0]],
    "certificate": {"scope": "exact", "bound": "b", "pure_dp": {"epsilon": 1.0}},
    "charged": {"epsilon": 1.0, "delta": 0.0},
}


def _problem(status: int, code: str, **extra: Any) -> dict[str, Any]:
    return {"type": f"/errors/{code}", "title": code, "status": status, "detail": "d",
            "code": code, **extra}  # fmt: skip


# --- retry decisions ------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    delays = [wire.retry_delay(GET, n, POLICY, status=503, jitter=1.0) for n in range(1, 8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert wire.retry_delay(GET, 1, POLICY, status=503, jitter=0.0) == 0.25
    assert wire.retry_delay(GET, 20, POLICY, status=503) is None  # out of attempts


def test_retry_after_is_honoured_never_shortened_and_refused_when_too_long() -> None:
    assert wire.retry_delay(KEY_POST, 1, POLICY, status=429, retry_after=3.0, jitter=0.0) == 3.0
    assert wire.retry_delay(KEY_POST, 1, POLICY, status=429, retry_after=3.0, jitter=1.0) == 3.75
    assert wire.retry_delay(GET, 1, POLICY, status=429, retry_after=61.0) is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422, 500])
def test_answers_that_retrying_cannot_change_are_final(status: int) -> None:
    assert wire.retry_delay(RELEASE_POST, 1, POLICY, status=status) is None


def test_what_may_be_resent_depends_on_whether_the_call_is_replay_safe() -> None:
    lost = httpx.ReadError("connection reset")
    not_sent = httpx.ConnectError("refused")
    assert RELEASE_POST.replay_safe and RELEASE_POST.idempotency_key is not None
    assert not KEY_POST.replay_safe and KEY_POST.idempotency_key is None
    for call in (GET, RELEASE_POST):
        assert wire.retry_delay(call, 1, POLICY, error=lost) is not None
        assert wire.retry_delay(call, 1, POLICY, status=502) is not None
    # A key creation that may have reached the service is never resent...
    assert wire.retry_delay(KEY_POST, 1, POLICY, error=lost) is None
    assert wire.retry_delay(KEY_POST, 1, POLICY, status=503) is None
    # ...but one that never left, or that the service refused as overloaded, is.
    assert wire.retry_delay(KEY_POST, 1, POLICY, error=not_sent) is not None
    assert wire.retry_delay(KEY_POST, 1, POLICY, status=429) is not None
    assert wire.retry_delay(GET, 1, POLICY, error=ValueError("not transport")) is None


def test_retry_after_parses_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert wire.parse_retry_after("7") == 7.0
    assert wire.parse_retry_after(format_datetime(now + timedelta(seconds=30)), now) == 30.0
    assert wire.parse_retry_after(format_datetime(now - timedelta(seconds=30)), now) == 0.0
    assert wire.parse_retry_after(None) is None
    assert wire.parse_retry_after("soon") is None


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (401, "unauthenticated", Unauthenticated),
        (403, "forbidden", Forbidden),
        (404, "not_found", NotFound),
        (409, "budget_exceeded", BudgetExceeded),
        (413, "too_large", TooLarge),
        (422, "invalid_request", InvalidRequest),
        (422, "idempotency_conflict", IdempotencyConflict),
        (429, "overloaded", Overloaded),
        (500, "internal", InternalError),
    ],
)
def test_each_problem_code_has_its_exception(
    status: int, code: str, cls: type[PrivflowError]
) -> None:
    errors = [{"field": "utility.q", "message": "m"}]
    error = error_for(status, _problem(status, code, errors=errors))
    assert type(error) is cls and isinstance(error, PrivflowError)
    assert (error.status, error.code, error.detail, error.errors) == (status, code, "d", errors)


def test_unknown_codes_and_bodies_that_are_not_problems() -> None:
    cancelled = error_for(409, _problem(409, "cancelled"))
    assert type(cancelled) is PrivflowError and cancelled.code == "cancelled"
    assert type(error_for(409, None)) is PrivflowError  # a 409 is not a budget refusal by itself
    gateway = error_for(502, None)
    assert (type(gateway), gateway.code, gateway.detail) == (
        PrivflowError,
        "unavailable",
        "HTTP 502",
    )
    assert type(error_for(404, {"detail": "no code"})) is NotFound


def test_a_final_429_raises_overloaded_with_retry_after() -> None:
    with pytest.raises(Overloaded) as raised:
        wire.parse(
            KEY_POST, 429, {"retry-after": "120"}, json.dumps(_problem(429, "overloaded")).encode()
        )
    assert raised.value.retry_after == 120.0


def test_failed_and_cancelled_jobs_raise_their_problem() -> None:
    def job(status: str, error: dict[str, Any] | None = None, **extra: Any) -> JobInfo:
        return JobInfo(id="job_1", status=status, error=error, **extra)  # type: ignore[arg-type]

    with pytest.raises(InternalError):
        wire.job_release(job("failed", _problem(500, "internal")))
    with pytest.raises(PrivflowError) as raised:
        wire.job_release(job("cancelled", _problem(409, "cancelled")))
    assert raised.value.code == "cancelled"
    with pytest.raises(PrivflowError) as raised:  # cancelled while queued: no error body
        wire.job_release(job("cancelled"))
    assert (raised.value.code, raised.value.status) == ("cancelled", 409)
    with pytest.raises(InternalError):
        wire.job_release(job("failed"))
    with pytest.raises(PrivflowError, match="has not finished"):
        wire.job_release(job("running"))
    assert wire.job_release(job("succeeded", result=RELEASE_BODY)).release_id == "rel_1"


# --- the client loops on a mock transport ---------------------------------------------------


def _scripted(
    answers: list[httpx.Response | Exception],
) -> tuple[list[httpx.Request], Callable[..., Any]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return seen, handler


def test_a_release_is_resent_with_one_idempotency_key_until_it_succeeds() -> None:
    seen, handler = _scripted([
        httpx.Response(503, json=_problem(503, "unavailable")),
        httpx.ReadError("connection reset"),
        httpx.Response(429, json=_problem(429, "overloaded"), headers={"Retry-After": "0"}),
        httpx.Response(201, json=RELEASE_BODY),
    ])  # fmt: skip
    with Client("http://svc", "pf_k", retry=FAST, transport=httpx.MockTransport(handler)) as c:
        release = c.releases.create(
            "ds_1", {"family": "quantile", "column": "a", "q": 0.5}, epsilon=1.0
        )
        c.releases.create("ds_1", {"family": "quantile", "column": "a", "q": 0.5}, epsilon=1.0)
    assert isinstance(release, Release) and len(seen) == 5
    keys = [r.headers["Idempotency-Key"] for r in seen]
    assert len(set(keys[:4])) == 1 and keys[4] != keys[0]  # one key per call, kept across retries
    assert len({r.content for r in seen[:4]}) == 1
    assert all(r.headers["Authorization"] == "Bearer pf_k" for r in seen)
    assert json.loads(seen[0].content) == {
        "utility": {"family": "quantile", "column": "a", "q": 0.5}, "epsilon": 1.0,
    }  # fmt: skip


def test_retries_stop_after_max_attempts_and_raise_the_last_answer() -> None:
    seen, handler = _scripted([httpx.Response(503, text="<html>busy</html>")])
    client = Client("http://svc", retry=FAST, transport=httpx.MockTransport(handler))
    with client, pytest.raises(PrivflowError) as raised:
        client.datasets.get("ds_1")
    assert len(seen) == FAST.max_attempts and raised.value.status == 503

    seen, handler = _scripted([httpx.ReadError("reset")])
    client = Client("http://svc", retry=FAST, transport=httpx.MockTransport(handler))
    with client, pytest.raises(ConnectionFailed, match="ReadError"):
        client.keys.create("once")
    assert len(seen) == 1


def test_the_async_client_retries_the_same_way() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(502)
        return httpx.Response(200, json={"items": [], "next_cursor": None})

    async def run() -> list[Any]:
        async with AsyncClient(
            "http://svc", retry=FAST, transport=httpx.MockTransport(handler)
        ) as c:
            return await c.datasets.list().collect()

    assert asyncio.run(run()) == [] and len(seen) == 2


def test_pagination_follows_cursors_until_the_last_page() -> None:
    pages = {None: (["k1", "k2"], "c1"), "c1": (["k3"], "c2"), "c2": ([], None)}
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        ids, cursor = pages[request.url.params.get("cursor")]
        items = [{"id": i, "name": i, "role": "analyst"} for i in ids]
        return httpx.Response(200, json={"items": items, "next_cursor": cursor})

    with Client("http://svc", transport=httpx.MockTransport(handler)) as client:
        assert [k.id for k in client.keys.list(page_size=2)] == ["k1", "k2", "k3"]
    assert [r.url.params.get("limit") for r in seen] == ["2", "2", "2"]


# --- models and the progress bar ------------------------------------------------------------


def test_samples_array_is_float_for_numbers_and_object_for_labels() -> None:
    numbers = Release.model_validate({**RELEASE_BODY, "samples": [[1, 2.5], [3, 4]]})
    assert numbers.samples_array.dtype == np.float64
    assert numbers.samples_array.tolist() == [[1.0, 2.5], [3.0, 4.0]]
    labels = Release.model_validate({**RELEASE_BODY, "samples": [["b"], ["1"]]})
    assert labels.samples_array.dtype == object and labels.samples_array.tolist() == [["b"], ["1"]]
    empty = Release.model_validate({**RELEASE_BODY, "samples": []})
    assert empty.samples_array.shape == (0, 0)


def test_responses_keep_fields_a_newer_service_adds() -> None:
    release = Release.model_validate({**RELEASE_BODY, "provenance": {"kind": "x"}})
    assert release.model_extra == {"provenance": {"kind": "x"}}


def test_the_progress_bar_draws_changes_only() -> None:
    stream = io.StringIO()
    bar = ProgressBar("job job_1", stream=stream, width=10)
    assert bar.render(0.5, "running") == "[#####.....]  50%  running    job job_1"
    assert bar.render(0.5, "running", 45.2).endswith("job job_1  ~45 s est.")
    assert bar.render(0.5, "running", 0.42).endswith("~0.4 s est.")
    assert bar.render(0.5, "running", 3600.0).endswith("~60 min est.")
    assert bar.render(0.5, "running", 9000.0).endswith("~2.5 h est.")
    for fraction, status in [
        (0.0, "queued"),
        (0.01, "queued"),
        (0.5, "running"),
        (1.0, "succeeded"),
    ]:
        bar.update(fraction, status)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["0%", "50%", "100%"]
