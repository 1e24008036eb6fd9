"""Flows and memories, written once for ``Client`` and ``AsyncClient`` (API.md "Flows").

The argument lists, documentation and request building of ``client.flows`` and
``client.memories`` live here, on top of the pure :mod:`privflow_client._wire`. Each client
subclasses these fronts with the one thing that differs — how a built ``Call`` is sent
(``_start``: blocking, or a coroutine to await) — so ``client.flows.mmd(...)`` returns a
:class:`FlowResult` and ``await async_client.flows.mmd(...)`` the same.

Inputs are public point clouds: nothing is charged, and a ``seed`` makes a run reproducible
(the same seed and inputs give bit-identical particles; an answer carries the seed it used).
Every call that starts work sends an ``Idempotency-Key`` (a fresh uuid4 unless given) that stays
the same on every retry, so a resent request gets the first answer instead of a second run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, Literal, Required, TypedDict, TypeVar, Unpack

from privflow_client import _wire as wire
from privflow_client._models import MemoryCreated, StudentTeacherTask

__all__ = [
    "DrMMDOptions",
    "FlowOptions",
    "FlowsAPI",
    "MMDOptions",
    "MemoriesAPI",
    "Memory",
    "MuonOptions",
    "RetrieveOptions",
]

R = TypeVar("R")
"""What a finished run returns: ``FlowResult`` / ``Retrieval``, or an awaitable of one."""
J = TypeVar("J")
"""What a ``submit`` returns: a ``Job``, or an awaitable of an ``AsyncJob``."""
MemT = TypeVar("MemT")
"""What ``memories.create`` returns: a ``Memory``, or an awaitable of one."""

Cloud = Any
"""A point cloud: a 2-D NumPy array or a list of equal-length rows of numbers."""


class FlowOptions(TypedDict, total=False):
    """Keyword options of every flow; one left out takes the service's default."""

    steps: int
    step_size: float
    seed: int
    record_every: int
    idempotency_key: str


class _KernelOptions(FlowOptions, total=False):
    bandwidth: Required[float]
    kernel: Literal["gaussian", "imq", "laplace"]


class MMDOptions(_KernelOptions, total=False):
    """``bandwidth`` (required), ``kernel`` (default ``gaussian``), ``noise_level`` (β of the
    noise injection; 0, the default, is the plain MMD flow), and the :class:`FlowOptions`."""

    noise_level: float


class DrMMDOptions(_KernelOptions, total=False):
    """``bandwidth``, ``kernel``, ``lambda_`` (a number or ``"adaptive"``, the default) and the
    :class:`FlowOptions`."""

    lambda_: float | Literal["adaptive"]


class MuonOptions(FlowOptions, total=False):
    """``task`` (default: the student–teacher task with the service's defaults),
    ``particles``, ``momentum``, ``regularization``, ``update`` and the :class:`FlowOptions`."""

    task: StudentTeacherTask | Mapping[str, Any]
    particles: int
    momentum: float
    regularization: float
    update: Literal["regularized", "newton_schulz"]


class RetrieveOptions(TypedDict, total=False):
    """``weights`` of the query (default uniform), ``steps``, ``step_size`` (η, transport),
    ``weight_step`` (τ, reweighting; default backtracking) and ``idempotency_key``."""

    weights: Any
    steps: int
    step_size: float
    weight_step: float
    idempotency_key: str


class _Starter:
    def _start(self, call: wire.Call[Any], wait: bool) -> Any:
        """Send ``call``: its answer when ``wait``, else the job it became (each client's)."""
        raise NotImplementedError


