"""The SymPy stage of a custom loss (parse, derivatives, code printing) under a hard time limit.

SymPy's cost is not bounded by the size of the expression: twelve nested ``huber`` calls (under
200 characters) ran for minutes, its piecewise folding doubling at each level. A thread cannot be
stopped, so the stage runs in one persistent child interpreter (:func:`serve`: SymPy imported
once there, nothing forked) speaking one JSON line per request; a stage past
:data:`SYMBOLIC_TIMEOUT_S` kills the child (a new one starts on the next use) and is refused as
422 naming ``utility.loss``, before any charge. Only strings cross the process boundary: the
loss text in, the kernel body's lines out (or, for :func:`summary_proof_within`, the public
setting in and :class:`SummaryProof`'s two numbers out). Bodies and proofs are cached here (LRU)
so a repeated expression never reaches the child again.
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
from dataclasses import asdict, dataclass
from typing import Any

from dp_core.engine.custom_kernels import KernelBody
from dp_core.errors import InvalidParameter

__all__ = [
    "SYMBOLIC_TIMEOUT_S",
    "SummaryProof",
    "SummarySetting",
    "kernel_body_within",
    "serve",
    "summary_proof_within",
]

SYMBOLIC_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 300.0
"""How long a new child may take to import SymPy and say it is ready (seconds on a quiet
machine, far more on a loaded one); not charged to any expression's :data:`SYMBOLIC_TIMEOUT_S`."""
_CACHE_SIZE = 256


@dataclass(frozen=True)
class SummaryProof:
    """What :func:`quadratic.prove` found: the loss is quadratic in θ and its clip never binds.
    ``gradient_bound`` >= sup |∇_θ ℓ| and ``curvature_bound`` >= sup ‖∇²_θ ℓ‖_F over Θ × the
    columns' box, per record."""

    gradient_bound: float
    curvature_bound: float


@dataclass(frozen=True)
class SummarySetting:
    """The public facts :func:`quadratic.prove` needs beside the loss: the form and its clip,
    the columns' box, and Θ: a ``box`` or the ball (``ball_center``, ``ball_radius``)."""

    form: str
    clip: float
    column_box: tuple[tuple[float, float], ...]
    box: tuple[tuple[float, float], ...] | None = None
    ball_center: tuple[float, ...] | None = None
    ball_radius: float | None = None


READY = '{"ready": true}'
_lock = threading.Lock()
_child: subprocess.Popen[str] | None = None
_bodies: OrderedDict[tuple[str, tuple[str, ...], int, int], KernelBody] = OrderedDict()
_proofs: OrderedDict[tuple[Any, ...], SummaryProof | None] = OrderedDict()


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


def _ask(request: dict[str, Any], timeout: float) -> dict[str, Any] | None:
    """One request to the child (started if needed); killed past ``timeout`` (None). Holds
    _lock."""
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
        return None
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
        if answer is None:
            raise InvalidParameter(
                "utility.loss", f"could not be differentiated within {timeout:g} s; simplify it"
            )
        if "refused" in answer:
            raise InvalidParameter("utility.loss", str(answer["refused"]))
        body = KernelBody(
            answer["key"], dim, len(columns), order, tuple(str(x) for x in answer["lines"])
        )
        _remember(_bodies, key, body)
        return body


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    cache[key] = value
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)


def summary_proof_within(
    loss: str,
    columns: tuple[str, ...],
    dim: int,
    setting: SummarySetting,
    timeout: float = SYMBOLIC_TIMEOUT_S,
) -> SummaryProof | None:
    """Whether ``loss`` reduces to a summary under the public ``setting``
    (:func:`quadratic.prove`), from the cache or the child within ``timeout`` seconds; a proof
    that does not finish in time is no proof (the record pass stays, nothing is refused)."""
    key = (loss, columns, dim, setting)
    with _lock:
        if key in _proofs:
            _proofs.move_to_end(key)
            return _proofs[key]
        request = {"loss": loss, "columns": list(columns), "dim": dim, "prove": asdict(setting)}
        answer = _ask(request, timeout)
        found = None if answer is None or answer.get("proof") is None else answer["proof"]
        proof = None if found is None else SummaryProof(**found)
        _remember(_proofs, key, proof)
        return proof


def _pairs(rows: list[list[float]]) -> tuple[tuple[float, float], ...]:
    return tuple((float(lo), float(hi)) for lo, hi in rows)


def _answer(request: dict[str, Any]) -> dict[str, Any]:
    from dp_core.privacy.utilities.codegen import kernel_body, parse_loss
    from dp_core.privacy.utilities.quadratic import prove

    loss = parse_loss(request["loss"], request["columns"], request["dim"])
    if "prove" in request:
        fields = request["prove"]
        setting = SummarySetting(
            fields["form"],
            fields["clip"],
            _pairs(fields["column_box"]),
            None if fields["box"] is None else _pairs(fields["box"]),
            None if fields["ball_center"] is None else tuple(fields["ball_center"]),
            fields["ball_radius"],
        )
        proof = prove(loss, setting)
        return {"proof": None if proof is None else asdict(proof)}
    body = kernel_body(loss, request["order"])
    return {"key": body.key, "lines": list(body.lines)}


def serve() -> None:
    """The child: one JSON request per stdin line, one JSON answer per stdout line."""
    from dp_core.privacy.utilities import codegen, quadratic  # noqa: F401 (imports before READY)

    sys.stdout.write(READY + "\n")  # imports done: from here on a request's time is its own
    sys.stdout.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = _answer(request)
        except InvalidParameter as refused:
            answer = {"refused": refused.message}
        except Exception:  # SymPy failing on an odd expression: refuse it, keep serving
            answer = {"refused": "cannot be differentiated"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
