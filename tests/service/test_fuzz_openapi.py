"""Schemathesis fuzzing of every operation in the app's own OpenAPI document, in-process (ASGI).

One app on a fresh SQLite store, seeded over HTTP with a dataset, an analyst key with a grant,
a release, an async job, a memory and a generator per role, and a few disposable keys.
Schemathesis generates positive and negative requests for every operation (its examples,
coverage and fuzzing phases; fixed seed, derandomized) and sends them as the bootstrap admin
and, in a second run, as the analyst (examples and fuzzing only in the fast run; all three
phases under ``-m full``). Every response must pass schemathesis' built-in checks (no 5xx;
status codes, content types, headers, ``Allow`` and bodies as documented; negative data
rejected) and ours: every 4xx is ``application/problem+json`` with string ``code``, ``type``,
``title``, ``detail`` and an integer ``status`` equal to the HTTP status.

Excluded: nothing. Every operation runs in-process, including ``/readyz`` and ``/metrics``.

Reaching real resources: the ``before_call`` hook below sends about half of the requests (a
pure function of the case, so runs are reproducible) to the seeded ids and, for releases, to the
seeded dataset's real column names, so that releases actually run.

Keeping it cheap (the whole file runs in about a minute): a release costs particles x (steps +
relaxation moves) x samples of kernel work, a flow steps x points², a generator fit samples x
steps; the schema allows 200,000 particles, step size 1e-4, 10,000 relaxation moves, 10,000
samples, 1,000,000 flow steps and fits on 2^20 samples (hours on a CI machine: a capacity limit,
which the worker queue's 429 governs, not a property of the HTTP surface). The hook lowers only
those cost parameters, and only where they already lie inside their valid range, so out-of-range
values still reach validation untouched (``_cap_cost``). The full run (``-m full``) takes the same
path with ten times the examples.
"""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema_rs
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.core.failures import AcceptedNegativeData

from service.app import create_app
from service.jobs import JobPool
from service.settings import Settings

ADMIN_KEY = "pf_fuzz_admin_key_0123456789abcdef"
FAST_EXAMPLES = 25
FULL_EXAMPLES = 250
PROBLEM = "application/problem+json"

# Cheap valid values for the parameters that scale the cost of a request (module docstring).
MAX_PARTICLES = 16
MIN_STEP_SIZE = 0.5
MAX_SAMPLES = 3
MAX_K = 2
MAX_STEPS = 20
MIN_FIT_SAMPLES = 256
MAX_GENERATED = 64
MAX_RELEASE_EPSILON = 1.0  # the seeded budget (1e6) then outlasts any run


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class World:
    """The seeded resources of the fuzz app; ``ids[role][path parameter]`` is a real id."""

    analyst_id: str
    analyst_key: str
    ids: dict[str, dict[str, str]]
    disposable_key_ids: list[str]


COLUMNS = [
    {"name": "age", "type": "float", "lower": 0, "upper": 100},
    {"name": "height", "type": "float", "lower": 100, "upper": 220},
    {"name": "flag", "type": "float", "lower": 0, "upper": 1},
    {"name": "city", "type": "category", "categories": ["a", "b", "c"]},
    {"name": "member", "type": "category", "categories": ["no", "yes"]},
]
RECORDS = [
    [float((7 * i) % 101), 100.0 + (13 * i) % 121, float(i % 2), "abc"[i % 3], ("no", "yes")[i % 2]]
    for i in range(60)
]


