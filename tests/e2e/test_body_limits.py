"""Large bodies cannot stall a real server (issue "Trust hardening", item 6).

A 100 MB ``POST /v1/datasets`` without a key is answered 401 from its headers, before the body
is read, while ``/healthz`` on another connection keeps answering quickly; the same body with
an analyst key (no right to create datasets, so the small request limit applies) is 413 by its
``Content-Length``, and sent chunked (no ``Content-Length``) it is 413 once the limit has
streamed in. An admin's accepted 16 MiB upload is decoded and checked off the event loop.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from tests.e2e.api import ADMIN, create_analyst
from tests.e2e.server import Serve, ServerProcess

BODY_MB = 100
REFUSED_WITHIN_S = 1.0
HEALTHZ_WITHIN_S = 0.1
ACCEPTED_MB = 16
HEALTHZ_DURING_UPLOAD_S = 0.5
"""While an accepted upload is decoded and checked in worker threads, a /healthz poll shares
the GIL with them (5 ms switch interval): slower than idle, but never the whole check (3.5 s
for 16 MiB before the cells were checked off the event loop)."""


SENDER = r"""
import json, select, socket, sys, time
from urllib.parse import urlsplit

url, megabytes, chunked, authorization = sys.argv[1:5]
row = b'[12.345678, "a"],'
rows = int(megabytes) * 2**20 // len(row)
body = (
    b'{"name": "big", "columns": [{"name": "age", "type": "float", "lower": 0, "upper": 100},'
    b' {"name": "city", "type": "category", "categories": ["a"]}], "records": ['
    + row * rows
    + b'[1.0, "a"]], "budget": {"epsilon": 1.0}}'
)
if chunked == "1":  # 1 MiB chunks, then the last (empty) one
    step = 2**20
    framed = [b"%x\r\n%s\r\n" % (len(body[i : i + step]), body[i : i + step])
              for i in range(0, len(body), step)]
    payload = b"".join(framed) + b"0\r\n\r\n"
    length = b"Transfer-Encoding: chunked\r\n"
else:
    payload = body
    length = b"Content-Length: %d\r\n" % len(body)
parts = urlsplit(url)
head = b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n" % (
    parts.path.encode(), parts.netloc.encode())
head += length
if authorization:
    head += b"Authorization: " + authorization.encode() + b"\r\n"
data = memoryview(head + b"\r\n" + payload)
print("ready", len(body), flush=True)
sys.stdin.readline()

sock = socket.create_connection((parts.hostname, parts.port))
sock.setblocking(False)
start = time.monotonic()
sent, answer = 0, b""
while True:  # send while reading, as curl does: stop at the first complete answer
    want_write = [sock] if sent < len(data) else []
    readable, writable, _ = select.select([sock], want_write, [], 60.0)
    if not readable and not writable:
        raise SystemExit("no answer within 60 s")
    if writable:
        try:
            sent += sock.send(data[sent : sent + 2**20])
        except (BrokenPipeError, ConnectionResetError):
            sent = len(data)  # the server stopped reading: its answer is what matters
    if readable:
        chunk = sock.recv(65536)
        answer += chunk
        head_end = answer.find(b"\r\n\r\n")
        if head_end >= 0:
            lines = answer[:head_end].decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in lines[1:])
            headers = {k.lower(): v for k, v in headers.items()}
            size = int(headers.get("content-length", "0"))
            if len(answer) >= head_end + 4 + size:
                break
        if not chunk:
            raise SystemExit(f"closed without a complete answer: {answer!r}")
seconds = time.monotonic() - start
sock.close()
print(json.dumps({"status": int(lines[0].split()[1]), "headers": headers,
                  "body": answer[head_end + 4 : head_end + 4 + size].decode(),
                  "seconds": seconds, "sent": sent, "total": len(data)}), flush=True)
