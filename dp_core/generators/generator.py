"""The public generator API: :func:`fit_generator` and :class:`Generator` (aeot.md §6, API.md).

``fit_generator(points, ...)`` standardizes the points (A 1), draws the seeded scrambled Sobol
fit sample of the source (aeot.md §2.3) and fits the heights:

* ``method="smoothed"``, ``epsilon > 0``: L-BFGS with ε-continuation on (A 13); samples are
  ``ȳ + s·T_ε(x)`` (A 20) with T_ε the soft-max barycentre (A 12).
* ``method="smoothed"``, ``epsilon = 0``: the hard model: smoothed fit down to ε = 0.001, then
  Adam (A 8); samples are ``T_0(x)`` (A 3), i.e. input points only (A 10).
* ``method="aeot_top2"``: the hard fit, samples by AE-OT's top-2 interpolation (A 11′) with
  ``angle_threshold`` (θ = 0.4 by default, on standardized codes); ``epsilon`` is ignored for
  the map and stored as given.

``Generator.sample(n, seed)`` pushes ``n`` fresh source draws of ``numpy.random.default_rng(seed)``
through the map, in chunks of :data:`CHUNK` rows (memory O((CHUNK + n_points)·d) besides the
output): same seed, same samples, bit for bit (T-OT-8). ``to_dict()`` / ``from_dict()`` serialise
the state with plain lists (JSON-exact: Python floats round-trip) or, with ``compact=True``,
base64 float64 little-endian arrays.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dp_core.errors import InvalidParameter, NumericalFailure
from dp_core.generators import hard, smoothed
from dp_core.generators.source import draw_source, fit_sample
from dp_core.generators.standardize import Standardization, standardize
from dp_core.types import FloatArray

__all__ = ["CHUNK", "METHODS", "SOURCES", "FitReport", "Generator", "fit_generator"]

METHODS = ("smoothed", "aeot_top2")
SOURCES = ("uniform", "gaussian")
CHUNK = 1 << 15
HARD_START_EPSILON = 0.001
"""ε of the smoothed fit that starts the hard (Adam) fit (aeot.md §5.1)."""
HARD_ITERATIONS = 1000
"""Adam iterations of the hard fit at most (aeot.md §5.1), within ``max_steps``."""
_FORMAT = 1


@dataclass(frozen=True)
class FitReport:
    """What the fit did. ``steps`` counts energy evaluations (all ε levels and Adam steps);
    ``max_rel_mass_error`` is ``max_j |m_j − ν_j|/ν_j`` on the fit sample at the returned heights
    (soft masses for ε > 0, hard masses otherwise); ``converged`` says it is ≤ the tolerance;
    ``energy`` is (A 13) (ε > 0) or (A 4) there. ``None`` where nothing was measured: the
    energy and the error when ``max_steps`` ran out before the target ε was reached, a stage's
    error when the budget ended before its first evaluation (JSON has no inf or NaN)."""

    steps: int
    converged: bool
    energy: float | None
    max_rel_mass_error: float | None
    seconds: float
    levels: tuple[tuple[float, int, float | None], ...] = ()
    """Per fit stage ``(ε, evaluations, max rel. mass error)``; ε = 0 is the Adam stage."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["levels"] = [list(v) for v in self.levels]
        return out

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> FitReport:
        fields = dict(state)
        fields["levels"] = tuple(
            (float(e), int(k), _measured(r)) for e, k, r in fields.get("levels", ())
        )
        return cls(**fields)


def _measured(value: float | None) -> float | None:
    """``value`` as a float, or ``None`` where it is missing or not finite (not measured)."""
    return None if value is None or not math.isfinite(value) else float(value)


def _check_points(points: object, weights: object) -> tuple[FloatArray, FloatArray]:
    y = np.asarray(points, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] < 1 or y.shape[1] < 1:
        raise InvalidParameter("points", "must be a non-empty list of equal-length lists")
    if not np.all(np.isfinite(y)):
        raise InvalidParameter("points", "must be finite")
    if weights is None:
        nu = np.full(y.shape[0], 1.0 / y.shape[0])
    else:
        nu = np.asarray(weights, dtype=np.float64)
        if nu.shape != (y.shape[0],) or not np.all(np.isfinite(nu)) or np.any(nu <= 0):
            raise InvalidParameter("weights", "must be positive, one per point")
        if abs(float(nu.sum()) - 1.0) > 1e-9:
            raise InvalidParameter("weights", "must sum to 1")
        nu = nu / nu.sum()
    return np.ascontiguousarray(y), nu


