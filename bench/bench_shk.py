"""SHK sampler step against the NumPy reference, the default 1-D release, and compile times.

Prints one markdown section (the command, the machine, three tables):

1. **SHK step** (KDE + birth–death + MALA) of the engine (``SHKSampler.build_step()``) against
   one step of the NumPy reference BDLS built from ``dp_core.reference.bdls`` pieces (the loop
   body of ``bdls_reference``) with a NumPy Gaussian-mixture potential, for N in
   {1000, 4000, 16000} and d in {1, 2, 10}, on a two-component Gaussian mixture in [-4, 4]^d.
   Both are timed in this run; the ratio is reference time / engine time.
2. **Default 1-D release**: ``sample_shk`` with N = 2000, private=True, to the flow time the
   certificate needs for a size bound n_max = 10^6 (t = log(2(1-η)U/(ηΔ_osc)), η = 0.05,
   U/Δ_osc = n_max/2, so t = log(1.9e7)), followed by the relaxation phase the mechanism plans
   for it (λU = 0.95·5·10^5 at ε = 1); median of 3 runs after one warm-up run, and the same
   without the relaxation phase.
3. **Compile time** of every engine signature: ``dp_core.engine.warm()`` in a fresh subprocess
   with an empty temporary ``NUMBA_CACHE_DIR``, then again with the populated cache.

Run from the repository root: ``.venv/bin/python bench/bench_shk.py`` (``--quick``: N up to
4000, fewer repeats).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
from scipy.special import logsumexp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (
    command_line,
    fmt_seconds,
    machine_description,
    markdown_table,
    time_call,
    wakeup_probe,
)

from dp_core.engine import kde
from dp_core.engine.potentials import GaussianMixturePotential
from dp_core.flows import shk
from dp_core.reference import bdls
from dp_core.types import Domain

ROOT = Path(__file__).resolve().parent.parent
STEP_SIZE: float = float(getattr(shk, "DEFAULT_STEP_SIZE", 0.05))
STEP_SIZE_SOURCE = (
    "`dp_core.flows.shk.DEFAULT_STEP_SIZE`" if hasattr(shk, "DEFAULT_STEP_SIZE") else "0.05"
)
N_MAX = 1_000_000
ETA = 0.05
RELEASE_FLOW_TIME = math.log(2.0 * (1.0 - ETA) * (N_MAX / 2) / ETA)  # log(1.9e7) ≈ 16.76
RELEASE_N = 2000
RELEASE_POTENTIAL_RANGE = (1.0 - ETA) * N_MAX / 2  # λU of a median at ε = 1


# --------------------------------------------------------------------------- targets
def mixture(d: int) -> tuple[GaussianMixturePotential, Domain, dict[str, np.ndarray]]:
    """Two-component Gaussian mixture (weights 0.3 / 0.7, means ∓1.5 e_1, sds 0.6 / 0.8) on
    the box [-4, 4]^d; returns the compiled target, the domain and the raw parameters."""
    means = np.zeros((2, d))
    means[0, 0], means[1, 0] = -1.5, 1.5
    params = {"weights": np.array([0.3, 0.7]), "means": means, "sds": np.array([0.6, 0.8])}
    target = GaussianMixturePotential(params["weights"], params["means"], params["sds"])
    return target, Domain.box(np.full(d, -4.0), np.full(d, 4.0)), params


def numpy_mixture(
    params: dict[str, np.ndarray],
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The same V and ∇V in plain NumPy (the reference step must not call engine code)."""
    w, mu, s = params["weights"], params["means"], params["sds"]
    d = mu.shape[1]
    log_w = np.log(w / w.sum())
    s2 = s * s

    def value_and_grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        diff = x[:, None, :] - mu[None, :, :]  # (n, K, d)
        r2 = np.einsum("nkd,nkd->nk", diff, diff)
        logs = log_w - 0.5 * d * np.log(2.0 * np.pi * s2) - 0.5 * r2 / s2
        lse = logsumexp(logs, axis=1)
        resp = np.exp(logs - lse[:, None])
        grad = np.einsum("nk,nkd->nd", resp / s2, diff)
        return -lse, grad

    return value_and_grad