"""
"""Sends a dataset-shaped JSON body of about ``argv[2]`` MB (one float and one category a row)
over a raw socket from its own process, reading while it writes as curl does, and prints the
answer and the seconds from the first byte sent until the answer was complete. Its own process:
building and sending the body cannot hold the GIL of the process that measures ``/healthz``."""


@dataclass
class Upload:
    status: int
    headers: dict[str, str]
    body: str
    seconds: float
    sent: int  # bytes of the request sent before the answer was complete
    total: int

    def json(self) -> Any:
        return json.loads(self.body)


def _send_while_polling(
    server: ServerProcess,
    headers: dict[str, str],
    *,
    chunked: bool = False,
    megabytes: int = BODY_MB,
    timeout: float = 60.0,
) -> tuple[Upload, list[float]]:
    """POST the big body to /v1/datasets from a subprocess while polling /healthz here.

    Returns the answer (with the seconds from the first byte sent until it came) and the
    latency of every /healthz poll made meanwhile.
    """
    command = [sys.executable, "-c", SENDER, f"{server.base_url}/v1/datasets", str(megabytes)]
    command += ["1" if chunked else "0", headers.get("Authorization", "")]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as sender:
        assert sender.stdin is not None and sender.stdout is not None
        ready = sender.stdout.readline().split()
        assert ready and ready[0] == "ready" and int(ready[1]) >= megabytes * 10**6, ready
        polls: list[float] = []
        with server.client(timeout=timeout) as poller:
            assert poller.get("/healthz").status_code == 200  # connected before the upload
            sender.stdin.write("go\n")
            sender.stdin.flush()
            while sender.poll() is None or len(polls) < 20:
                start = time.monotonic()
                assert poller.get("/healthz").status_code == 200
                polls.append(time.monotonic() - start)
                time.sleep(0.01)
        out = sender.stdout.read()
    assert sender.returncode == 0, out
    return Upload(**json.loads(out.splitlines()[-1])), polls


def _assert_problem(response: Upload, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, response.body[:500]
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == code and problem["status"] == status
    return problem


def test_an_unauthenticated_large_body_is_refused_before_it_is_read(
    sqlite_url: str, serve: Serve
) -> None:
    server = serve(sqlite_url)
    for chunked in (False, True):  # chunked: no Content-Length, nothing to refuse by but the key
        response, polls = _send_while_polling(server, {}, chunked=chunked)
        _assert_problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.seconds < REFUSED_WITHIN_S, (chunked, response.seconds)
        assert max(polls) < HEALTHZ_WITHIN_S, (chunked, max(polls))


def test_a_key_without_the_dataset_limit_gets_413_for_a_large_body(
    sqlite_url: str, serve: Serve
) -> None:
    server = serve(sqlite_url)
    with server.client() as client:
        _, analyst = create_analyst(client)
    # An analyst cannot create datasets: the request limit (8 MiB) applies, by Content-Length
    # or, for a chunked body, by the bytes that streamed in.
    for chunked in (False, True):
        response, polls = _send_while_polling(server, analyst, chunked=chunked)
        problem = _assert_problem(response, 413, "too_large")
        assert str(8 * 2**20) in problem["detail"]
        assert response.seconds < REFUSED_WITHIN_S, (chunked, response.seconds)
        assert max(polls) < HEALTHZ_WITHIN_S, (chunked, max(polls))

    # The admin's own dataset limit is a setting too: over it is 413 at once as well.
    small = serve(sqlite_url, name="small", max_body_bytes=16 * 2**20)
    response, _ = _send_while_polling(small, ADMIN)
    problem = _assert_problem(response, 413, "too_large")
    assert str(16 * 2**20) in problem["detail"]
    assert response.seconds < REFUSED_WITHIN_S, response.seconds


def test_an_accepted_large_upload_is_checked_off_the_event_loop(
    sqlite_url: str, serve: Serve
) -> None:
    server = serve(sqlite_url)
    response, polls = _send_while_polling(server, ADMIN, megabytes=ACCEPTED_MB, timeout=120.0)
    assert response.status == 201, response.body[:500]
    assert response.json()["n_records"] > ACCEPTED_MB * 2**20 // 20
    assert max(polls) < HEALTHZ_DURING_UPLOAD_S, (max(polls), response.seconds)
