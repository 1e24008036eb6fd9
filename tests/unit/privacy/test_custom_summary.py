"""The summary path of custom losses (issue 19): a loss quadratic in θ whose clip provably never
binds is evaluated from record sums instead of a record pass per step.

* :func:`enclose` is an inclusion: random grammar expressions evaluated at 60 digits (mpmath) at
  the box's corners and random points never leave their enclosure.
* :func:`prove` is exact at the boundary (a clip equal to sup |∇ℓ| is proved, one ulp below is
  not) and refuses what it cannot prove (a binding clip, θ-dependence beyond degree 2, a
  singularity in the box, intermediates far above G, the loss form).
* Where a proof holds, the summary equals the record pass with the clip on (so u, hence every
  sensitivity, is the clipped u), for random quadratic losses on a box and least squares on a
  ball; and the slope bound equals the built-in families'.
"""

from __future__ import annotations

import math
from typing import Any

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, Phase, assume, given, reject, settings
from hypothesis import strategies as st

from dp_core.errors import InvalidParameter
from dp_core.privacy.utilities import ClippedMean, CustomUtility, LinearRegression, symbolic
from dp_core.privacy.utilities.codegen import derivatives, parse_loss
from dp_core.privacy.utilities.custom import CustomData
from dp_core.privacy.utilities.intervals import Unbounded, enclose
from dp_core.privacy.utilities.quadratic import prove
from dp_core.privacy.utilities.symbolic import SummarySetting
from tests.unit.privacy.custom_losses import expressions, quadratic_losses

_MP = {
    "sigmoid": lambda z: 1 / (1 + mpmath.exp(-z)),
    "softplus": lambda z: mpmath.log1p(mpmath.exp(z)),
    "log1p": mpmath.log1p,
    "Heaviside": lambda z, h0=0.5: mpmath.mpf(1) if z > 0 else (mpmath.mpf(0) if z < 0 else h0),
}


