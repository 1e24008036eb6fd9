"""Problem codes to exceptions, provoked on a real service: 401, 403, 404, 409, 413, 422 and
``idempotency_conflict``; and the Idempotency-Key replay that makes retries charge once."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from privflow_client import (
    BudgetExceeded,
    Client,
    Dataset,
    Forbidden,
    IdempotencyConflict,
    InvalidRequest,
    KeyCreated,
    NotFound,
    PrivflowError,
    TooLarge,
    Unauthenticated,
)

from tests.client.conftest import BODY_LIMIT, COLUMNS, Server

MEDIAN = {"family": "quantile", "column": "age", "q": 0.5}
MakeAnalyst = Callable[..., tuple[KeyCreated, Client]]


def test_unknown_or_missing_keys_are_unauthenticated(server: Server) -> None:
    for key in ("pf_not_a_key", None):
        with Client(server.url, key) as client, pytest.raises(Unauthenticated) as raised:
            client.datasets.get("ds_anything")
        assert (raised.value.status, raised.value.code) == (401, "unauthenticated")
        assert "Bearer" in raised.value.detail


def test_admin_only_calls_and_ungranted_datasets_are_forbidden(
    make_dataset: Callable[..., Dataset], make_analyst: MakeAnalyst
) -> None:
    dataset = make_dataset()
    key, analyst = make_analyst()
    calls = [
        lambda: analyst.keys.create("escalation", role="admin"),
        lambda: list(analyst.keys.list()),
        lambda: analyst.datasets.create("mine", COLUMNS, [[1.0, "a"]], epsilon=1.0),
        lambda: analyst.datasets.grant(dataset.id, key.id),
        lambda: analyst.releases.create(dataset.id, MEDIAN, epsilon=0.1, method="exact"),
        lambda: list(analyst.datasets.ledger(dataset.id)),
    ]
    for call in calls:
        with pytest.raises(Forbidden) as raised:
            call()
        assert (raised.value.status, raised.value.code) == (403, "forbidden")


def test_missing_resources_are_not_found(admin: Client) -> None:
    calls = [
        lambda: admin.datasets.get("ds_missing"),
        lambda: admin.datasets.grant("ds_missing", "key_admin"),
        lambda: admin.releases.get("rel_missing"),
        lambda: admin.jobs.get("job_missing"),
        lambda: admin.jobs.cancel("job_missing"),
        lambda: admin.keys.revoke("key_missing"),
        lambda: admin.releases.create("ds/../missing", MEDIAN, epsilon=0.1),  # ids are quoted
    ]
    for call in calls:
        with pytest.raises(NotFound) as raised:
            call()
        assert (raised.value.status, raised.value.code) == (404, "not_found")


def test_a_release_over_budget_is_refused_and_spends_nothing(
    admin: Client, make_dataset: Callable[..., Dataset], make_analyst: MakeAnalyst
) -> None:
    dataset = make_dataset(epsilon=1.0)
    _, analyst = make_analyst(dataset.id, epsilon_cap=0.3)
    with pytest.raises(BudgetExceeded, match="cap") as raised:  # the analyst's cap
        analyst.releases.create(dataset.id, MEDIAN, epsilon=0.5, method="exact")
    assert (raised.value.status, raised.value.code) == (409, "budget_exceeded")
    with pytest.raises(BudgetExceeded, match="remaining budget"):  # the dataset's budget
        admin.releases.create(dataset.id, MEDIAN, epsilon=1.5, method="exact")
    assert admin.datasets.budget(dataset.id).spent.epsilon == 0.0
    assert list(admin.datasets.ledger(dataset.id)) == []


def test_a_body_over_the_size_limit_is_too_large(admin: Client) -> None:
    rows = [[50.0, "a"]] * (BODY_LIMIT // 8)
    with pytest.raises(TooLarge) as raised:
        admin.datasets.create("big", COLUMNS, rows, epsilon=1.0)
    assert (raised.value.status, raised.value.code) == (413, "too_large")


def test_invalid_requests_name_their_fields(
    admin: Client, make_dataset: Callable[..., Dataset]
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        admin.datasets.create("bad", COLUMNS, [[10.0, "a"], [120.0, "z"]], epsilon=1.0)
    assert (raised.value.status, raised.value.code) == (422, "invalid_request")
    assert {e["field"] for e in raised.value.errors} == {"records[1][0]", "records[1][1]"}

    dataset = make_dataset()
    with pytest.raises(InvalidRequest) as raised:
        admin.releases.create(dataset.id, {**MEDIAN, "q": 1.5}, epsilon=0.5, method="exact")
    assert [e["field"].rsplit(".", 1)[-1] for e in raised.value.errors] == ["q"]
    with pytest.raises(InvalidRequest, match=r"utility\.column"):
        admin.releases.create(dataset.id, {**MEDIAN, "column": "city"}, epsilon=0.5)
    assert admin.datasets.budget(dataset.id).spent.epsilon == 0.0


def test_request_models_refuse_typos_before_sending(admin: Client) -> None:
    with pytest.raises(InvalidRequest) as raised:
        admin.releases.create("ds_x", {**MEDIAN, "quantile": 0.5}, epsilon=0.5)
    assert raised.value.status is None  # refused locally: nothing was sent
    assert raised.value.errors[0]["field"].endswith("quantile")
    with pytest.raises(InvalidRequest):
        admin.releases.create("ds_x", {"family": "median", "column": "age"}, epsilon=0.5)


def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_body(
    admin: Client, make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(epsilon=2.0)
    key = str(uuid.uuid4())
    first = admin.releases.create(
        dataset.id, MEDIAN, epsilon=0.5, method="exact", idempotency_key=key
    )
    again = admin.releases.create(
        dataset.id, MEDIAN, epsilon=0.5, method="exact", idempotency_key=key
    )
    assert again == first  # the first answer, not a new release
    with pytest.raises(IdempotencyConflict) as raised:
        admin.releases.create(dataset.id, MEDIAN, epsilon=0.7, method="exact", idempotency_key=key)
    assert (raised.value.status, raised.value.code) == (422, "idempotency_conflict")
    assert not isinstance(raised.value, InvalidRequest)
    assert admin.datasets.budget(dataset.id).spent.epsilon == 0.5
    assert [e.release_id for e in admin.datasets.ledger(dataset.id)] == [first.release_id]

    refused_key = str(uuid.uuid4())
    for _ in range(2):  # a refusal is replayed too
        with pytest.raises(BudgetExceeded):
            admin.releases.create(
                dataset.id, MEDIAN, epsilon=5.0, method="exact", idempotency_key=refused_key
            )


def test_errors_read_as_one_line_with_code_status_and_fields() -> None:
    error = InvalidRequest(
        "Invalid fields: q", status=422, errors=[{"field": "utility.q", "message": "too big"}]
    )
    assert str(error) == "422 invalid_request: Invalid fields: q (utility.q: too big)"
    assert isinstance(error, PrivflowError) and error.code == "invalid_request"
