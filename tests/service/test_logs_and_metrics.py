"""Logs and metrics carry no private values; metrics report releases, budgets, refusals, jobs."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.logs import JsonFormatter, logging_config
from service.settings import Settings
from tests.service.conftest import ADMIN_KEY, QUANTILE, create_analyst, grant

# Distinctive private values (never in a log line or a metric).
PRIVATE_AGE = 13.579246
PRIVATE_INCOME = 86420.753
PRIVATE_STRINGS = ("13.579246", "13.57924", "86420.753", "86420.75")

COLUMNS = [
    {"name": "age", "type": "float", "lower": 0, "upper": 100},
    {"name": "income", "type": "float", "lower": 0, "upper": 100000},
    {"name": "city", "type": "category", "categories": ["a", "b"]},
]


def _dataset(client: TestClient, admin: dict[str, str], epsilon: float = 10.0) -> str:
    records: list[list[Any]] = [
        [float(10 + i % 70), 1000.0 * (i % 40), "ab"[i % 2]] for i in range(40)
    ]
    records[7] = [PRIVATE_AGE, PRIVATE_INCOME, "b"]
    body = {"name": "d", "columns": COLUMNS, "records": records, "budget": {"epsilon": epsilon}}
    response = client.post("/v1/datasets", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _samples(client: TestClient, dataset_id: str, body: dict[str, Any], headers: Any) -> Any:
    return client.post(f"/v1/datasets/{dataset_id}/samples", json=body, headers=headers)


def _metric(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def _number_strings(values: list[list[Any]]) -> set[str]:
    """Distinctive text forms of released floats (short ones like "60.0" are not distinctive)."""
    out = set()
    for row in values:
        for v in row:
            if isinstance(v, float):
                out.update(s for s in (repr(v), f"{v:.6f}") if sum(c.isdigit() for c in s) >= 7)
    return out


def test_no_private_value_reaches_logs_or_metrics(
    make_settings: Callable[..., Settings], admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(make_settings())) as client:
        _private_values_stay_out(client, admin, caplog)


def _private_values_stay_out(
    client: TestClient, admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    dataset_id = _dataset(client, admin, epsilon=4.0)
    key_id, analyst = create_analyst(client)
    analyst_secret = analyst["Authorization"].removeprefix("Bearer ")
    grant(client, dataset_id, key_id)
    released: list[list[Any]] = []
    for body, headers in (
        ({"utility": QUANTILE, "epsilon": 1.0, "method": "exact"}, analyst),
        ({"utility": QUANTILE, "epsilon": 1.0, "sampler": {"particles": 64}}, analyst),
        (
            {
                "utility": {"family": "mean", "columns": ["age", "income"], "clip": 5.0},
                "epsilon": 1.0,
                "sampler": {"particles": 64},
                "async": True,
            },
            admin,
        ),
    ):
        response = _samples(client, dataset_id, body, headers)
        assert response.status_code in (201, 202), response.text
        if response.status_code == 202:
            job_id = response.json()["job_id"]
            deadline = time.monotonic() + 60
            while (job := client.get(f"/v1/jobs/{job_id}", headers=admin).json())["status"] not in (
                "succeeded",
                "failed",
                "cancelled",
            ):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert job["status"] == "succeeded"
            released.extend(job["result"]["samples"])
        else:
            released.extend(response.json()["samples"])
    # A refusal, a validation error that quotes a record to its owner, and a bad key.
    refused = _samples(
        client, dataset_id, {"utility": QUANTILE, "epsilon": 5.0, "method": "exact"}, analyst
    )
    assert refused.status_code == 409
    bad = client.post(
        "/v1/datasets",
        json={"name": "x", "columns": COLUMNS, "records": [[PRIVATE_AGE, 101000.0, "a"]],
              "budget": {"epsilon": 1.0}},
        headers=admin,
    )  # fmt: skip
    assert bad.status_code == 422
    assert client.get("/v1/datasets", headers={"Authorization": "Bearer wrong"}).status_code == 401
    metrics_text = client.get("/metrics", headers=admin).text

    forbidden = set(PRIVATE_STRINGS) | _number_strings(released) | {ADMIN_KEY, analyst_secret}
    assert len(released) == 3
    formatter = JsonFormatter()
    # The service's own loggers were captured (start-up at least), not only the test client's.
    assert any(r.name.startswith("service") for r in caplog.records)
    for record in caplog.records:
        lines = (record.getMessage(), formatter.format(record))
        for value in forbidden:
            for line in lines:
                assert value not in line, (value, record.name, line)
    for value in forbidden:
        assert value not in metrics_text, value


def test_metrics_report_releases_budgets_refusals_and_jobs(
    make_settings: Callable[..., Settings], admin: dict[str, str]
) -> None:
    # Per-dataset series need the operator's opt-in (test_operator_surfaces: the default).
    with TestClient(create_app(make_settings(metrics_dataset_labels=True))) as client:
        _releases_budgets_refusals_and_jobs(client, admin)


def _releases_budgets_refusals_and_jobs(client: TestClient, admin: dict[str, str]) -> None:
    dataset_id = _dataset(client, admin, epsilon=3.0)
    other_id = _dataset(client, admin, epsilon=7.0)
    exact = {"utility": QUANTILE, "epsilon": 0.5, "method": "exact"}
    shk = {"utility": QUANTILE, "epsilon": 0.75, "sampler": {"particles": 64}}
    for body in (exact, exact, shk):
        assert _samples(client, dataset_id, body, admin).status_code == 201
    # A replay is not another release.
    replay = {**admin, "Idempotency-Key": "once"}
    for _ in range(2):
        assert _samples(client, dataset_id, exact, replay).status_code == 201
    text = client.get("/metrics", headers=admin).text
    assert client.get("/metrics", headers=admin).headers["content-type"].startswith("text/plain")

    assert _metric(text, "privflow_releases_total", dataset=dataset_id, method="exact") == 3.0
    assert _metric(text, "privflow_releases_total", dataset=dataset_id, method="shk") == 1.0
    assert _metric(text, "privflow_releases_total", dataset=other_id, method="exact") is None
    charged = _metric(text, "privflow_epsilon_charged_total", dataset=dataset_id)
    assert charged == pytest.approx(2.25)
    budget = client.get(f"/v1/datasets/{dataset_id}", headers=admin).json()["budget"]
    remaining = _metric(text, "privflow_budget_remaining_epsilon", dataset=dataset_id)
    assert remaining == pytest.approx(budget["remaining"]["epsilon"]) == pytest.approx(0.75)
    spent = _metric(text, "privflow_budget_spent_epsilon", dataset=dataset_id)
    assert spent == pytest.approx(budget["spent"]["epsilon"])
    assert _metric(text, "privflow_budget_epsilon", dataset=dataset_id) == 3.0
    assert _metric(text, "privflow_budget_remaining_epsilon", dataset=other_id) == 7.0
    assert _metric(text, "privflow_refusals_total", code="budget_exceeded") in (None, 0.0)
    assert _metric(text, "privflow_job_queue_depth") == 0.0
    assert _metric(text, "privflow_job_duration_seconds_count", kind="release") == 4.0
    assert _metric(text, "privflow_job_duration_seconds_sum", kind="release") > 0.0

    # A refusal is counted by code and changes no budget gauge.
    refused = _samples(client, dataset_id, {**exact, "epsilon": 1.0}, admin)
    assert refused.status_code == 409
    text = client.get("/metrics", headers=admin).text
    assert _metric(text, "privflow_refusals_total", code="budget_exceeded") == 1.0
    assert _metric(text, "privflow_budget_remaining_epsilon", dataset=dataset_id) == (
        pytest.approx(0.75)
    )
    assert _metric(text, "privflow_releases_total", dataset=dataset_id, method="exact") == 3.0
    assert _metric(text, "privflow_job_duration_seconds_count", kind="release") == 4.0
    # Requests are counted by route template, never by raw path.
    assert dataset_id not in "".join(
        line for line in text.splitlines() if line.startswith("privflow_http_requests_total")
    )
    assert (
        _metric(
            text,
            "privflow_http_requests_total",
            route="/v1/datasets/{dataset_id}/samples",
            method="POST",
            status="409",
        )
        == 1.0
    )


def test_queue_depth_counts_work_in_flight(client: TestClient, admin: dict[str, str]) -> None:
    dataset_id = _dataset(client, admin)
    body = {"utility": QUANTILE, "epsilon": 0.05, "sampler": {"particles": 20000}, "async": True}
    job_id = _samples(client, dataset_id, body, admin).json()["job_id"]
    try:
        assert (
            _metric(client.get("/metrics", headers=admin).text, "privflow_job_queue_depth") == 1.0
        )
    finally:
        client.delete(f"/v1/jobs/{job_id}", headers=admin)
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{job_id}", headers=admin).json()["status"] != "cancelled":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    deadline = time.monotonic() + 10
    while _metric(client.get("/metrics", headers=admin).text, "privflow_job_queue_depth") != 0.0:
        assert time.monotonic() < deadline
        time.sleep(0.05)


# --------------------------------------------------------------------------- JSON log lines


def _record(message: str, *args: Any, exc: bool = False, **extra: Any) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("private text 31.4159 must not be logged")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord(
        "service.test", logging.WARNING, __file__, 1, message, args, exc_info
    )
    record.__dict__.update(extra)
    return record


def test_json_formatter_emits_one_object_per_line() -> None:
    formatter = JsonFormatter()
    records = [
        _record("plain"),
        _record("with %s and %d", "args", 3),
        _record('multi\nline "quoted" \\ message\r\n\ttab'),
        _record("extras", release_id="rel_x", count=3, when=datetime(2024, 1, 1), obj=object()),
        _record("failure", exc=True, error_type_hint="x"),
    ]
    for record in records:
        line = formatter.format(record)
        assert "\n" not in line and "\r" not in line
        out = json.loads(line)
        assert isinstance(out, dict)
        assert out["level"] == "warning"
        assert out["logger"] == "service.test"
        assert out["message"] == record.getMessage()
        datetime.fromisoformat(out["time"])
        for standard in ("args", "msg", "exc_info", "pathname", "levelno"):
            assert standard not in out
    assert json.loads(formatter.format(records[3]))["release_id"] == "rel_x"
    assert json.loads(formatter.format(records[3]))["count"] == 3
    failure = formatter.format(records[4])
    assert json.loads(failure)["error_type"] == "ValueError"
    assert "31.4159" not in failure and "Traceback" not in failure


def test_logging_config_writes_json_lines() -> None:
    stream = io.StringIO()
    names = ("service", "uvicorn", "uvicorn.error", "uvicorn.access", "dp_core", "py.warnings")
    saved = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
               logging.getLogger(name).propagate)
        for name in names
    }  # fmt: skip
    config = logging_config("debug")
    config["handlers"]["default"]["stream"] = stream
    try:
        logging.config.dictConfig(config)
        logging.getLogger("service.x").debug("first %s", "line", extra={"release_id": "rel_1"})
        logging.getLogger("dp_core.y").info("second\nline")
        try:
            raise RuntimeError("secret")
        except RuntimeError:
            logging.getLogger("service.z").exception("failed")
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    parsed = [json.loads(line) for line in lines]
    assert parsed[0]["message"] == "first line" and parsed[0]["release_id"] == "rel_1"
    assert parsed[1]["message"] == "second\nline" and parsed[1]["level"] == "info"
    assert parsed[2]["error_type"] == "RuntimeError" and "secret" not in lines[2]
