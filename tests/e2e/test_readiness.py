"""Readiness of a real server with kernel warm-up on (API.md "Health and metrics").

``/readyz`` answers 503 ``not_ready`` while the Numba kernels load (or, in a fresh checkout,
compile) and 200 once they are ready, while ``/healthz`` answers 200 all along; the first SHK
release then finds its kernels ready.
"""

from __future__ import annotations

from tests.e2e.api import ADMIN, CHEAP_RELEASE, FIRST_RELEASE_TIMEOUT_S, create_dataset
from tests.e2e.server import Serve


def test_ready_once_the_kernels_are_warm(sqlite_url: str, serve: Serve) -> None:
    server = serve(sqlite_url, warm=True)

    *waiting, (last_status, last_body) = server.readyz_answers
    assert (last_status, last_body) == (200, {"status": "ready"})
    assert waiting, "ready before the kernels could have loaded"
    assert all(status == 503 and body["code"] == "not_ready" for status, body in waiting)
    with server.client(timeout=FIRST_RELEASE_TIMEOUT_S) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        metrics = client.get("/metrics", headers=ADMIN).text
        assert "privflow_kernels_ready 1.0" in metrics.splitlines()
        ds = create_dataset(client, epsilon=1.0)
        release = client.post(f"/v1/datasets/{ds['id']}/samples", json=CHEAP_RELEASE, headers=ADMIN)
        assert release.status_code == 201, release.text
