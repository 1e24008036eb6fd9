"""Debiased Sinkhorn divergence S_ε (flows note (F 16)): the engine against POT and GeomLoss.

Prints one markdown section. Problem: N = M in {1000, 4000}, d in {2, 10}, x ~ U[0,1]^d,
y = u² with u ~ U[0,1]^d (a different law), uniform weights, cost ½|x − y|², blur 0.05
(ε = blur² = 0.0025, research/baselines.md), all in float64 unless stated.

**Same accuracy.** The libraries stop by different rules (GeomLoss: an ε-schedule with one
iteration per level and no stopping test; POT: a fixed iteration budget or a marginal error; the
engine: ε-scaling, then the sup-change of the potentials), so accuracy is matched on the output:
every method computes the same quantity, S_ε = OT_ε(α,β) − ½OT_ε(α,α) − ½OT_ε(β,β) with the dual
form ``⟨a, f⟩ + ⟨b, g⟩`` of each OT_ε term (for POT from its scalings, f = ε(log u − log a)), and
its relative error is measured against a tightly converged engine run (``--reference``: scaling
0.95, tol 1e-7). For each method a small menu of its own accuracy knob is run (GeomLoss
``scaling``, POT ``numItermax`` with ``stopThr=0``, the engine's ``scaling``), and the
**matched** time is the cheapest setting whose relative error is at most ``TARGET`` (1%).
POT's log-domain solver performs the same iterations as its dense solver (same iterates in exact
arithmetic), so it is timed for a few iterations and its matched time is its per-iteration time
times the iteration count its dense twin needed (stated as extrapolated).

Threads: numba 2 (the machine's cores), torch 2 (``torch.set_num_threads``), NumPy/BLAS default.
Run from the repository root: ``.venv/bin/python bench/bench_sinkhorn.py`` (``--quick``: N = 1000
only). Needs the ``bench`` extra (POT, GeomLoss).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import command_line, fmt_seconds, machine_description, markdown_table, wakeup_probe

from dp_core.engine.divergence import sinkhorn_divergence

BLUR = 0.05
EPS = BLUR**2
TARGET = 1e-2
OURS_SCALINGS = (0.5, 0.7, 0.8, 0.9, 0.95)
OURS_TOL = 1e-3
GEOMLOSS_SCALINGS = (0.5, 0.7, 0.8, 0.9, 0.95)
POT_ITERS = {1000: (100, 300, 1000, 3000), 4000: (100, 300, 1000)}
POT_LOG_TIMED_ITERS = {1000: 20, 4000: 3}
GEOMLOSS_DTYPES = ("f32", "f64")
REF_TOL = 1e-7


def _data(n: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1000 * d + n)
    x = rng.uniform(size=(n, d))
    y = rng.uniform(size=(n, d)) ** 2
    return x, y, np.full(n, 1.0 / n)


def _timed(fn, repeats: int):
    """(best seconds, last value) of ``repeats`` calls after one warm-up call when cheap."""
    start = time.perf_counter()
    value = fn()
    first = time.perf_counter() - start
    if first > 5.0:
        return first, value
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def ours(x, y, a, scaling, tol=OURS_TOL, max_iter=1000) -> float:
    return sinkhorn_divergence(x, a, y, a, BLUR, scaling=scaling, tol=tol, max_iter=max_iter).value


def _pot_ot(a, b, C, method: str, iters: int) -> float:
    import ot

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, log = ot.sinkhorn2(a, b, C, EPS, method=method, numItermax=iters, stopThr=0.0, log=True)
    if "log_u" in log:
        lu, lv = log["log_u"], log["log_v"]
    else:
        with np.errstate(divide="ignore"):
            lu, lv = np.log(log["u"]), np.log(log["v"])
    f = EPS * (lu - np.log(a))
    g = EPS * (lv - np.log(b))
    return float(a @ f + b @ g)


def pot(x, y, a, method: str, iters: int) -> float:
    """S_ε from three POT solves (cost matrices built inside the timed call)."""
    import ot

    cxy, cxx, cyy = ot.dist(x, y) / 2, ot.dist(x, x) / 2, ot.dist(y, y) / 2
    return (
        _pot_ot(a, a, cxy, method, iters)
        - 0.5 * _pot_ot(a, a, cxx, method, iters)
        - 0.5 * _pot_ot(a, a, cyy, method, iters)
    )


def geomloss(x, y, scaling: float, dtype) -> float:
    import torch
    from geomloss import SamplesLoss

    loss = SamplesLoss("sinkhorn", p=2, blur=BLUR, scaling=scaling, backend="tensorized")
    return float(loss(torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=dtype)))


def _rel(v: float, ref: float) -> float:
    return abs(v - ref) / abs(ref) if math.isfinite(v) else math.inf


def bench_case(n: int, d: int, repeats: int) -> tuple[list[list[str]], dict[str, float]]:
    import torch

    x, y, a = _data(n, d)
    t_ref = time.perf_counter()
    ref = ours(x, y, a, 0.95, tol=REF_TOL, max_iter=5000)
    t_ref = time.perf_counter() - t_ref
    rows: list[list[str]] = []
    matched: dict[str, float] = {}

    def record(method: str, knob: str, seconds: float, value: float, note: str = "") -> None:
        err = _rel(value, ref)
        ok = err <= TARGET
        if ok and seconds < matched.get(method, math.inf):
            matched[method] = seconds
        rows.append([method, knob, fmt_seconds(seconds), f"{value:.6g}", f"{err:.1e}", note])

    for s in OURS_SCALINGS:
        t, v = _timed(lambda s=s: ours(x, y, a, s), repeats)
        record("engine f64", f"scaling {s}, tol {OURS_TOL:g}", t, v)
    for dtype, name in ((torch.float32, "GeomLoss f32"), (torch.float64, "GeomLoss f64")):
        if name[-3:] not in GEOMLOSS_DTYPES:
            continue
        for s in GEOMLOSS_SCALINGS:
            t, v = _timed(lambda s=s, dt=dtype: geomloss(x, y, s, dt), repeats)
            record(name, f"scaling {s}", t, v)
    needed = None
    for it in POT_ITERS[n]:
        t, v = _timed(lambda it=it: pot(x, y, a, "sinkhorn", it), repeats)
        record("POT dense", f"{it} it", t, v)
        if needed is None and _rel(v, ref) <= TARGET:
            needed = it
    k = POT_LOG_TIMED_ITERS[n]
    t_log, _ = _timed(lambda: pot(x, y, a, "sinkhorn_log", k), 1)
    per_it = t_log / k
    if needed is not None:
        matched["POT log-domain"] = per_it * needed
        note = f"extrapolated: {needed} it x {fmt_seconds(per_it)}/it (timed {k} it)"
        rows.append(["POT log-domain", f"{needed} it", fmt_seconds(per_it * needed), "", "", note])
    else:
        most = POT_ITERS[n][-1]
        note = f"dense twin not within {TARGET:g} at {most} it; >= {fmt_seconds(per_it * most)}"
        rows.append(["POT log-domain", f"> {most} it", "", "", "", note])
    rows.append(
        ["reference", f"engine scaling 0.95, tol {REF_TOL:g}", fmt_seconds(t_ref), f"{ref:.8g}"]
    )
    return rows, matched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1000 only, one repeat")
    parser.add_argument("--sizes", type=int, nargs="*", help="N values (default 1000 4000)")
    parser.add_argument("--dims", type=int, nargs="*", default=[2, 10], help="d values")
    parser.add_argument(
        "--short-menu", action="store_true", help="one engine and two GeomLoss f32 settings"
    )
    args = parser.parse_args()
    if args.short_menu:
        global OURS_SCALINGS, GEOMLOSS_SCALINGS, GEOMLOSS_DTYPES, POT_ITERS, REF_TOL
        OURS_SCALINGS, GEOMLOSS_SCALINGS = (0.9,), (0.9, 0.95)
        GEOMLOSS_DTYPES = ("f32",)
        POT_ITERS = {n: (100, 300) for n in POT_ITERS}
        REF_TOL = 1e-5
    import torch

    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(2)
    sizes = args.sizes or ((1000,) if args.quick else (1000, 4000))
    repeats = 1 if args.quick else 3
    noise = wakeup_probe(3.0)
    load = os.getloadavg()
    sections = []
    summary = []
    for n in sizes:
        for d in args.dims:
            rows, matched = bench_case(n, d, repeats)
            sections.append((n, d, rows))
            ours_t = matched.get("engine f64", math.inf)
            anchors = {k: v for k, v in matched.items() if k != "engine f64"}
            fastest = min(anchors, key=anchors.get) if anchors else None
            g32 = matched.get("GeomLoss f32", math.inf)
            summary.append(
                [
                    n,
                    d,
                    fmt_seconds(ours_t),
                    fmt_seconds(g32) if math.isfinite(g32) else "not reached",
                    f"{g32 / ours_t:.1f}x" if math.isfinite(g32) else "",
                    f"{fastest} {fmt_seconds(anchors[fastest])}" if fastest else "none",
                    f"{anchors[fastest] / ours_t:.1f}x" if fastest else "",
                ]
            )
    load_end = os.getloadavg()
    print("## Debiased Sinkhorn divergence: engine vs POT and GeomLoss\n")
    print(f"Command: `{command_line()}`\n")
    print("\n".join([*machine_description(), noise]))
    print(
        f"- Load average (1, 5, 15 min) at start {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}; "
        f"at end {load_end[0]:.2f}, {load_end[1]:.2f}, {load_end[2]:.2f} (2 cores)\n"
    )
    print(
        f"blur {BLUR} (ε = {EPS:g}), cost ½|x − y|², x ~ U[0,1]^d, y = u², u ~ U[0,1]^d, uniform "
        f"weights. Relative error of S_ε against the reference row; **matched** = cheapest "
        f"setting with relative error <= {TARGET:g}. Times are the best of {repeats} calls "
        "(one call when a call takes > 5 s).\n"
    )
    print(
        markdown_table(
            [
                "N = M",
                "d",
                "engine (matched)",
                "GeomLoss f32 (matched)",
                "GeomLoss f32 / engine",
                "fastest anchor (matched)",
                "fastest anchor / engine",
            ],
            summary,
        )
        + "\n"
    )
    for n, d, rows in sections:
        print(f"### N = M = {n}, d = {d}\n")
        print(markdown_table(["method", "setting", "time", "S_ε", "rel. error", "note"], rows))
        print()


if __name__ == "__main__":
    main()