def _at_60_digits(fn: Any, point: list[float]) -> Any:
    with mpmath.workdps(60):
        return fn(*[mpmath.mpf(v) for v in point])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=expressions(),
    lower=st.lists(st.floats(-3, 3), min_size=4, max_size=4),
    width=st.lists(st.floats(0, 3), min_size=4, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_enclosures_hold_every_value(
    text: str, lower: list[float], width: list[float], seed: int
) -> None:
    try:
        loss = parse_loss(text, ["x", "y"], 2)
        outputs = derivatives(loss, 1)  # ℓ and ∇ℓ as the proof sees them
    except (InvalidParameter, ValueError, TypeError):  # refused before any proof (SymPy fails)
        reject()
    symbols = [*loss.theta, *loss.columns]
    box = [(lo, lo + w) for lo, w in zip(lower, width, strict=True)]
    for expr in outputs:
        try:
            (lo, hi), peak = enclose(expr, dict(zip(symbols, box, strict=True)))
        except Unbounded:
            continue
        fn = sp.lambdify(symbols, expr, modules=[_MP, "mpmath"])
        rng = np.random.default_rng(seed)
        corners = [
            [b[k] for b, k in zip(box, bits, strict=True)] for bits in np.ndindex(2, 2, 2, 2)
        ]
        inside = rng.uniform([b[0] for b in box], [b[1] for b in box], (20, 4)).tolist()
        for point in corners + inside:
            try:
                value = _at_60_digits(fn, point)
            except (ValueError, ZeroDivisionError, TypeError):
                continue  # a point the expression is undefined at (a Piecewise branch, 0/0)
            if not isinstance(value, mpmath.mpf) or not mpmath.isfinite(value):
                continue
            with mpmath.workdps(60):
                slack = mpmath.mpf(10) ** -40 * max(1, abs(value))
                low, high = (mpmath.mpf(q.numerator) / q.denominator for q in (lo, hi))
                assert low - slack <= value <= high + slack, (text, expr, point)
                assert max(-lo, hi) <= peak


def _setting(form: str, clip: float, columns: int = 1, **theta: object) -> SummarySetting:
    return SummarySetting(form, clip, ((0.0, 10.0),) * columns, **theta)  # type: ignore[arg-type]


def test_the_proof_is_exact_at_the_boundary() -> None:
    mean = parse_loss("0.5 * (theta[0] - x)**2", ["x"], 1)
    box = {"box": ((0.0, 10.0),)}
    assert prove(mean, _setting("gradient_norm", 10.0, **box)) is not None  # sup |θ - x| = 10
    assert prove(mean, _setting("gradient_norm", math.nextafter(10.0, 0), **box)) is None
    # least squares on the unit ball: sup |(θ·a - y) a| = 2 + 2√2, irrational
    lsq = parse_loss("0.5 * (theta[0] * a + theta[1] * b - y)**2", ["a", "b", "y"], 2)
    bound = 2 + 2 * math.sqrt(2)  # its nearest float lies below it
    setting = SummarySetting(
        "gradient_norm", bound, ((-1, 1), (-1, 1), (-2, 2)), ball_center=(0, 0), ball_radius=1
    )
    assert prove(lsq, setting) is None
    above = prove(lsq, SummarySetting(**{**setting.__dict__, "clip": math.nextafter(bound, 9)}))
    assert above is not None
    assert above.curvature_bound == 2.0  # ‖a aᵀ‖_F <= |a|² = 2


@pytest.mark.parametrize(
    ("loss", "form", "clip", "columns", "why"),
    [
        ("huber(theta[0] - x, 1.0)", "gradient_norm", 100.0, 1, "not polynomial in θ"),
        ("theta[0]**3 * x", "gradient_norm", 1e9, 1, "degree 3 in θ"),
        ("(theta[0] - x)**2", "loss", 1e9, 1, "the loss form is never summarised"),
        ("theta[0] * tanh(1e15 * x)", "gradient_norm", 2.0, 1, "a node 2^20·G above G"),
        ("0.5 * (theta[0] - 1 / (x - 5))**2", "gradient_norm", 1e9, 1, "a pole in the box"),
        ("0.5 * (theta[0] - log(x))**2", "gradient_norm", 1e9, 1, "log(0) in the box"),
        ("0.5 * ((theta[0] - x)**2 + (theta[0] - y)**2)", "gradient_norm", 14.0, 2, "binds"),
    ],
)
def test_what_cannot_be_proved_is_not(
    loss: str, form: str, clip: float, columns: int, why: str
) -> None:
    names = ["x", "y"][:columns]
    parsed = parse_loss(loss, names, 1)
    assert prove(parsed, _setting(form, clip, columns, box=((0.0, 10.0),))) is None, why


def test_the_proof_sees_through_functions_of_the_record() -> None:
    loss = parse_loss("0.5 * (theta[0] - log(x))**2 + exp(-x) * theta[0]", ["x"], 1)
    setting = SummarySetting("gradient_norm", 4.0, ((1.0, 10.0),), box=((-1.0, 3.0),))
    proof = prove(loss, setting)
    assert proof is not None
    # |θ - log x + e^{-x}|: largest at θ = -1, x = 10 (1 + log 10 - e^-10) or θ = 3, x = 1
    assert 1 + math.log(10) - math.exp(-10) <= proof.gradient_bound <= 3 + math.exp(-1) + 1e-12
    squashed = parse_loss("theta[0] * tanh(1e15 * x)", ["x"], 1)  # a peak of 1e16 inside
    setting = SummarySetting("gradient_norm", 1e10, ((0.0, 10.0),), box=((0.0, 10.0),))
    assert prove(squashed, setting) is not None  # 1e16 <= 2^20·G


def _records(columns: tuple[tuple[float, float], ...], n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lo, hi = np.array(columns).T
    corners = np.array(np.meshgrid(*zip(lo, hi, strict=True))).reshape(len(lo), -1).T
    return np.vstack([corners, rng.uniform(lo, hi, (n, len(lo)))])


def _points(utility: CustomUtility, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if utility.box is not None:
        lo, hi = np.array(utility.box).T
        corners = np.array(np.meshgrid(*zip(lo, hi, strict=True))).reshape(len(lo), -1).T
        return np.ascontiguousarray(np.vstack([corners, rng.uniform(lo, hi, (n, len(lo)))]))
    assert utility.ball_center is not None and utility.ball_radius is not None
    v = rng.normal(size=(n, len(utility.ball_center)))
    v *= utility.ball_radius / np.linalg.norm(v, axis=1, keepdims=True)
    return np.ascontiguousarray(v * rng.uniform(0, 1, (n, 1)) ** 0.5 + utility.ball_center)


def _summary_equals_the_record_pass(utility: CustomUtility, seed: int) -> None:
    assert utility.summary_proof() is not None
    records = _records(
        tuple(zip(utility.column_lower, utility.column_upper, strict=True)), 200, seed
    )
    prepared = utility.prepare(records)
    assert prepared.summary is not None
    record_pass = CustomData(prepared.records_t)  # the same records, no summary: the clip is on
    points = _points(utility, 200, seed + 1)
    fast, slow = utility.loss(prepared, points), utility.loss(record_pass, points)
    scale = max(1.0, float(np.abs(slow[0]).max()))
    np.testing.assert_allclose(fast[0], slow[0], rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(fast[1], slow[1], rtol=0, atol=1e-8 * scale)


def test_the_summary_equals_the_record_pass_on_a_ball() -> None:
    utility = CustomUtility(
        "0.5 * (theta[0] * a + theta[1] * b - y)**2",
        ("a", "b", "y"),
        (-1.0, -1.0, -2.0),
        (1.0, 1.0, 2.0),
        math.nextafter(2 + 2 * math.sqrt(2), 9),  # the exact bound: the clip touches, never binds
        ball_center=(0.0, 0.0),
        ball_radius=1.0,
    )
    _summary_equals_the_record_pass(utility, 0)


def _quadratic_case(text: str) -> CustomUtility:
    """``text`` on Θ = [-1, 2]² with records in [0.5, 3]², clipped exactly at the proof's bound
    of sup |∇ℓ|: the tightest clip the proof accepts."""
    columns, box = ((0.5, 3.0), (0.5, 3.0)), ((-1.0, 2.0), (-1.0, 2.0))
    try:
        parsed = parse_loss(text, ["x", "y"], 2)
    except (InvalidParameter, ValueError, TypeError):  # refused by the service (SymPy fails)
        reject()
    loose = prove(parsed, SummarySetting("gradient_norm", 1e12, columns, box=box))
    assume(loose is not None)
    assert loose is not None
    tight = CustomUtility(text, ("x", "y"), (0.5, 0.5), (3.0, 3.0), loose.gradient_bound, box=box)
    assume(tight.summary_proof() is not None)  # not when intermediates reach far above G
    return tight


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # each example compiles: no shrinking
)
@given(text=quadratic_losses(), seed=st.integers(0, 2**16))
def test_random_quadratic_losses_summarise_exactly(text: str, seed: int) -> None:
    _summary_equals_the_record_pass(_quadratic_case(text), seed)


def test_slope_bounds_equal_the_builtin_families() -> None:
    mean = CustomUtility("0.5 * (theta[0] - x)**2", ("x",), (0.0,), (10.0,), 10.0, box=((0, 10),))
    builtin_mean = ClippedMean((0.0,), (10.0,))
    assert mean.sensitivity("add_remove", 500) == builtin_mean.sensitivity("add_remove", 500)
    lsq = CustomUtility(
        "0.5 * (theta[0] * a + theta[1] * b - y)**2",
        ("a", "b", "y"),
        (-1.0, -1.0, -2.0),
        (1.0, 1.0, 2.0),
        5.0,
        ball_center=(0.0, 0.0),
        ball_radius=1.0,
    )
    builtin_lsq = LinearRegression((-1.0, -1.0), (1.0, 1.0), -2.0, 2.0, 1.0)
    slope = lsq.sensitivity("add_remove", 500).slope_bound
    assert slope == 500 * 2.0  # ‖a aᵀ‖_F <= |a|² = 2, exactly
    assert slope == pytest.approx(builtin_lsq.sensitivity("add_remove", 500).slope_bound, 1e-12)
    unproved = CustomUtility("huber(theta[0] - x, 1.0)", ("x",), (0.0,), (1.0,), 1.0, box=((0, 1),))
    assert unproved.sensitivity("add_remove", 500).slope_bound is None
    loss_form = CustomUtility(
        "(theta[0] - x)**2", ("x",), (0.0,), (1.0,), 1.0, box=((0, 1),), form="loss"
    )
    assert loss_form.summary_proof() is None


def test_a_proof_that_runs_out_of_time_is_no_proof() -> None:
    """Nothing is refused: the loss keeps its record pass."""
    setting = SummarySetting("gradient_norm", 50.0, ((0.0, 10.0),), box=((0.0, 10.0),))
    loss = "0.5 * (theta[0] - x)**2 + 1e-9 * theta[0] * x * 7.25"  # not asked before
    assert symbolic.summary_proof_within(loss, ("x",), 1, setting, timeout=0.0) is None
    again = "0.5 * (theta[0] - x)**2 + 1e-9 * theta[0] * x * 7.5"
    assert symbolic.summary_proof_within(again, ("x",), 1, setting) is not None