def _seed(client: TestClient, paths: dict[str, Any]) -> World:
    admin = _auth(ADMIN_KEY)

    def post(path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        response = client.post(path, json=body, headers=headers)
        assert response.status_code in (201, 202), response.text
        return response.json()

    analyst = post("/v1/keys", {"name": "fuzz-analyst", "role": "analyst"}, admin)
    disposable = [
        post("/v1/keys", {"name": f"disposable-{i}", "role": "analyst"}, admin)["id"]
        for i in range(3)
    ]
    dataset = post(
        "/v1/datasets",
        {
            "name": "fuzz",
            "columns": COLUMNS,
            "records": RECORDS,
            "budget": {"epsilon": 1e6, "delta": 0.5},
            "size_bound": 100,  # a small public bound n_max: shorter flows, cheaper releases
        },
        admin,
    )
    post(f"/v1/datasets/{dataset['id']}/grants", {"key_id": analyst["id"]}, admin)
    release = {
        "utility": {"family": "quantile", "column": "age", "q": 0.5},
        "epsilon": 0.5,
        "method": "exact",
    }
    samples = f"/v1/datasets/{dataset['id']}/samples"
    ids: dict[str, dict[str, str]] = {}
    for role, headers in (("admin", admin), ("analyst", _auth(analyst["key"]))):
        ids[role] = {
            "dataset_id": dataset["id"],
            "release_id": post(samples, release, headers)["release_id"],
            "job_id": post(samples, {**release, "async": True}, headers)["job_id"],
        }
        if "/v1/memories" in paths:
            memory = {"patterns": [{"points": [[0.0], [1.0]]}, {"points": [[3.0]]}], "blur": 0.5}
            ids[role]["memory_id"] = post("/v1/memories", memory, headers)["memory_id"]
        if "/v1/generators" in paths:
            generator = {
                "points": [[0.0], [1.0], [3.0]],
                "fit": {"samples": MIN_FIT_SAMPLES, "max_steps": MAX_STEPS},
            }
            ids[role]["generator_id"] = post("/v1/generators", generator, headers)["generator_id"]
    return World(analyst["id"], analyst["key"], ids, disposable)


class _DeferredApp:
    """The ASGI app the schemas below send to; ``fuzz_app`` plugs in the real one.

    Schemathesis' pytest integration needs the schema at collection time, the app needs a
    temporary database that only a fixture should create (schemathesis' lazy
    ``from_fixture`` loader does not run under pytest 9.2: it writes ``Function._nodeid``).
    Schemathesis also starts an ASGI app's lifespan on its first request and stops it after
    every test item, but an app's lifespan runs once (its shutdown stops the worker pool), so
    ``fuzz_app`` runs it for the module and this wrapper answers lifespan events itself.
    """

    app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        assert self.app is not None, "the fuzz_app fixture did not run"
        await self.app(scope, receive, send)


APP = _DeferredApp()
WORLD: dict[str, World] = {}
# The document of a throwaway app: the same code, no lifespan and no database connection.
DOCUMENT = create_app(Settings(warm_on_startup=False, database_url="sqlite://")).openapi()


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    db: Path = tmp_path_factory.mktemp("fuzz") / "privflow.db"
    settings = Settings(
        warm_on_startup=False,
        database_url=f"sqlite:///{db}",
        admin_key=ADMIN_KEY,
        job_workers=1,
        job_queue=4,  # async releases pile up quickly: 429 overloaded is part of the surface
    )
    app = create_app(settings)
    with TestClient(app) as client:  # the app's lifespan, once for the whole module
        WORLD["world"] = _seed(client, DOCUMENT["paths"])
        APP.app = app
        try:
            yield WORLD["world"]
        finally:
            APP.app = None
            WORLD.clear()


def _choose(case: Any, salt: str, n: int) -> int:
    """A deterministic choice in range(n) from the case's content (reproducible runs)."""
    blob = json.dumps([case.path_parameters, case.query, case.body], sort_keys=True, default=repr)
    return zlib.crc32((blob + salt).encode()) % n


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _lower(container: Any, name: str, cap: float, low: float, high: float) -> None:
    """``container[name] = min(value, cap)`` when the value is a number in [low, high]."""
    value = container.get(name) if isinstance(container, dict) else None
    if _is_number(value) and low <= value <= high and value > cap:
        container[name] = type(value)(cap)


def _cap_cost(path: str, body: dict[str, Any]) -> None:
    """Lower in-range cost parameters to cheap valid values (see the module docstring)."""
    if path.endswith("/samples"):
        if body.get("sampler") is None:  # left out: the public default of 2000 particles
            body["sampler"] = {"particles": MAX_PARTICLES, "step_size": MIN_STEP_SIZE}
        sampler = body["sampler"]
        _lower(sampler, "particles", MAX_PARTICLES, 2, 200_000)
        _lower(sampler, "relaxation_moves", MAX_STEPS, 0, 10_000)
        step = sampler.get("step_size") if isinstance(sampler, dict) else None
        if _is_number(step) and 1e-4 <= step <= 1.0:
            sampler["step_size"] = max(float(step), MIN_STEP_SIZE)
        _lower(body, "n_samples", MAX_SAMPLES, 1, 10_000)
        _lower(body.get("utility"), "k", MAX_K, 1, 64)
    elif path.startswith("/v1/flows/") or path.endswith("/retrieve"):  # steps and particles
        if "steps" not in body:  # the default is 500 flow steps
            body["steps"] = MAX_STEPS
        _lower(body, "steps", MAX_STEPS, 0, 1_000_000)
        _lower(body, "particles", MAX_PARTICLES, 1, 100_000)
    elif path == "/v1/generators":  # the default fit: 65,536 samples, up to 2000 steps
        if body.get("fit") is None:
            body["fit"] = {"samples": MIN_FIT_SAMPLES, "max_steps": MAX_STEPS}
        _lower(body["fit"], "samples", MIN_FIT_SAMPLES, 256, 1 << 20)
        _lower(body["fit"], "max_steps", MAX_STEPS, 1, 100_000)
    elif path.startswith("/v1/generators/"):  # samples: n up to 10^7
        _lower(body, "n", MAX_GENERATED, 1, 10_000_000)


REAL_UTILITIES: dict[str, dict[str, Any]] = {
    "quantile": {"column": "age"},
    "mean": {"columns": ["age", "height"]},
    "linear_regression": {"features": ["age"], "target": "height"},
    "logistic_regression": {"features": ["age", "height"], "label": "member"},
    "kmeans": {"columns": ["age"]},
    "mode": {"column": "city"},
}


def _realistic_release(case: Any, body: dict[str, Any]) -> None:
    """Point a release body at the seeded dataset's columns so that it can actually run."""
    utility = body.get("utility")
    if not isinstance(utility, dict) or not isinstance(family := utility.get("family"), str):
        return
    for name, value in REAL_UTILITIES.get(family, {}).items():
        if name in utility:
            utility[name] = value
    if family == "logistic_regression" and _choose(case, "label", 2):
        utility["label"] = "flag"  # the float [0, 1] label column instead of the category
    if _is_number(epsilon := body.get("epsilon")) and 0 < epsilon <= 1e6:
        body["epsilon"] = min(epsilon, MAX_RELEASE_EPSILON)


ROLES: dict[int, str] = {}  # id(schema.hooks) -> role; parametrize() clones share the hooks


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Point about half of the requests at seeded resources; cap costs (module docstring).

    Global (schemathesis allows ``before_call`` only globally) but a no-op for any schema not
    built here. It runs at call time, when the seeded ids exist, and schemathesis re-checks an
    edited case (positive or negative) before sending it.
    """
    role = ROLES.get(id(case.operation.schema.hooks))
    if role is None:
        return
    world = WORLD["world"]
    real = _choose(case, "real", 2) == 0
    params = case.path_parameters or {}
    for name in params:
        if real and name in world.ids[role]:
            params[name] = world.ids[role][name]
        elif real and name == "key_id":  # never the keys the run authenticates with
            params[name] = world.disposable_key_ids[_choose(case, "key", 3)]
    body = case.body
    if isinstance(body, dict) and case.method == "POST":
        if real and case.path.endswith("/samples"):
            _realistic_release(case, body)
        if real and case.path.endswith("/grants") and "key_id" in body:
            body["key_id"] = world.analyst_id
        _cap_cost(case.path, body)


def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Drop one schemathesis artefact: a "schema-violating" query value that reached the
    server as a valid one (a query string carries strings only, so a number where the schema
    wants strings, or an object serialized to ``?name=``, arrives valid). The wire values are
    checked against the parameter's schema; a genuine violation is kept."""
    if not isinstance(failure, AcceptedNegativeData):
        return True
    query = parse_qs(urlsplit(response.request.url).query, keep_blank_values=True)
    operation = DOCUMENT["paths"][case.path][case.method.lower()]
    for parameter in operation.get("parameters", []):
        name = parameter["name"]
        if parameter["in"] != "query" or f"parameter `{name}` in query" not in failure.message:
            continue
        sent = query.get(name)
        if sent is None:
            return True
        wire_value = sent if _accepts_array(parameter["schema"]) else sent[-1]
        return not jsonschema_rs.validator_for(parameter["schema"]).is_valid(wire_value)
    return True


def _accepts_array(schema: dict[str, Any]) -> bool:
    branches = schema.get("anyOf", [schema])
    return any(branch.get("type") == "array" for branch in branches)


def _schema(role: str, *, coverage: bool = True) -> Any:
    config = schemathesis.Config.from_dict(
        {
            "seed": 20240601,
            # The coverage phase (every boundary and negative case the schema defines, however
            # many) is most of the fast run's requests; the analyst's fast run leaves it out.
            "phases": {"coverage": {"enabled": coverage}},
            # A hung request fails its test instead of stalling the run (generous for CI hosts).
            "request-timeout": 60,
            "checks": {
                # 422 is also the answer to semantic validation that the schema cannot express
                # (an unknown column, a cursor the service did not issue, an unknown key id);
                # 413 the documented capacity answer to a schema-valid request over the point
                # limit (API.md: PRIVFLOW_MAX_POINTS; for Muon particles x task dimension).
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "401", "403", "404", "409", "413", "422", "429"]
                },
                # A negative body can also be rejected for its size before it is parsed: an
                # over-long array past PRIVFLOW_MAX_REQUEST_BYTES is 413 too_large.
                "negative_data_rejection": {
                    "expected-statuses": [
                        "400",
                        "401",
                        "403",
                        "404",
                        "405",
                        "406",
                        "409",
                        "413",
                        "415",
                        "422",
                        "428",
                        "429",
                        "5xx",
                    ]
                },
            },
        }
    )
    loaded = schemathesis.openapi.from_dict(DOCUMENT, config=config)
    loaded.app = APP
    loaded.hook(filter_failure)
    ROLES[id(loaded.hooks)] = role
    return loaded


