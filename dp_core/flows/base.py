"""The one run loop every particle flow uses, and the records it returns.

A flow supplies an initial state and a ``step(state) -> (state, info)`` function (BlackJAX's
``init`` / ``build_kernel`` split: what the next step needs lives in the state, diagnostics in the
info record). :func:`run_steps` advances it ``n_steps`` times and owns everything around the
steps: cooperative cancellation (checked before every step), progress callbacks, and an optional
trace every ``trace_every`` steps.

Privacy rule 3: a trace is built from the particles and the step's info, which depend on the data
in a private run, so traces are refused on private runs. ``RunDescription`` holds only public
parameters and is safe to return with any run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

from dp_core.errors import Cancelled, InvalidParameter

__all__ = [
    "CancelFn",
    "ProgressFn",
    "RunDescription",
    "RunResult",
    "TraceFn",
    "run_steps",
]

StateT = TypeVar("StateT")
InfoT = TypeVar("InfoT", bound=NamedTuple)

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(steps_done, n_steps)`` after every step."""
CancelFn = Callable[[], bool]
"""Returns True when the caller wants the run to stop; checked before every step."""
TraceFn = Callable[[Any], Mapping[str, float]]
"""Maps a state to named public metrics for one trace row."""


@dataclass(frozen=True)
class RunDescription:
    """A data-independent description of a run: only public parameters (privacy rule 2)."""

    flow: str
    n_particles: int
    dim: int
    n_steps: int
    step_size: float
    flow_time: float
    initialization: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None  # only for public runs; a private run's seed is never kept

    def as_dict(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "particles": self.n_particles,
            "dim": self.dim,
            "steps": self.n_steps,
            "step_size": self.step_size,
            "flow_time": self.flow_time,
            "initialization": self.initialization,
            "parameters": dict(self.parameters),
            "seed": self.seed,
        }


@dataclass(frozen=True)
class RunResult(Generic[StateT]):
    """Final state, its particles, the public description and (public runs only) a trace."""

    particles: Any
    state: StateT
    description: RunDescription
    trace: list[dict[str, float]]


def run_steps(
    step: Callable[[StateT], tuple[StateT, InfoT]],
    state: StateT,
    n_steps: int,
    *,
    private: bool,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    trace_every: int = 0,
    trace_fn: TraceFn | None = None,
) -> tuple[StateT, list[dict[str, float]]]:
    """Advance ``state`` by ``n_steps`` applications of ``step``.

    Returns the final state and the trace: rows ``{"step": k, **trace_fn(state), **info}`` at
    k = 0, every ``trace_every`` steps and at the last step (empty when ``trace_every == 0``).

    Raises
    ------
    InvalidParameter
        ``n_steps < 0``, ``trace_every < 0``, or a trace requested on a private run.
    Cancelled
        ``cancel()`` returned True before some step; the partial state is discarded.
    """
    if n_steps < 0:
        raise InvalidParameter("steps", "must be >= 0")
    if trace_every < 0:
        raise InvalidParameter("trace_every", "must be >= 0")
    if trace_every and private:
        raise InvalidParameter("trace_every", "traces are available on public runs only")
    tracing = trace_every > 0 and trace_fn is not None
    trace: list[dict[str, float]] = []
    if tracing:
        trace.append({"step": 0, **trace_fn(state)})
    for k in range(1, n_steps + 1):
        if cancel is not None and cancel():
            raise Cancelled(f"cancelled before step {k} of {n_steps}")
        state, info = step(state)
        if tracing and (k % trace_every == 0 or k == n_steps):
            trace.append({"step": k, **trace_fn(state), **info._asdict()})
        if progress is not None:
            progress(k, n_steps)
    return state, trace
