"""Readiness of a real server with kernel warm-up on (API.md "Health and metrics").

``/readyz`` answers 200 once the store answers, while the Numba kernels still load (or, on an
empty cache, compile) in the background, and ``/healthz`` answers 200 all along; a release sent
at once compiles or loads what it calls, and ``privflow_kernels_ready`` turns 1 once every
family is compiled.
"""

from __future__ import annotations

import time

from tests.e2e.api import ADMIN, CHEAP_RELEASE, FIRST_RELEASE_TIMEOUT_S, create_dataset
from tests.e2e.server import Serve

ALL_KERNELS_TIMEOUT_S = 600.0
"""From the shared Numba cache every family loads in seconds; this bound covers a cold one."""


def test_ready_at_once_and_kernels_compile_behind(sqlite_url: str, serve: Serve) -> None:
    server = serve(sqlite_url, warm=True)

    *waiting, (last_status, last_body) = server.readyz_answers
    assert (last_status, last_body) == (200, {"status": "ready"})
    assert all(status == 503 and body["code"] == "not_ready" for status, body in waiting)
    with server.client(timeout=FIRST_RELEASE_TIMEOUT_S) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ds = create_dataset(client, epsilon=1.0)
        release = client.post(f"/v1/datasets/{ds['id']}/samples", json=CHEAP_RELEASE, headers=ADMIN)
        assert release.status_code == 201, release.text
        deadline = time.monotonic() + ALL_KERNELS_TIMEOUT_S
        while "privflow_kernels_ready 1.0" not in client.get("/metrics", headers=ADMIN).text:
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.5)
    log = server.log_path.read_text()
    assert "kernel family particles ready" in log and "every kernel family compiled" in log