def _check_options(
    source: str, epsilon: float, method: str, samples: int, max_steps: int, tolerance: float
) -> None:
    if source not in SOURCES:
        raise InvalidParameter("source", f"must be one of {SOURCES}")
    if method not in METHODS:
        raise InvalidParameter("method", f"must be one of {METHODS}")
    if not (math.isfinite(epsilon) and epsilon >= 0.0):
        raise InvalidParameter("epsilon", "must be a finite number >= 0")
    if not (isinstance(samples, int) and samples >= 16):
        raise InvalidParameter("fit.samples", "must be an integer >= 16")
    if not (isinstance(max_steps, int) and max_steps >= 1):
        raise InvalidParameter("fit.max_steps", "must be an integer >= 1")
    if not (math.isfinite(tolerance) and tolerance > 0.0):
        raise InvalidParameter("fit.tolerance", "must be a positive number")


@dataclass(frozen=True)
class Generator:
    """A fitted semi-discrete OT generator (state only; see the module docstring).

    ``points`` are the input points (original units), ``heights`` the fitted h in standardized
    units (centred), ``epsilon`` in units of ``scale²``.
    """

    points: FloatArray
    weights: FloatArray
    heights: FloatArray
    mean: FloatArray
    scale: float
    epsilon: float
    source: str
    method: str
    angle_threshold: float
    report: FitReport

    # ----------------------------------------------------------------- derived
    @property
    def n_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def dim(self) -> int:
        return int(self.points.shape[1])

    @property
    def epsilon_data_units(self) -> float:
        """ε in the units of the input points squared (ε·s²)."""
        return self.epsilon * self.scale**2

    @property
    def standardization(self) -> Standardization:
        return Standardization(mean=self.mean, scale=self.scale)

    @property
    def codes(self) -> FloatArray:
        """The standardized points y_j (A 1)."""
        return self.standardization.forward(self.points)

    @property
    def map_kind(self) -> str:
        """``smoothed`` (T_ε), ``hard`` (T_0) or ``aeot_top2`` (A 11′)."""
        if self.method == "aeot_top2":
            return "aeot_top2"
        return "smoothed" if self.epsilon > 0.0 else "hard"

    # ----------------------------------------------------------------- maps
    def transport(self, x: FloatArray) -> FloatArray:
        """The deterministic map of source points x (N, d) in standardized units, mapped back to
        the input units: ``ȳ + s·T_ε(x)`` or ``ȳ + s·T_0(x)`` (not defined for ``aeot_top2``,
        whose map is random)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        y = self.codes
        if self.map_kind == "smoothed":
            z = smoothed.smoothed_map(x, y, self.heights, self.epsilon)
        elif self.map_kind == "hard":
            # T_0 returns input points (A 10): index them, exactly, in input units
            return self.points[hard.hard_cells(x, y, self.heights)]
        else:
            raise InvalidParameter("method", "aeot_top2 has no deterministic map")
        return self.standardization.inverse(z)

    def sample(self, n: int, seed: int) -> FloatArray:
        """``n`` new points (n, d) in input units from ``numpy.random.default_rng(seed)``."""
        if not (isinstance(n, int) and n >= 1):
            raise InvalidParameter("n", "must be an integer >= 1")
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.dim))
        if self.map_kind != "aeot_top2":
            for start in range(0, n, CHUNK):
                stop = min(n, start + CHUNK)
                x = draw_source(rng, self.source, stop - start, self.dim)
                out[start:stop] = self.transport(x)
            return out
        y = self.codes
        filled = 0
        drawn = 0
        while filled < n:
            x = draw_source(rng, self.source, CHUNK, self.dim)
            lam = rng.uniform(0.0, 1.0, size=CHUNK)
            drawn += CHUNK
            i1, i2, theta = hard.top2_pairs(x, y, self.heights)
            keep = np.flatnonzero(theta < self.angle_threshold)[: n - filled]
            lk = lam[keep, None]
            # (A 11′) in input units: the standardization is affine, so this equals ȳ + s·(...)
            z = lk * self.points[i1[keep]] + (1.0 - lk) * self.points[i2[keep]]
            out[filled : filled + keep.size] = z
            filled += keep.size
            if filled < n and drawn >= 1000 * CHUNK:
                raise NumericalFailure(
                    f"aeot_top2 acceptance below 1e-3 at angle_threshold {self.angle_threshold}"
                )
        return out

    # ----------------------------------------------------------------- serialisation
    def to_dict(self, *, compact: bool = False) -> dict[str, Any]:
        """Plain-data state. ``compact=False``: arrays as nested lists of floats (exact through
        JSON); ``compact=True``: arrays as ``{"dtype", "shape", "base64"}`` (float64, little
        endian), about 8/17 of the list form."""

        def enc(a: FloatArray) -> Any:
            if not compact:
                return a.tolist()
            le = np.ascontiguousarray(a, dtype="<f8")
            return {
                "dtype": "float64",
                "shape": list(a.shape),
                "base64": base64.b64encode(le.tobytes()).decode("ascii"),
            }

        return {
            "format": _FORMAT,
            "method": self.method,
            "source": self.source,
            "epsilon": self.epsilon,
            "angle_threshold": self.angle_threshold,
            "scale": self.scale,
            "mean": enc(self.mean),
            "points": enc(self.points),
            "weights": enc(self.weights),
            "heights": enc(self.heights),
            "report": self.report.to_dict(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Generator:
        """Inverse of :meth:`to_dict` (either form)."""

        def dec(v: Any) -> FloatArray:
            if isinstance(v, dict):
                raw = np.frombuffer(base64.b64decode(v["base64"]), dtype="<f8")
                return np.ascontiguousarray(raw.reshape(v["shape"]), dtype=np.float64)
            return np.ascontiguousarray(np.asarray(v, dtype=np.float64))

        if state.get("format") != _FORMAT:
            raise InvalidParameter("state.format", "unsupported generator state format")
        points = dec(state["points"])
        if points.ndim == 1:
            points = points.reshape(-1, dec(state["mean"]).shape[0])
        return cls(
            points=points,
            weights=dec(state["weights"]),
            heights=dec(state["heights"]),
            mean=dec(state["mean"]),
            scale=float(state["scale"]),
            epsilon=float(state["epsilon"]),
            source=str(state["source"]),
            method=str(state["method"]),
            angle_threshold=float(state["angle_threshold"]),
            report=FitReport.from_dict(state["report"]),
        )


def fit_generator(
    points: object,
    *,
    weights: object | None = None,
    source: str = "uniform",
    epsilon: float = 0.003,
    method: str = "smoothed",
    samples: int = 65536,
    max_steps: int = 2000,
    tolerance: float = 1e-5,
    seed: int = 0,
    angle_threshold: float = 0.4,
    progress: Callable[[float], None] | None = None,
) -> Generator:
    """Fit a generator on public points (aeot.md §6; API.md "Generators").

    Parameters
    ----------
    points : (n, d) public points (caller points, or :func:`release_points` of a release).
    weights : None (uniform) or (n,) positive, summing to 1.
    source : ``uniform`` ([−√3, √3]^d) or ``gaussian`` (N(0, I_d)).
    epsilon : ε ≥ 0 in units of the squared spread s² (0 = hard map).
    method : ``smoothed`` or ``aeot_top2``.
    samples, max_steps, tolerance : fit sample size, energy evaluations in total, and the target
        ``max_j |m_j − ν_j|/ν_j`` on the fit sample.
    seed : seeds the scrambled Sobol fit sample (inputs are public).
    angle_threshold : θ of (A 11′) for ``aeot_top2`` (radians, standardized codes).
    progress : called with the fraction of ``max_steps`` used after each evaluation; an exception
        raised there (e.g. a cancellation) propagates.

    Raises
    ------
    InvalidParameter for bad inputs.
    """
    y_raw, nu = _check_points(points, weights)
    epsilon = float(epsilon)
    tolerance = float(tolerance)
    _check_options(source, epsilon, method, samples, max_steps, tolerance)
    if not (math.isfinite(angle_threshold) and angle_threshold > 0):
        raise InvalidParameter("angle_threshold", "must be positive")
    start = time.perf_counter()
    std = standardize(y_raw, nu)
    y = std.forward(y_raw)
    x = fit_sample(source, y.shape[1], samples, seed)
    report_progress = None if progress is None else (lambda k: progress(min(1.0, k / max_steps)))
    hard_fit = method == "aeot_top2" or epsilon == 0.0
    if not hard_fit:
        res = smoothed.fit_smoothed(
            x, y, nu, epsilon, max_steps=max_steps, tolerance=tolerance, progress=report_progress
        )
        h, steps, energy, err = res.heights, res.steps, res.energy, res.max_rel_mass_error
        levels = res.levels
    else:
        budget = max(1, max_steps - min(HARD_ITERATIONS, max_steps // 2))
        res = smoothed.fit_smoothed(
            x,
            y,
            nu,
            HARD_START_EPSILON,
            max_steps=budget,
            tolerance=max(tolerance, 1e-5),
            progress=report_progress,
        )
        iterations = max(1, min(HARD_ITERATIONS, max_steps - res.steps))
        offset = res.steps
        h, used, energy, err = hard.fit_hard(
            x,
            y,
            nu,
            res.heights,
            iterations=iterations,
            progress=None if report_progress is None else (lambda k: report_progress(offset + k)),
        )
        steps = res.steps + used
        levels = (*res.levels, (0.0, int(used), float(err)))
    report = FitReport(
        steps=int(steps),
        converged=bool(err <= tolerance),
        energy=_measured(energy),
        max_rel_mass_error=_measured(err),
        seconds=time.perf_counter() - start,
        levels=tuple((float(e), int(k), _measured(r)) for e, k, r in levels),
    )
    return Generator(
        points=y_raw,
        weights=nu,
        heights=np.ascontiguousarray(h),
        mean=std.mean,
        scale=std.scale,
        epsilon=epsilon,
        source=source,
        method=method,
        angle_threshold=float(angle_threshold),
        report=report,
    )