ADMIN = _schema("admin")
ANALYST = _schema("analyst", coverage=False)
ANALYST_FULL = _schema("analyst")


def _assert_problem(response: Any) -> None:
    status = response.status_code
    assert status < 500, f"server error {status}: {response.text[:500]}"
    if status < 400:
        return
    content_type = ";".join(response.headers.get("content-type", []))  # wire form: lists
    assert content_type.split(";")[0].strip() == PROBLEM, f"{status} with {content_type!r}"
    problem = response.json()
    assert isinstance(problem, dict), problem
    assert isinstance(problem.get("code"), str) and problem["code"], problem
    assert type(problem.get("status")) is int and problem["status"] == status, problem
    for field in ("type", "title", "detail"):
        assert isinstance(problem.get(field), str), problem


def _check(case: Any, key: str) -> None:
    response = case.call(headers=_auth(key))
    _assert_problem(response)
    case.validate_response(response, headers=_auth(key))


FUZZ_SETTINGS: dict[str, Any] = {
    "derandomize": True,
    "deadline": None,
    "database": None,
    "print_blob": False,
    # Slow or filtered generation is expected for bodies this large; the runtime is bounded.
    "suppress_health_check": list(HealthCheck),
}


@ADMIN.parametrize()
@settings(max_examples=FAST_EXAMPLES, **FUZZ_SETTINGS)
def test_fuzz_as_admin(case: Any, fuzz_app: World) -> None:
    _check(case, ADMIN_KEY)