class FlowsAPI(_Starter, Generic[R, J]):
    """``client.flows``: particle flows on public point clouds.

    ``mmd``, ``drmmd`` and ``muon`` run the flow and return a
    :class:`~privflow_client.FlowResult` (``particles_array``, ``trace``, ``seed``); their
    ``submit_*`` twins send ``"async": true`` and return at once the ``Job`` the run became,
    whose ``flow()`` waits for the same result. Every flow takes ``steps``, ``step_size``,
    ``seed``, ``record_every`` and ``idempotency_key``; values are checked by the service
    (``InvalidRequest`` naming the field).
    """

    def mmd(self, source: Cloud, target: Cloud, **options: Unpack[MMDOptions]) -> R:
        """``POST /v1/flows/mmd``: move ``source`` towards ``target`` by the MMD gradient flow
        (``step_size`` is γ); options in :class:`MMDOptions`. Trace metric: ``mmd2``."""
        return self._flow("mmd", True, {"source": source, "target": target, **options})

    def submit_mmd(self, source: Cloud, target: Cloud, **options: Unpack[MMDOptions]) -> J:
        """:meth:`mmd` as a job."""
        return self._flow("mmd", False, {"source": source, "target": target, **options})

    def drmmd(self, source: Cloud, target: Cloud, **options: Unpack[DrMMDOptions]) -> R:
        """``POST /v1/flows/drmmd``: the de-regularised MMD flow (``step_size`` is s, so γ =
        λs); options in :class:`DrMMDOptions`. Trace metrics: ``drmmd``, ``mmd2``, ``lambda``."""
        return self._flow("drmmd", True, {"source": source, "target": target, **options})

    def submit_drmmd(self, source: Cloud, target: Cloud, **options: Unpack[DrMMDOptions]) -> J:
        """:meth:`drmmd` as a job."""
        return self._flow("drmmd", False, {"source": source, "target": target, **options})

    def muon(self, **options: Unpack[MuonOptions]) -> R:
        """``POST /v1/flows/muon``: regularised (or ``update="newton_schulz"``, standard) Muon
        on the public student–teacher ``task``; options in :class:`MuonOptions`. Particles are
        ``(particles, hidden, input_dim + 1)``; trace metrics ``loss`` and ``hamiltonian``."""
        return self._flow("muon", True, dict(options))

    def submit_muon(self, **options: Unpack[MuonOptions]) -> J:
        """:meth:`muon` as a job."""
        return self._flow("muon", False, dict(options))

    def _flow(self, name: str, wait: bool, fields: dict[str, Any]) -> Any:
        key = fields.pop("idempotency_key", None)
        return self._start(wire.flow(name, fields, wait=wait, idempotency_key=key), wait)


class MemoriesAPI(_Starter, Generic[MemT, R, J]):
    """``client.memories``: Sinkhorn associative memories of weighted point clouds.

    ``create`` stores patterns and returns a :class:`Memory`; ``memory.retrieve(query)`` (or
    ``retrieve(memory_id, query)``) runs the retrieval dynamics and returns a
    :class:`~privflow_client.Retrieval`; ``submit`` does the same as a job (``"async":
    true``) and returns the ``Job``, whose ``retrieval()`` waits for the result.
    """

    def create(self, patterns: Any, blur: float, beta: float | None = None) -> MemT:
        """``POST /v1/memories``: each pattern a point cloud (2-D array or list of rows) or a
        weighted one (``{"points", "weights"}`` or ``WeightedPoints``), all of one dimension;
        ``blur`` (ε = blur²) and ``beta``, the energy's inverse temperature (service default
        1). Not resent once it may have arrived: the service keeps no Idempotency-Key here."""
        return self._create(wire.create_memory(patterns, blur, beta))

    def _create(self, call: wire.Call[MemoryCreated]) -> Any:
        raise NotImplementedError

    def retrieve(self, memory_id: str, query: Cloud, **options: Unpack[RetrieveOptions]) -> R:
        """``POST /v1/memories/{id}/retrieve`` from ``query`` (points, or a weighted cloud);
        options in :class:`RetrieveOptions`. Another key's memory is ``NotFound``."""
        return self._retrieve(memory_id, query, True, dict(options))

    def submit(self, memory_id: str, query: Cloud, **options: Unpack[RetrieveOptions]) -> J:
        """:meth:`retrieve` as a job."""
        return self._retrieve(memory_id, query, False, dict(options))

    def _retrieve(self, memory_id: str, query: Cloud, wait: bool, fields: dict[str, Any]) -> Any:
        key = fields.pop("idempotency_key", None)
        call = wire.retrieve(memory_id, query, fields, wait=wait, idempotency_key=key)
        return self._start(call, wait)


class Memory(Generic[R, J]):
    """A stored memory, bound to the client that created it: ``memory_id``, ``n_patterns``,
    and ``retrieve`` / ``submit`` with this id (see :class:`MemoriesAPI`)."""

    def __init__(self, created: MemoryCreated, memories: MemoriesAPI[Any, R, J]) -> None:
        self.memory_id = created.memory_id
        self.n_patterns = created.n_patterns
        self._memories = memories

    def __repr__(self) -> str:
        return f"Memory({self.memory_id!r}, n_patterns={self.n_patterns})"

    def retrieve(self, query: Cloud, **options: Unpack[RetrieveOptions]) -> R:
        """Retrieve from ``query``: a :class:`~privflow_client.Retrieval`."""
        return self._memories.retrieve(self.memory_id, query, **options)

    def submit(self, query: Cloud, **options: Unpack[RetrieveOptions]) -> J:
        """:meth:`retrieve` as a job."""
        return self._memories.submit(self.memory_id, query, **options)