def reference_step(
    value_and_grad: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    domain: Domain,
    h: float,
    dt: float,
    rng: np.random.Generator,
) -> Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One BDLS step from the NumPy reference pieces (the loop body of ``bdls_reference``)."""

    def step(x: np.ndarray, v: np.ndarray, g: np.ndarray):
        n, d = x.shape
        beta = bdls.birth_death_rates_reference(bdls.log_kde_reference(x, x, h), v)
        order = rng.permutation(n)
        u_event = rng.random(n)
        u_partner = rng.random(n)
        src, _ = bdls.birth_death_sweep_reference(beta, dt, order, u_event, u_partner)
        x, v, g = x[src], v[src], g[src]
        xi = rng.standard_normal((n, d))
        u = rng.random(n)
        x, v, g, _ = bdls.mala_step_reference(value_and_grad, domain, x, v, g, dt, xi, u)
        return x, v, g

    return step


# --------------------------------------------------------------------------- SHK step table
def _time_list(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def bench_step(n: int, d: int, engine_steps: int, ref_repeats: int) -> dict[str, float]:
    """Engine and reference step times (best, median) for one (N, d) cell."""
    target, domain, params = mixture(d)
    h = shk.default_bandwidth(domain, n)
    sampler = shk.SHKSampler(target, domain, STEP_SIZE, h)
    state = sampler.init(n, seed=12345)
    x0, v0, g0 = state.particles.copy(), state.potential.copy(), state.grad.copy()
    step = sampler.build_step()
    holder = [state]

    def engine_once() -> None:
        holder[0], _ = step(holder[0])

    for _ in range(3):  # warm-up: compile paths and buffers
        engine_once()

    vg = numpy_mixture(params)
    v_np, g_np = vg(x0)
    assert np.allclose(v_np, v0, rtol=1e-10, atol=1e-10), "NumPy and compiled V disagree"
    assert np.allclose(g_np, g0, rtol=1e-10, atol=1e-10), "NumPy and compiled ∇V disagree"
    ref_step = reference_step(vg, domain, h, STEP_SIZE, np.random.default_rng(7))

    # Engine batches interleaved with the reference steps, so that a slow phase of the shared
    # machine is not seen by one side only.
    batches = ref_repeats + 1
    per_batch = -(-engine_steps // batches)
    eng: list[float] = []
    ref: list[float] = []
    for k in range(batches):
        eng += _time_list(engine_once, per_batch)
        if k < ref_repeats:
            ref += _time_list(lambda: ref_step(x0, v0, g0), 1)
    return {
        "eng_best": min(eng),
        "eng_med": statistics.median(eng),
        "ref_best": min(ref),
        "ref_med": statistics.median(ref),
        "ref_n": len(ref),
        "eng_n": len(eng),
    }


def step_table(sizes: tuple[int, ...]) -> tuple[str, dict[tuple[int, int], dict[str, float]]]:
    """The SHK step table over N in ``sizes`` and d in {1, 2, 10}."""
    rows = []
    cells: dict[tuple[int, int], dict[str, float]] = {}
    # one small untimed reference step first, so that imports and allocators are warm
    bench_step(200, 2, 2, 1)
    for n in sizes:
        ref_repeats = 5 if n <= 1000 else 3 if n <= 4000 else 1
        engine_steps = 20 if n <= 4000 else 8
        for d in (1, 2, 10):
            c = bench_step(n, d, engine_steps, ref_repeats)
            cells[(n, d)] = c
            rows.append(
                [
                    n,
                    d,
                    fmt_seconds(c["eng_best"]),
                    fmt_seconds(c["eng_med"]),
                    fmt_seconds(c["ref_best"]),
                    fmt_seconds(c["ref_med"]),
                    int(c["ref_n"]),
                    f"{c['ref_best'] / c['eng_best']:.1f}x",
                    f"{c['ref_med'] / c['eng_med']:.1f}x",
                ]
            )
    table = markdown_table(
        [
            "N",
            "d",
            "engine best",
            "engine median",
            "NumPy best",
            "NumPy median",
            "NumPy runs",
            "ratio (best)",
            "ratio (median)",
        ],
        rows,
    )
    return table, cells


# --------------------------------------------------------------------------- release
def release_times(repeats: int, relax: bool = True) -> list[float]:
    """Wall times of ``repeats`` default 1-D private releases after one warm-up release
    (``relax=False``: the flow alone, without the relaxation phase)."""
    target, domain, _ = mixture(1)
    relaxation = shk.relaxation_schedule(domain, RELEASE_POTENTIAL_RANGE) if relax else None

    def release() -> None:
        shk.sample_shk(
            target,
            domain,
            n_particles=RELEASE_N,
            flow_time=RELEASE_FLOW_TIME,
            step_size=STEP_SIZE,
            relaxation=relaxation,
            private=True,
        )

    release()
    return _time_list(release, repeats)


def _release_subprocess(repeats: int, extra_env: dict[str, str]) -> list[float]:
    """``release_times`` in a fresh process with ``extra_env`` (engine loaded from cache)."""
    proc = subprocess.run(
        [sys.executable, __file__, "--release-json", str(repeats)],
        cwd=ROOT,
        env=dict(os.environ, **extra_env),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_release(repeats: int) -> tuple[str, dict[str, float]]:
    """Time the default 1-D private release (here, and in a subprocess with
    ``OMP_WAIT_POLICY=active``); also the per-step cost and its KDE share."""
    times = release_times(repeats)
    flow_only = release_times(repeats, relax=False)
    active = _release_subprocess(repeats, {"OMP_WAIT_POLICY": "active"})
    target, domain, _ = mixture(1)
    n_steps = math.ceil(RELEASE_FLOW_TIME / STEP_SIZE - 1e-12)
    h = shk.default_bandwidth(domain, RELEASE_N)
    sampler = shk.SHKSampler(target, domain, RELEASE_FLOW_TIME / n_steps, h)
    state = sampler.init(RELEASE_N, seed=1)
    step = sampler.build_step()
    for _ in range(50):  # let the particles move towards the target first
        state, _ = step(state)
    holder = [state]

    def one_step() -> None:
        holder[0], _ = step(holder[0])

    st = time_call(one_step, repeats=50, warmup=2)
    x = holder[0].particles
    kt = time_call(lambda: kde.log_kde_self(x, h), repeats=50, warmup=2)
    rows = [
        [
            "whole release (`sample_shk`, private=True)",
            fmt_seconds(min(times)),
            fmt_seconds(statistics.median(times)),
        ],
        [
            "the flow alone (no relaxation phase)",
            fmt_seconds(min(flow_only)),
            fmt_seconds(statistics.median(flow_only)),
        ],
        [
            "whole release, fresh process with `OMP_WAIT_POLICY=active`",
            fmt_seconds(min(active)),
            fmt_seconds(statistics.median(active)),
        ],
        ["one step (N = 2000, d = 1)", fmt_seconds(st.best), fmt_seconds(st.median)],
        ["of which `kde.log_kde_self`", fmt_seconds(kt.best), fmt_seconds(kt.median)],
        [
            f"steps × one step ({n_steps} steps)",
            fmt_seconds(n_steps * st.best),
            fmt_seconds(n_steps * st.median),
        ],
    ]
    table = markdown_table(["default 1-D release", "best", "median"], rows)
    info = {
        "best": min(times),
        "median": statistics.median(times),
        "active_best": min(active),
        "active_median": statistics.median(active),
        "n_steps": n_steps,
        "moves": shk.relaxation_schedule(domain, RELEASE_POTENTIAL_RANGE).moves,
    }
    return table, info


# --------------------------------------------------------------------------- compile times
_WARM_SCRIPT = """
import json, time
t0 = time.perf_counter()
from dp_core.engine import compile_stats, warm
t1 = time.perf_counter()
report = warm()
t2 = time.perf_counter()
stats = compile_stats()
print(json.dumps({
    "import_s": t1 - t0, "warm_s": report.seconds, "signatures": report.signatures,
    "hits": sum(h for h, _ in stats.values()), "misses": sum(m for _, m in stats.values()),
}))
"""


def bench_compile() -> tuple[str, dict[str, float]]:
    """``warm()`` in fresh subprocesses: empty cache directory, then the populated one."""
    rows = []
    info: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("empty cache (compile)", "populated cache (load)"):
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", _WARM_SCRIPT],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - start
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            info[label] = r["warm_s"]
            rows.append(
                [
                    label,
                    f"{r['warm_s']:.2f} s",
                    f"{r['import_s']:.2f} s",
                    f"{wall:.2f} s",
                    r["signatures"],
                    f"{r['hits']} / {r['misses']}",
                ]
            )
    table = markdown_table(
        [
            "`dp_core.engine.warm()` in a fresh process",
            "warm()",
            "import dp_core.engine",
            "process wall time",
            "signatures",
            "cache hits / misses",
        ],
        rows,
    )
    return table, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N <= 4000, fewer repeats")
    parser.add_argument(
        "--release-json", type=int, metavar="R", help="only time R releases; print JSON"
    )
    args = parser.parse_args()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    if args.release_json:
        print(json.dumps(release_times(args.release_json)))
        return
    sizes = (1000, 4000) if args.quick else (1000, 4000, 16000)

    compile_table, _ = bench_compile()  # first: the subprocesses then have the machine alone
    noise = wakeup_probe(3.0)
    steps, cells = step_table(sizes)
    release_table, rel = bench_release(3)
    noise_end = wakeup_probe(3.0)

    print("## SHK sampler: step, default release, compile time\n")
    print(f"Command: `{command_line()}`\n")
    print("\n".join([*machine_description(), noise + " (start)", noise_end + " (end)"]) + "\n")
    print(
        f"Step size Δt = {STEP_SIZE:g} ({STEP_SIZE_SOURCE}); bandwidth "
        "`default_bandwidth(domain, N)`; target: two-component Gaussian mixture (weights "
        "0.3/0.7, means ∓1.5 e₁, sds 0.6/0.8) on [-4, 4]^d.\n"
    )
    print("### SHK step (KDE + birth–death + MALA): engine vs NumPy reference\n")
    print(
        "Engine: `SHKSampler.build_step()` on a state initialised uniformly on the box, 3 "
        "untimed steps, then 20 timed steps (8 at N = 16000) in batches interleaved with the "
        "NumPy steps. NumPy: one step of the reference BDLS (`log_kde_reference`, "
        "`birth_death_rates_reference`, `birth_death_sweep_reference`, `mala_step_reference`, "
        "NumPy mixture potential) from the same initial state, timed 5 / 3 / 1 times at "
        "N = 1000 / 4000 / 16000. Ratio = NumPy time / engine time (best / best and "
        "median / median).\n"
    )
    print(steps + "\n")
    if (4000, 2) in cells:
        c = cells[(4000, 2)]
        print(
            f"Requirement (>= 20x at N = 4000, d = 2): {c['ref_best'] / c['eng_best']:.1f}x "
            f"(best), {c['ref_med'] / c['eng_med']:.1f}x (median).\n"
        )
    print("### Default 1-D release\n")
    print(
        f"`sample_shk(target_1d, box[-4, 4], n_particles={RELEASE_N}, "
        f"flow_time=log(1.9e7) = {RELEASE_FLOW_TIME:.4f}, step_size={STEP_SIZE:g}, "
        f"relaxation=relaxation_schedule(domain, λU = {RELEASE_POTENTIAL_RANGE:g}), "
        f"private=True)`: {rel['n_steps']} steps and {rel['moves']} relaxation moves; one "
        "warm-up run, then 3 timed runs (in this "
        "process, and again in a fresh process with `OMP_WAIT_POLICY=active`, which keeps the "
        "OpenMP worker spinning between parallel regions instead of sleeping). The per-step rows "
        "time one step of the same run after 50 steps of mixing.\n"
    )
    print(release_table + "\n")
    print(
        f"Requirement (< 1 s after warm-up): {rel['best']:.2f} s (best), "
        f"{rel['median']:.2f} s (median); with `OMP_WAIT_POLICY=active` "
        f"{rel['active_best']:.2f} s (best), {rel['active_median']:.2f} s (median).\n"
    )
    print("### Compile time of every engine signature\n")
    print(
        "Each row is a fresh `python -c` subprocess with `NUMBA_CACHE_DIR` set to one new "
        "temporary directory (empty for the first row, filled by it for the second).\n"
    )
    print(compile_table + "\n")


if __name__ == "__main__":
    main()
