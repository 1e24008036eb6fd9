"""A server killed in the middle of a release fails closed (ARCHITECTURE.md "Privacy rules" 4).

A long SHK release is charged and running when the process gets ``kill -9``. A new process on
the same store marks the orphaned entry ``aborted`` at start-up; the charge stays spent, and
nothing else in the store changed: no other entry, no stored release, the other dataset's budget,
ledger and grants, and the keys are as they were.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from tests.e2e.api import (
    ADMIN,
    EXACT_RELEASE,
    FIRST_RELEASE_TIMEOUT_S,
    QUANTILE,
    create_analyst,
    create_dataset,
    dataset,
    grant,
    ledger,
)
from tests.e2e.server import Serve, ServerProcess

LONG_RELEASE: dict[str, Any] = {
    "utility": QUANTILE,
    "epsilon": 0.05,
    "sampler": {"particles": 100_000},
}
"""Small ε means a long flow, and 1e5 particles make each step slow: minutes of sampling."""
STILL_RUNNING_S = 3.0


def _snapshot(client: httpx.Client, other_id: str) -> dict[str, Any]:
    """What the kill must leave alone (the target dataset's budget aside)."""

    def get(path: str) -> Any:
        response = client.get(path, headers=ADMIN)
        assert response.status_code == 200, response.text
        return response.json()

    return {
        "datasets": get("/v1/datasets"),
        "keys": get("/v1/keys"),
        "other_ledger": get(f"/v1/datasets/{other_id}/ledger"),
        "other_grants": get(f"/v1/datasets/{other_id}/grants"),
    }


def _wait_for_running_entry(server: ServerProcess, dataset_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + FIRST_RELEASE_TIMEOUT_S
    with server.client() as client:
        while time.monotonic() < deadline:
            entries = ledger(client, dataset_id)
            if entries:
                [entry] = entries
                assert entry["status"] == "running", f"{entry}\n{server.log_tail()}"
                return entry
            time.sleep(0.2)
    raise AssertionError(f"the release was never charged\n{server.log_tail()}")


def test_kill_9_during_a_release_leaves_it_charged_and_aborted(
    database_url: str, serve: Serve
) -> None:
    first = serve(database_url, name="first")
    with first.client() as admin:
        target = create_dataset(admin, epsilon=1.0)
        other = create_dataset(admin, epsilon=2.0)
        key_id, analyst = create_analyst(admin)
        grant(admin, target["id"], key_id, epsilon_cap=0.5)
        grant(admin, other["id"], key_id)
        spent = admin.post(
            f"/v1/datasets/{other['id']}/samples", json=EXACT_RELEASE, headers=analyst
        )
        assert spent.status_code == 201, spent.text
        before = _snapshot(admin, other["id"])

    answer: dict[str, Any] = {}

    def release() -> None:
        try:
            answer["response"] = httpx.post(
                f"{first.base_url}/v1/datasets/{target['id']}/samples",
                json=LONG_RELEASE,
                headers=analyst,
                timeout=600.0,
            )
        except httpx.TransportError as exc:
            answer["error"] = exc

    caller = threading.Thread(target=release, name="long-release")
    caller.start()
    try:
        entry = _wait_for_running_entry(first, target["id"])
        time.sleep(STILL_RUNNING_S)
        with first.client() as client:
            statuses = [e["status"] for e in ledger(client, target["id"])]
        assert statuses == ["running"], first.log_tail()
        assert caller.is_alive(), f"{answer}\n{first.log_tail()}"  # still sampling: no answer
        killed_pid = first.pid
        first.kill()
    finally:
        caller.join(timeout=60.0)
    assert not caller.is_alive()
    assert "error" in answer and "response" not in answer, answer

    second = serve(database_url, name="second")
    assert second.pid != killed_pid
    assert "marked orphaned runs aborted" in second.log_path.read_text(), second.log_tail()
    with second.client() as admin:
        [after_entry] = ledger(admin, target["id"])
        assert after_entry == {**entry, "status": "aborted"}
        assert after_entry["charged"] == {"epsilon": 0.05, "delta": 0.0}
        budget = dataset(admin, target["id"])["budget"]
        assert budget["spent"] == {"epsilon": 0.05, "delta": 0.0}
        missing = admin.get(f"/v1/releases/{entry['release_id']}", headers=ADMIN)
        assert missing.status_code == 404
        assert missing.json()["code"] == "not_found"

        after = _snapshot(admin, other["id"])
        [target_before] = [d for d in before["datasets"]["items"] if d["id"] == target["id"]]
        [target_after] = [d for d in after["datasets"]["items"] if d["id"] == target["id"]]
        assert target_before["budget"]["spent"] == {"epsilon": 0.0, "delta": 0.0}
        assert {**target_after, "budget": target_before["budget"]} == target_before
        for part in ("datasets", "keys", "other_ledger", "other_grants"):
            if part == "datasets":
                strip = [d for d in after[part]["items"] if d["id"] != target["id"]]
                assert strip == [d for d in before[part]["items"] if d["id"] != target["id"]]
            else:
                assert after[part] == before[part], part

        grants = admin.get(f"/v1/datasets/{target['id']}/grants", headers=ADMIN).json()
        assert [g["spent"]["epsilon"] for g in grants["items"]] == [0.05]
        # the analyst's key still works (a release would, too: the grant has 0.45 left)
        assert admin.get(f"/v1/datasets/{target['id']}", headers=analyst).status_code == 200
