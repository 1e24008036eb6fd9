"""The SymPy stage of a custom loss (parse, derivatives, code printing) under a hard time limit.

SymPy's cost is not bounded by the size of the expression: twelve nested ``huber`` calls (under
200 characters) ran for minutes, its piecewise folding doubling at each level. A thread cannot be
stopped, so the stage runs in one persistent child interpreter (:func:`serve`: SymPy imported
once there, nothing forked) speaking one JSON line per request; a stage past
:data:`SYMBOLIC_TIMEOUT_S` kills the child (a new one starts on the next use) and is refused as
422 naming ``utility.loss``, before any charge. Only strings cross the process boundary: the
loss text in, the kernel body's lines out. Bodies are cached here (LRU) so a repeated expression
never reaches the child again.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import select
import subprocess
import sys
import threading
from collections import OrderedDict
from typing import Any

from dp_core.engine.custom_kernels import KernelBody
from dp_core.errors import InvalidParameter

__all__ = ["SYMBOLIC_TIMEOUT_S", "kernel_body_within", "serve"]

SYMBOLIC_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 300.0
"""How long a new child may take to import SymPy and say it is ready (seconds on a quiet
machine, far more on a loaded one); not charged to any expression's :data:`SYMBOLIC_TIMEOUT_S`."""
_CACHE_SIZE = 256

READY = '{"ready": true}'
_lock = threading.Lock()
_child: subprocess.Popen[str] | None = None
_bodies: OrderedDict[tuple[str, tuple[str, ...], int, int], KernelBody] = OrderedDict()


def _start() -> subprocess.Popen[str]:
    """A new child, once it has imported SymPy and said so (within :data:`STARTUP_TIMEOUT_S`;
    a child that cannot start is a fault of the service, not of any expression)."""
    child = subprocess.Popen(
        [sys.executable, "-c", "from dp_core.privacy.utilities.symbolic import serve; serve()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], STARTUP_TIMEOUT_S)
    line = child.stdout.readline() if ready else ""
    if line.strip() != READY:
        _stop(child, kill=True)
        raise RuntimeError(f"the SymPy child did not start within {STARTUP_TIMEOUT_S:g} s")
    return child


def _stop(child: subprocess.Popen[str], kill: bool = False) -> None:
    """End the child: EOF on its stdin (it exits), or kill; close the pipes; reap it."""
    if kill:
        child.kill()
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


@atexit.register
def _shutdown() -> None:
    global _child
    if _child is not None:
        _stop(_child)
        _child = None


def _ask(request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One request to the child (started if needed); killed past ``timeout``. Holds _lock."""
    global _child
    if _child is None or _child.poll() is not None:
        _child = _start()
    child = _child
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write(json.dumps(request) + "\n")
        child.stdin.flush()
        ready, _, _ = select.select([child.stdout], [], [], timeout)
        line = child.stdout.readline() if ready else ""
    except OSError:
        line = ""
    if not line:
        _stop(child, kill=True)
        _child = None
        raise InvalidParameter(
            "utility.loss", f"could not be differentiated within {timeout:g} s; simplify it"
        )
    return json.loads(line)


def kernel_body_within(
    loss: str,
    columns: tuple[str, ...],
    dim: int,
    order: int,
    timeout: float = SYMBOLIC_TIMEOUT_S,
) -> KernelBody:
    """The kernel body of ``loss`` up to derivative ``order``, from the cache or computed in
    the child within ``timeout`` seconds; :class:`InvalidParameter` (``utility.loss``) else."""
    key = (loss, columns, dim, order)
    with _lock:
        cached = _bodies.get(key)
        if cached is not None:
            _bodies.move_to_end(key)
            return cached
        answer = _ask({"loss": loss, "columns": list(columns), "dim": dim, "order": order}, timeout)
        if "refused" in answer:
            raise InvalidParameter("utility.loss", str(answer["refused"]))
        body = KernelBody(
            answer["key"], dim, len(columns), order, tuple(str(x) for x in answer["lines"])
        )
        _bodies[key] = body
        while len(_bodies) > _CACHE_SIZE:
            _bodies.popitem(last=False)
        return body


def serve() -> None:
    """The child: one JSON request per stdin line, one JSON answer per stdout line."""
    from dp_core.privacy.utilities.codegen import kernel_body, parse_loss

    sys.stdout.write(READY + "\n")  # imports done: from here on a request's time is its own
    sys.stdout.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            loss = parse_loss(request["loss"], request["columns"], request["dim"])
            body = kernel_body(loss, request["order"])
            answer: dict[str, Any] = {"key": body.key, "lines": list(body.lines)}
        except InvalidParameter as refused:
            answer = {"refused": refused.message}
        except Exception:  # SymPy failing on an odd expression: refuse it, keep serving
            answer = {"refused": "cannot be differentiated"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
