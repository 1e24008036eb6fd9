"""Retries after a lost answer, through a proxy that drops the first connection once the service
has acted on it: a release is resent with the same Idempotency-Key and charged exactly once; a
plain resend (the control) is charged twice; a non-idempotent call is not resent at all."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from privflow_client import Client, ConnectionFailed, Dataset, RetryPolicy

from tests.client._proxy import DroppingProxy
from tests.client.conftest import Server, free_port

MEDIAN = {"family": "quantile", "column": "age", "q": 0.5}
FAST = RetryPolicy(backoff=0.01, max_backoff=0.05)


def test_a_release_whose_answer_was_lost_is_retried_and_charged_once(
    server: Server, admin: Client, make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(epsilon=2.0)
    with (
        DroppingProxy(server.port, drop=1) as proxy,
        Client(proxy.url, server.admin_key, retry=FAST) as client,
    ):
        release = client.releases.create(dataset.id, MEDIAN, epsilon=0.5, method="exact")
        assert (proxy.dropped, proxy.connections) == (1, 2)

    assert admin.datasets.budget(dataset.id).spent.epsilon == 0.5
    entries = list(admin.datasets.ledger(dataset.id))
    assert [e.release_id for e in entries] == [release.release_id]
    assert admin.releases.get(release.release_id).samples == release.samples


def test_the_control_a_resend_without_idempotency_key_is_charged_twice(
    server: Server, admin: Client, make_dataset: Callable[..., Dataset]
) -> None:
    """Shows the proxy really lets the service act before dropping: what the SDK prevents."""
    dataset = make_dataset(epsilon=2.0)
    body = {"utility": MEDIAN, "epsilon": 0.5, "method": "exact"}
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    with DroppingProxy(server.port, drop=1) as proxy, httpx.Client(base_url=proxy.url) as raw:
        path = f"/v1/datasets/{dataset.id}/samples"
        with pytest.raises(httpx.RemoteProtocolError):
            raw.post(path, json=body, headers=headers)
        assert raw.post(path, json=body, headers=headers).status_code == 201
    assert admin.datasets.budget(dataset.id).spent.epsilon == 1.0
    assert len(list(admin.datasets.ledger(dataset.id))) == 2


def test_reads_are_retried_after_a_dropped_connection(
    server: Server, make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset()
    with (
        DroppingProxy(server.port, drop=2) as proxy,
        Client(proxy.url, server.admin_key, retry=FAST) as client,
    ):
        assert client.datasets.get(dataset.id).id == dataset.id
        assert (proxy.dropped, proxy.connections) == (2, 3)


def test_a_non_idempotent_post_is_not_resent_once_it_may_have_arrived(
    server: Server, admin: Client
) -> None:
    with (
        DroppingProxy(server.port, drop=1) as proxy,
        Client(proxy.url, server.admin_key, retry=FAST) as client,
    ):
        with pytest.raises(ConnectionFailed) as raised:
            client.keys.create("created-once")
        assert raised.value.status is None and raised.value.code == "connection_failed"
        assert proxy.connections == 1
    assert [k.name for k in admin.keys.list()].count("created-once") == 1


def test_an_unreachable_service_fails_after_the_allowed_attempts() -> None:
    attempts: list[httpx.Request] = []
    with Client(
        f"http://127.0.0.1:{free_port()}",
        "pf_key",
        retry=RetryPolicy(max_attempts=3, backoff=0.01),
    ) as client:
        client._http.event_hooks["request"].append(attempts.append)
        with pytest.raises(ConnectionFailed, match="ConnectError"):
            client.keys.create("never-sent")  # not sent at all, so even a POST is retried
    assert len(attempts) == 3