@ANALYST.parametrize()
@settings(max_examples=FAST_EXAMPLES, **FUZZ_SETTINGS)
def test_fuzz_as_analyst(case: Any, fuzz_app: World) -> None:
    _check(case, fuzz_app.analyst_key)


@pytest.mark.full
@ADMIN.parametrize()
@settings(max_examples=FULL_EXAMPLES, **FUZZ_SETTINGS)
def test_fuzz_full_as_admin(case: Any, fuzz_app: World) -> None:
    _check(case, ADMIN_KEY)


@pytest.mark.full
@ANALYST_FULL.parametrize()
@settings(max_examples=FULL_EXAMPLES, **FUZZ_SETTINGS)
def test_fuzz_full_as_analyst(case: Any, fuzz_app: World) -> None:
    _check(case, fuzz_app.analyst_key)


def test_a_cancelled_wait_does_not_cancel_queued_work() -> None:
    """Regression (found by this fuzzer): a request handler cancelled while its release waited
    in the queue (client timeout) cancelled the release itself: charged, never run, its ledger
    entry ``running`` forever, a queue slot leaked and Idempotency-Key retries waiting 600 s."""
    pool = JobPool(workers=1, capacity=2)
    gate, ran = threading.Event(), threading.Event()
    first = pool.submit(pool.try_acquire(), lambda: gate.wait(10))
    second = pool.submit(pool.try_acquire(), ran.set)
    assert second.cancel()  # what asyncio.wrap_future does when the awaiting handler is cancelled
    gate.set()
    assert first.result(timeout=10)
    assert ran.wait(10), "the queued work was cancelled with the wait"
    pool.shutdown()
