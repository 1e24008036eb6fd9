"""Custom utilities (issue 19) against the built-in families they equal, in the same run.

One evaluation of the potential's loss and gradient at N = 2000 particles over n = 10^5 records
(what every SHK step does), for losses written as custom expressions and the built-in family
that computes the same u:

* the 1-D mean (gradient form; built-in: sorted records and prefix sums, O(log n) per particle);
* the 2-D mean with a binding gradient clip (built-in: the record pass of
  ``assignment_gradient_sum`` + ``assignment_curvature``) — the like-for-like record-pass case;
* the 2-D mean, loss form with a clip (built-in record pass ``clipped_mean_loss_nd``);
* linear regression on a ball (built-in: sufficient statistics, O(d²) per particle).

The 1-D mean and least squares are quadratic in θ with a clip that never binds, so the custom
losses run from record sums too (``dp_core/privacy/utilities/quadratic.py``); for those two, a
whole release is timed as well.

Each pair is checked to agree (relative 1e-8) before it is timed. Then the time to compile a new
expression (SymPy parse + derivatives + code printing, and the Numba compile of each kernel kind),
a cache hit, and the parser's refusal time over the hostile corpus of the service tests.

Run: ``.venv/bin/python bench/bench_custom_utility.py [--n N] [--particles N]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import secrets
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import command_line, fmt_seconds, load_average, machine_description, markdown_table

from dp_core.engine import custom_kernels
from dp_core.errors import InvalidParameter
from dp_core.privacy.mechanism import ExponentialMechanism
from dp_core.privacy.utilities import ClippedMean, CustomUtility, LinearRegression
from dp_core.privacy.utilities.codegen import kernel_body, parse_loss
from dp_core.privacy.utilities.expression import check_loss


def _cases(n: int, rng: np.random.Generator) -> list[tuple[str, object, CustomUtility, np.ndarray]]:
    x1 = rng.uniform(0, 10, (n, 1))
    x2 = rng.uniform(0, 1, (n, 2))
    features = rng.uniform(-1, 1, (n, 2))
    target = np.clip(features @ [0.5, -0.3] + 0.1 * rng.normal(size=n), -2, 2)
    linear = LinearRegression((-1.0, -1.0), (1.0, 1.0), -2.0, 2.0, 1.0)
    sq2 = "0.5 * ((theta[0] - x)**2 + (theta[1] - y)**2)"
    box2 = ((0.0, 1.0), (0.0, 1.0))
    return [
        (
            "mean 1-D, gradient form",
            ClippedMean((0.0,), (10.0,)),
            CustomUtility("0.5 * (theta[0] - x)**2", ("x",), (0.0,), (10.0,), 10.0, box=((0, 10),)),
            x1,
        ),
        (
            "mean 2-D, gradient clip 0.3 (binds)",
            ClippedMean((0.0, 0.0), (1.0, 1.0), clip=0.3),
            CustomUtility(sq2, ("x", "y"), (0.0, 0.0), (1.0, 1.0), 0.3, box=box2),
            x2,
        ),
        (
            "mean 2-D, loss form, clip 0.3",
            ClippedMean((0.0, 0.0), (1.0, 1.0), clip=0.3, form="loss"),
            CustomUtility(
                "(theta[0] - x)**2 + (theta[1] - y)**2",
                ("x", "y"),
                (0.0, 0.0),
                (1.0, 1.0),
                0.09,
                box=box2,
                form="loss",
            ),
            x2,
        ),
        (
            "linear regression, ball R = 1",
            linear,
            CustomUtility(
                "0.5 * (theta[0] * a + theta[1] * b - y)**2",
                ("a", "b", "y"),
                (-1.0, -1.0, -2.0),
                (1.0, 1.0, 2.0),
                linear.gradient_bound,  # 2 + 2√2 rounded up: the clip touches, never binds
                ball_center=(0.0, 0.0),
                ball_radius=1.0,
            ),
            np.column_stack([features, target]),
        ),
    ]


def _points(utility: object, count: int, rng: np.random.Generator) -> np.ndarray:
    domain = utility.domain  # type: ignore[attr-defined]
    if domain.kind == "box":
        lo, hi = np.asarray(domain.lower), np.asarray(domain.upper)
        return np.ascontiguousarray(rng.uniform(lo, hi, (count, lo.size)))
    d = np.asarray(domain.center).size
    v = rng.normal(size=(count, d))
    r = domain.radius * rng.uniform(size=(count, 1)) ** (1 / d)
    return np.ascontiguousarray(v / np.linalg.norm(v, axis=1, keepdims=True) * r)


def _best(fn: object, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times))


def _evaluations(n: int, particles: int, repeats: int) -> str:
    rng = np.random.default_rng(0)
    rows = []
    for name, builtin, custom, records in _cases(n, rng):
        points = _points(builtin, particles, rng)
        custom.compile()
        b_prep = builtin.prepare(records)  # type: ignore[attr-defined]
        c_prep = custom.prepare(records)
        b_val, b_grad = builtin.loss(b_prep, points)  # type: ignore[attr-defined]
        c_val, c_grad = custom.loss(c_prep, points)
        np.testing.assert_allclose(c_val, b_val, rtol=1e-8, atol=1e-8 * np.abs(b_val).max())
        scale = np.abs(b_grad).max()
        np.testing.assert_allclose(c_grad, b_grad, rtol=1e-6, atol=1e-8 * scale)
        b_best, b_med = _best(lambda: builtin.loss(b_prep, points), repeats)  # noqa: B023
        c_best, c_med = _best(lambda: custom.loss(c_prep, points), repeats)  # noqa: B023
        rows.append(
            [
                name,
                fmt_seconds(b_best),
                fmt_seconds(c_best),
                f"{c_best / b_best:.2f}x",
                fmt_seconds(b_med),
                fmt_seconds(c_med),
            ]
        )
    return markdown_table(
        [
            f"loss (N = {particles}, n = {n})",
            "built-in best",
            "custom best",
            "custom / built-in",
            "built-in median",
            "custom median",
        ],
        rows,
    )


def _releases(n: int, particles: int) -> str:
    """Whole SHK releases (prepare + flow + relaxation, one sample) for the cases the summary path
    serves, custom against built-in."""
    rng = np.random.default_rng(1)
    rows = []
    for name, builtin, custom, records in _cases(n, rng):
        if custom.summary_proof() is None:
            continue
        seconds = []
        for utility in (builtin, custom):
            mechanism = ExponentialMechanism(utility, 1.0, n_max=n, particles=particles)
            mechanism.sample(records[:100], 1)  # warm: kernels compiled, caches filled
            start = time.perf_counter()
            mechanism.sample(records, 1)
            seconds.append(time.perf_counter() - start)
        rows.append(
            [
                name,
                fmt_seconds(seconds[0]),
                fmt_seconds(seconds[1]),
                f"{seconds[1] / seconds[0]:.2f}x",
            ]
        )
    return markdown_table(
        [f"whole release (N = {particles}, n = {n})", "built-in", "custom", "custom / built-in"],
        rows,
    )


def _compile_times() -> str:
    token = secrets.randbelow(10**6)  # a new expression: never in the cache
    loss = f"huber(theta[0] + theta[1] * x - y, 1.0) + {token}e-12 * theta[0]**2"
    rows = []
    for form, kinds in (("gradient_norm", (2, 1)), ("loss", (1, 0))):
        for order, method in zip(kinds, ("shk", "exact"), strict=True):
            start = time.perf_counter()
            body = kernel_body(parse_loss(loss, ["x", "y"], 2), order)
            symbolic = time.perf_counter() - start
            start = time.perf_counter()
            compiled = custom_kernels.compile_kernel(
                f"{'grid' if method == 'exact' else 'shk'}/{form}", body
            )
            numba = time.perf_counter() - start
            assert compiled.compile_seconds is not None
            start = time.perf_counter()
            utility = CustomUtility(
                loss, ("x", "y"), (-1, -2), (1, 2), 4.0, box=((-10, 10), (-5, 5)), form=form
            )
            assert utility.compile(method) is None
            hit = time.perf_counter() - start
            rows.append(
                [
                    f"{form} / {method}",
                    len(body.lines),
                    fmt_seconds(symbolic),
                    fmt_seconds(numba),
                    fmt_seconds(hit),
                ]
            )
    return markdown_table(
        ["new Huber expression", "body lines", "SymPy (parse, derive, print)", "Numba compile",
         "next request (cached)"],
        rows,
    )  # fmt: skip


def _refusals() -> str:
    spec = importlib.util.spec_from_file_location(
        "hostile", Path(__file__).resolve().parents[1] / "tests/service/hostile_losses.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    hostile: list[str] = module.HOSTILE

    worst = (0.0, "")
    for loss in hostile:
        start = time.perf_counter()
        try:
            check_loss(loss, ["x", "y"], 2)
        except InvalidParameter:
            pass
        else:
            raise AssertionError("a hostile expression passed")
        elapsed = time.perf_counter() - start
        worst = max(worst, (elapsed, repr(loss[:20]) + f"… ({len(loss)} chars)"))
    slowest = f"{fmt_seconds(worst[0])} ({worst[1]})"
    return f"parser refusals of the {len(hostile)} hostile expressions: slowest {slowest}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--particles", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("command:", command_line())
    for line in machine_description():
        print(line)
    print("load average before:", load_average())
    print()
    print(_evaluations(args.n, args.particles, args.repeats))
    print()
    print(_releases(args.n, args.particles))
    print()
    print(_compile_times())
    print()
    print(_refusals())
    print("load average after:", load_average())


if __name__ == "__main__":
    main()
