"""Flows, memories and generators, written once for ``Client`` and ``AsyncClient`` (API.md
"Flows", "Generators").

The argument lists, documentation and request building of ``client.flows``,
``client.memories`` and ``client.generators`` live here, on top of the pure
:mod:`privflow_client._wire`. Each client subclasses these fronts with the one thing that
differs — how a built ``Call`` is sent (``_start``, ``_call``, ``_paginate``: blocking, or a
coroutine to await) — so ``client.flows.mmd(...)`` returns a :class:`FlowResult` and
``await async_client.flows.mmd(...)`` the same.

Inputs are public point clouds: nothing is charged, and a ``seed`` makes a run reproducible
(the same seed and inputs give bit-identical particles; an answer carries the seed it used).
Every call that starts work sends an ``Idempotency-Key`` (a fresh uuid4 unless given) that stays
the same on every retry, so a resent request gets the first answer instead of a second run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, Literal, Required, TypedDict, TypeVar, Unpack

import numpy as np

from privflow_client import _wire as wire
from privflow_client._models import (
    GeneratorFitOptions,
    GeneratorInfo,
    GeneratorSamples,
    MemoryCreated,
    Page,
    StudentTeacherTask,
)

__all__ = [
    "DrMMDOptions",
    "FlowOptions",
    "FlowsAPI",
    "Generator",
    "GeneratorOptions",
    "GeneratorsAPI",
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
GenT = TypeVar("GenT")
"""What ``generators.fit`` / ``get`` return: a ``Generator``, or an awaitable of one."""
A = TypeVar("A")
"""What ``generators.sample`` returns: a NumPy array, or an awaitable of one."""
L = TypeVar("L")
"""What ``generators.list`` returns: a ``Paginator`` or an ``AsyncPaginator``."""
N = TypeVar("N")
"""What ``generators.delete`` returns: ``None``, or an awaitable of it."""

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


class GeneratorOptions(TypedDict, total=False):
    """Keyword options of a generator fit; one left out takes the service's default.

    ``release_id`` (instead of ``points``: fit on a stored release's samples), ``weights`` (one
    per point; default uniform), ``source`` (``uniform`` or ``gaussian``), ``epsilon`` (the
    smoothing, ≥ 0; 0 is the hard map; default 0.003), ``method`` (``smoothed`` or
    ``aeot_top2``), ``fit`` (``{"samples", "max_steps", "tolerance"}``), ``seed`` (of the fit
    sample) and ``idempotency_key``."""

    release_id: str
    weights: Any
    source: Literal["uniform", "gaussian"]
    epsilon: float
    method: Literal["smoothed", "aeot_top2"]
    fit: GeneratorFitOptions | Mapping[str, Any]
    seed: int
    idempotency_key: str


class _Starter:
    def _start(self, call: wire.Call[Any], wait: bool) -> Any:
        """Send ``call``: its answer when ``wait``, else the job it became (each client's)."""
        raise NotImplementedError

    def _call(self, call: wire.Call[Any], then: Callable[[Any], Any]) -> Any:
        """Send ``call`` and return ``then(answer)`` (each client's: now, or awaitable)."""
        raise NotImplementedError

    def _paginate(self, make: Callable[[str | None], wire.Call[Page[Any]]]) -> Any:
        """Every item of a list whose page after ``cursor`` is ``make(cursor)`` (each
        client's paginator)."""
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

    def create(
        self,
        patterns: Any,
        blur: float,
        beta: float | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> MemT:
        """``POST /v1/memories``: each pattern a point cloud (2-D array or list of rows) or a
        weighted one (``{"points", "weights"}`` or ``WeightedPoints``), all of one dimension;
        ``blur`` (ε = blur²) and ``beta``, the energy's inverse temperature (service default
        1). One ``Idempotency-Key`` (yours or a fresh one) across retries: stored once."""
        return self._create(wire.create_memory(patterns, blur, beta, idempotency_key))

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


class GeneratorsAPI(_Starter, Generic[GenT, A, L, N, J]):
    """``client.generators``: semi-discrete OT generators (API.md "Generators").

    A generator is fitted on **public** points or on a stored release's samples — never on a
    dataset's records — and is post-processing: fitting charges nothing (``charged`` is zero)
    and a generator fitted on a release carries its certificate as ``provenance``. ``fit``
    returns a :class:`Generator`; ``submit_fit`` returns the ``Job`` the fit became, whose
    ``generator()`` waits for it. ``sample`` draws ``n`` new points as a NumPy array: the same
    seed gives the same array.
    """

    def fit(self, points: Cloud | None = None, **options: Unpack[GeneratorOptions]) -> GenT:
        """``POST /v1/generators`` on ``points`` (a 2-D array or list of rows) or on
        ``release_id=``; options in :class:`GeneratorOptions`. A ``dataset_id`` is refused
        before sending (``InvalidRequest``)."""
        return self._call(self._fit(points, True, dict(options)), self._bind_answer)

    def submit_fit(self, points: Cloud | None = None, **options: Unpack[GeneratorOptions]) -> J:
        """:meth:`fit` as a job (``"async": true``); ``job.generator()`` waits for it."""
        return self._start(self._fit(points, False, dict(options)), False)

    def sample(
        self, generator_id: str, n: int, seed: int, *, idempotency_key: str | None = None
    ) -> A:
        """``POST /v1/generators/{id}/samples``: ``n`` samples as an ``(n, dim)`` float64
        array; the same ``seed`` gives the same array. Another key's generator is ``NotFound``."""
        call = wire.sample_generator(generator_id, n, seed, idempotency_key)
        return self._call(call, _samples_array)

    def list(self, *, page_size: int | None = None) -> L:
        """Every generator this key fitted (an admin's: all), as :class:`GeneratorInfo`."""
        return self._paginate(lambda cursor: wire.list_generators(page_size, cursor))

    def get(self, generator_id: str) -> GenT:
        """A stored generator, as a :class:`Generator`."""
        return self._call(wire.get_generator(generator_id), self.bind)

    def delete(self, generator_id: str) -> N:
        """Delete a generator; later calls on it are ``NotFound``."""
        return self._call(wire.delete_generator(generator_id), lambda _none: None)

    def bind(self, info: GeneratorInfo) -> Generator[A, N]:
        """A :class:`Generator` handle on ``info`` that samples through this client."""
        return Generator(info, self)

    def _bind_answer(self, answer: Any) -> Generator[A, N]:
        return self.bind(wire.expect_answer(answer))

    @staticmethod
    def _fit(points: Cloud | None, wait: bool, fields: dict[str, Any]) -> wire.Call[Any]:
        key = fields.pop("idempotency_key", None)
        if points is not None:
            fields["points"] = points
        return wire.fit_generator(fields, wait=wait, idempotency_key=key)


def _samples_array(answer: GeneratorSamples | Any) -> np.ndarray:
    return wire.expect_answer(answer).samples_array


class Generator(Generic[A, N]):
    """A fitted generator bound to a client: ``generator_id``, ``info`` (the service's
    :class:`~privflow_client.GeneratorInfo`: ``n_points``, ``dim``, ``epsilon``, ``method``,
    ``source``, ``fit``, ``provenance``, ``charged``), ``sample(n, seed)`` and ``delete()``."""

    def __init__(self, info: GeneratorInfo, generators: GeneratorsAPI[Any, A, Any, N, Any]) -> None:
        self.info = info
        self.generator_id = info.generator_id
        self._generators = generators

    def __repr__(self) -> str:
        info = self.info
        return (
            f"Generator({self.generator_id!r}, n_points={info.n_points}, dim={info.dim}, "
            f"epsilon={info.epsilon}, method={info.method!r})"
        )

    def sample(self, n: int, seed: int, *, idempotency_key: str | None = None) -> A:
        """``n`` samples as an ``(n, dim)`` float64 array; the same seed, the same array."""
        return self._generators.sample(self.generator_id, n, seed, idempotency_key=idempotency_key)

    def delete(self) -> N:
        """Delete this generator at the service."""
        return self._generators.delete(self.generator_id)
