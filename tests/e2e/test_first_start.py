"""The first ten minutes (issue 18): ``privflow serve`` on a fresh machine.

A real server with no ``PRIVFLOW_ADMIN_KEY``, an empty store and an empty Numba cache
(``NUMBA_CACHE_DIR`` a fresh directory, so every kernel would have to compile):

- ``/readyz`` answers 200 after at most :data:`READY_BOUND_S` of the server's own CPU time (the
  issue's "ready within 20 s of start on a 2-core machine", as work rather than wall time, so
  that other load on a shared CI machine cannot make it flaky; the wall time is bounded by the
  harness's start timeout), while the kernels still compile behind;
- the console shows the generated admin key once, in a marked block, with the path of the file
  it was written to (mode 0600), and the key is an admin key;
- a second start on the same store prints no key, and the key still works.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from service.bootstrap import ADMIN_KEY_FILE_NAME
from tests.e2e.server import ServerProcess

READY_BOUND_S = 20.0
"""Issue 18: ready within 20 s of start on an empty kernel cache on a 2-core machine."""
BANNER = "=" * 78


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _admin(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_first_start_prints_one_admin_key_and_is_ready_in_seconds(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    log_path = tmp_path / "server.log"
    server = ServerProcess(
        f"sqlite:///{data / 'privflow.db'}",
        log_path,
        admin_key=None,
        warm=True,
        env={"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")},
    )
    with server:  # starts it and waits for /readyz (tests.e2e.server.WARM_READY_TIMEOUT_S)
        assert _cpu_seconds(server.pid) < READY_BOUND_S
        first_log = log_path.read_text()
        key_file = data / ADMIN_KEY_FILE_NAME
        secret = key_file.read_text().strip()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert first_log.count(BANNER) == 2  # one block: its top and bottom rules
        assert first_log.count(secret) == 1  # printed once, never logged
        assert str(key_file) in first_log
        assert re.search(r"^    pf_\S{40,}$", first_log, re.MULTILINE)

        with server.client() as client:
            metrics = client.get("/metrics", headers=_admin(secret))
            assert metrics.status_code == 200, metrics.text
            # Ready did not wait for the compiler: on an empty cache it takes minutes.
            assert "privflow_kernels_ready 0.0" in metrics.text.splitlines()
            created = client.post(
                "/v1/keys", json={"name": "analyst", "role": "analyst"}, headers=_admin(secret)
            )
            assert created.status_code == 201, created.text

    with server:
        second_log = log_path.read_text()[len(first_log) :]
        assert BANNER not in second_log and secret not in second_log
        assert key_file.read_text().strip() == secret
        with server.client() as client:
            keys = client.get("/v1/keys", headers=_admin(secret))
            assert keys.status_code == 200, keys.text
            assert sorted(k["role"] for k in keys.json()["items"]) == ["admin", "analyst"]
