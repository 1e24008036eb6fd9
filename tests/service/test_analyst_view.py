"""The exact record count never reaches an analyst (ARCHITECTURE.md privacy rule 3, API.md
"Datasets"): under ``add_remove`` neighbouring n is exactly what differential privacy protects.

One dataset holds a distinctive number of records (``N`` = 7919, a prime no public parameter of
the test uses). An analyst granted it then calls every operation the app routes — the list is
read from the app itself (its routes, checked against its OpenAPI document), so a new endpoint
is walked as soon as it exists: GETs by filling their path parameters with real ids, other
methods with the request :func:`_requests` gives them (an operation without one fails the test
until it gets one). No response body, header or log line captured meanwhile may carry the
count, as a JSON number or as text. Admins (the data owners) still read ``n_records``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.dashboard.router import ASSETS
from service.logs import JsonFormatter
from tests.service.conftest import auth, create_analyst, grant

N = 7919
# "7919" as a token: not part of a longer number, a fraction's digits or a random id, whose
# characters (token_urlsafe) would otherwise make the check fail by chance once in a while.
TOKEN = re.compile(r"(?<![0-9A-Za-z_.])7919(?![0-9A-Za-z_])")
COLUMNS = [
    {"name": "age", "type": "float", "lower": 0, "upper": 100},
    {"name": "city", "type": "category", "categories": ["a", "b", "c"]},
]
MEDIAN = {"family": "quantile", "column": "age", "q": 0.5}
POINTS = [[0.0, 0.0], [1.0, 0.5], [0.5, 1.0], [1.5, 1.5]]
TARGET = [[2.0, 2.0], [2.5, 1.5], [3.0, 2.5]]

Operation = tuple[str, str]  # (METHOD, path template)


def _routes(app: FastAPI) -> set[Operation]:
    """Every (method, path) the app answers (HEAD aside), included routers followed."""
    out: set[Operation] = set()

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            included = getattr(route, "original_router", None)  # FastAPI's included router
            if included is not None:
                walk(included.routes, prefix + route.include_context.prefix)
            else:
                assert hasattr(route, "path") and hasattr(route, "methods"), route
                out.update((m, prefix + route.path) for m in route.methods if m != "HEAD")

    walk(list(app.routes), "")
    return out


def _documented(client: TestClient) -> set[Operation]:
    paths = client.get("/openapi.json").json()["paths"]
    return {(method.upper(), path) for path, ops in paths.items() for method in ops}


def _numbers(value: Any) -> Iterator[float]:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)


def _leaks(text: str) -> list[str]:
    """Where ``text`` (a body, a header, a log line) shows the count: as a token or a number."""
    found = [text[max(m.start() - 40, 0) : m.end() + 40] for m in TOKEN.finditer(text)]
    try:
        parsed = json.loads(text)
    except ValueError:
        return found
    return found + [f"JSON number {v!r}" for v in _numbers(parsed) if v == N]


class Walk:
    """The analyst's calls, each checked for the count as soon as it is answered."""

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers
        self.walked: dict[Operation, list[int]] = {}
        self.leaks: list[str] = []

    def call(self, method: str, template: str, path: str, body: Any = None) -> Any:
        response = self.client.request(method, path, json=body, headers=self.headers)
        self.walked.setdefault((method, template), []).append(response.status_code)
        where = f"{method} {path} -> {response.status_code}"
        self.leaks += [f"{where} body: {leak}" for leak in _leaks(response.text)]
        for name, value in response.headers.items():
            if name == "content-length" and value == str(len(response.content)):
                continue  # the body's own length (the body is checked above)
            self.leaks += [f"{where} header {name}: {leak}" for leak in _leaks(value)]
        return response


def _wait(walk: Walk, job_id: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = walk.call("GET", "/v1/jobs/{job_id}", f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == "succeeded", job
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def _requests(ids: dict[str, str]) -> dict[Operation, list[Any]]:
    """Bodies of the operations that are not GETs (in the order they are sent)."""
    release = {"utility": MEDIAN, "epsilon": 0.5, "method": "exact"}
    flow = {"source": POINTS, "target": TARGET, "kernel": {"bandwidth": 1.0}, "steps": 5}
    task = {"kind": "student_teacher", "input_dim": 3, "n_train": 20, "data_seed": 2}
    return {
        ("POST", "/v1/datasets/{dataset_id}/samples"): [
            {**release, "n_samples": 4},
            {"utility": {"family": "mode", "column": "city"}, "epsilon": 0.5, "method": "exact"},
            {"utility": MEDIAN, "epsilon": 0.5, "sampler": {"particles": 64}},
            {**release, "async": True},
            {**release, "epsilon": 1000.0},  # more than the budget: 409
            {**release, "utility": {**MEDIAN, "column": "nope"}},  # 422
        ],
        ("POST", "/v1/flows/mmd"): [flow],
        ("POST", "/v1/flows/drmmd"): [{**flow, "lambda": 0.1}],
        ("POST", "/v1/flows/muon"): [{"task": task, "particles": 4, "steps": 5, "seed": 1}],
        ("POST", "/v1/memories"): [
            {"patterns": [{"points": POINTS}, {"points": TARGET}], "blur": 0.5}
        ],
        ("POST", "/v1/memories/{memory_id}/retrieve"): [{"query": {"points": POINTS}, "steps": 4}],
        # On the release's samples (added below); enough steps to converge: a fit cut short
        # can report a NaN energy, which the service cannot encode (500).
        ("POST", "/v1/generators"): [{"fit": {"samples": 256, "max_steps": 200}}],
        ("POST", "/v1/generators/{generator_id}/samples"): [{"n": 8, "seed": 1}],
        # Admin-only operations: refused (403), and the refusal is checked as well.
        ("POST", "/v1/keys"): [{"name": "x", "role": "analyst"}],
        ("POST", "/v1/datasets"): [
            {"name": "x", "columns": COLUMNS, "records": [[1.0, "a"]], "budget": {"epsilon": 1}}
        ],
        ("POST", "/v1/datasets/{dataset_id}/grants"): [{"key_id": ids["key_id"]}],
        ("DELETE", "/v1/keys/{key_id}"): [None],
        ("DELETE", "/v1/jobs/{job_id}"): [None],
        ("DELETE", "/v1/generators/{generator_id}"): [None],
    }


# Which id a created resource's answer yields (so later calls can use it).
CREATES = {
    "/v1/datasets/{dataset_id}/samples": ("release_id", "job_id"),
    "/v1/memories": ("memory_id",),
    "/v1/generators": ("generator_id",),
}


def _fill(template: str, ids: dict[str, str]) -> str:
    names = re.findall(r"{(\w+)}", template)
    missing = [name for name in names if name not in ids]
    assert not missing, f"{template}: no id for {missing}; give the walk one"
    return template.format(**{name: ids[name] for name in names})


def _walk_everything(app: FastAPI, client: TestClient, ids: dict[str, str], walk: Walk) -> None:
    operations = _routes(app)
    documented = _documented(client)
    assert documented <= operations, documented - operations  # the route walk misses nothing
    requests = _requests(ids)
    unknown = {op for op in operations if op[0] != "GET"} - set(requests)
    assert not unknown, f"operations with no request in _requests (add one): {sorted(unknown)}"

    # Creating calls first (their ids feed the rest), in the order of ``_requests``.
    for (method, template), bodies in requests.items():
        if method != "POST" or (method, template) not in operations:
            continue
        for body in bodies:
            if template == "/v1/generators":
                body = {**body, "release_id": ids["release_id"]}
            response = walk.call(method, template, _fill(template, ids), body)
            if response.status_code in (201, 202) and template in CREATES:
                answer = response.json()
                for name in CREATES[template]:
                    if name in answer:
                        ids.setdefault(name, answer[name])
                if "job_id" in answer:
                    _wait(walk, answer["job_id"])

    for method, template in sorted(op for op in operations if op[0] == "GET"):
        if template == "/dashboard/static/{name}":
            for name in ASSETS:
                walk.call(method, template, template.format(name=name))
        else:
            walk.call(method, template, _fill(template, ids))

    for (method, template), bodies in requests.items():  # deletions last
        if method == "DELETE" and (method, template) in operations:
            for body in bodies:
                walk.call(method, template, _fill(template, ids), body)

    assert set(walk.walked) == operations, operations - set(walk.walked)


def test_no_endpoint_shows_an_analyst_the_record_count(
    client: TestClient, admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # everything at INFO; the privflow loggers at DEBUG too
    for name in ("service", "dp_core", "uvicorn"):  # (Numba's DEBUG IR dumps only slow it)
        caplog.set_level(logging.DEBUG, logger=name)
    body = {
        "name": "census",
        "columns": COLUMNS,
        "records": [[float((7 * i) % 101), "abc"[i % 3]] for i in range(N)],
        "budget": {"epsilon": 10.0, "delta": 1e-6},
        "size_bound": 100_000,
    }
    created = client.post("/v1/datasets", json=body, headers=admin)
    assert created.status_code == 201, created.text
    dataset_id = created.json()["id"]
    key_id, analyst = create_analyst(client)
    grant(client, dataset_id, key_id)
    other_id, _ = create_analyst(client, "bystander")
    caplog.clear()

    walk = Walk(client, analyst)
    ids = {"dataset_id": dataset_id, "key_id": other_id}
    _walk_everything(client.app, client, ids, walk)  # type: ignore[arg-type]

    # The walk reached real resources, not only refusals.
    for operation in [
        ("GET", "/v1/datasets"),
        ("GET", "/v1/datasets/{dataset_id}"),
        ("GET", "/v1/datasets/{dataset_id}/ledger"),
        ("GET", "/v1/datasets/{dataset_id}/composition"),
        ("GET", "/v1/releases/{release_id}"),
        ("GET", "/v1/jobs/{job_id}"),
        ("GET", "/v1/generators/{generator_id}"),
        ("GET", "/dashboard"),
    ]:
        assert 200 in walk.walked[operation], (operation, walk.walked[operation])
    assert 201 in walk.walked[("POST", "/v1/datasets/{dataset_id}/samples")]
    assert 409 in walk.walked[("POST", "/v1/datasets/{dataset_id}/samples")]
    assert walk.walked[("POST", "/v1/datasets")] == [403]
    formatter = JsonFormatter()
    logged = [
        f"log {record.name}: {leak}"
        for record in caplog.records
        for leak in _leaks(formatter.format(record))
    ]
    assert caplog.records
    leaks = walk.leaks + logged
    assert not leaks, "the record count reached the analyst:\n" + "\n".join(leaks)
    seen = client.get(f"/v1/datasets/{dataset_id}", headers=analyst).json()
    assert "n_records" not in seen and seen["size_bound"] == 100_000


def test_admins_still_read_the_record_count(client: TestClient, admin: dict[str, str]) -> None:
    body = {
        "name": "census",
        "columns": COLUMNS,
        "records": [[float(i % 101), "abc"[i % 3]] for i in range(37)],
        "budget": {"epsilon": 1.0},
    }
    created = client.post("/v1/datasets", json=body, headers=admin)
    assert created.status_code == 201, created.text
    dataset = created.json()
    assert dataset["n_records"] == 37
    assert client.get(f"/v1/datasets/{dataset['id']}", headers=admin).json()["n_records"] == 37
    listed = client.get("/v1/datasets", headers=admin).json()["items"]
    assert [d["n_records"] for d in listed if d["id"] == dataset["id"]] == [37]
    # Another admin key (the owner role) reads it as well.
    response = client.post("/v1/keys", json={"name": "owner", "role": "admin"}, headers=admin)
    other = auth(response.json()["key"])
    assert client.get(f"/v1/datasets/{dataset['id']}", headers=other).json()["n_records"] == 37
