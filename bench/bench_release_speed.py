"""Release speed: the default 1-D SHK release, quiet and under CPU contention, per threading
configuration.

The release is ``ExponentialMechanism(Quantile(0.5, 0, 100), epsilon=1.0).sample(records)`` on
n = 1000 records (bench_service.py's column), default sampler: N = 2000 particles, 336 flow steps
and 286 relaxation moves. Each configuration runs in a fresh process (its environment decides
Numba's threading layer, the OpenMP wait policy and the serial rule before Numba starts): one
untimed release (kernels load or compile), then ``--releases`` timed releases on the otherwise
idle machine ("quiet"), then the same number while two busy-loop processes (``while True:
pass``, one per core of this 2-core machine) compete for the CPU ("contended"), interleaved per
release with nothing in between. Reported per configuration: median and p90 of each, and the
ratio of the contended median to the quiet median (the issue's requirement: at most 2).

Configurations (``--configs``, default all):

* ``before``: the code of ``--before`` (a checkout of the commit before this work, e.g. a
  ``git worktree``) in its shipped configuration: Numba's default layer (OpenMP here), GNU's
  default spin-then-sleep wait, two threads in every kernel, the O(N²) KDE.
* ``spin-all``: this code with the previous threading defaults (GNU spinning: ``OMP_WAIT_POLICY=
  ACTIVE GOMP_SPINCOUNT=300000``, which is GNU's default spin count; ``PRIVFLOW_SERIAL_WORK=
  0``: two threads in every kernel).
* ``passive-all``: passive OpenMP wait, two threads in every kernel.
* ``chosen``: this code's defaults (``dp_core.engine.parallel``): OpenMP, passive wait, runs
  whose work per step is below 4e6 (1-D: N < 62500; d >= 2: N² d < 4e6) on the calling thread.
* ``workqueue``: Numba's workqueue layer with the serial rule.
* ``tbb-all``: TBB with two threads in every kernel, if ``--tbb-lib`` names a ``libtbb.so.12``
  (e.g. from ``pip install --prefix DIR tbb``: ``DIR/lib/libtbb.so.12``), preloaded.

``--two-d`` adds a 2-D release, ``ExponentialMechanism(ClippedMean((0, 0), (100, 100)),
epsilon=1.0)`` on n = 1000 records (default sampler, N = 2000: work 8e6 per step, above the
serial threshold, so ``chosen`` uses both threads there), ``--two-d-releases`` per phase.

Run from the repository root: ``.venv/bin/python bench/bench_release_speed.py --before
/tmp/privflow-before`` (about 3 minutes on a quiet machine; ``--quick``: 5 releases each).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import command_line, fmt_seconds, machine_description, markdown_table, wakeup_probe

ROOT = Path(__file__).resolve().parent.parent
N_RECORDS = 1000
BUSY = "while True:\n    pass\n"

CONFIGS: dict[str, tuple[str, dict[str, str]]] = {
    "before": ("previous code, shipped defaults (omp, GNU spin-wait, 2 threads everywhere)", {}),
    "spin-all": (
        "omp, GNU spin-wait (300 000 spins), 2 threads everywhere",
        {
            "OMP_WAIT_POLICY": "ACTIVE",
            "GOMP_SPINCOUNT": "300000",
            "PRIVFLOW_SERIAL_WORK": "0",
        },
    ),
    "passive-all": (
        "omp, passive wait, 2 threads everywhere",
        {"OMP_WAIT_POLICY": "PASSIVE", "PRIVFLOW_SERIAL_WORK": "0"},
    ),
    "chosen": ("chosen: omp, passive wait, serial below work 4e6 (the defaults)", {}),
    "workqueue": (
        "workqueue, serial below work 4e6",
        {"NUMBA_THREADING_LAYER": "workqueue"},
    ),
    "tbb-all": (
        "tbb, 2 threads everywhere",
        {"NUMBA_THREADING_LAYER": "tbb", "PRIVFLOW_SERIAL_WORK": "0"},
    ),
}


def records(dim: int = 1) -> np.ndarray:
    """bench_service.py's column (n values in [0, 100], fixed seed); in 2-D two such columns."""
    rng = np.random.default_rng(20240601)
    column = np.clip(rng.normal(47.0, 18.0, (N_RECORDS, dim)), 0.0, 100.0)
    return column[:, 0] if dim == 1 else column


# ----------------------------------------------------------------------------- worker
def worker(spec: dict) -> dict:
    """Runs in the configured process: warm-up, quiet releases, contended releases."""
    if spec.get("tbb_lib"):
        import ctypes

        ctypes.CDLL(spec["tbb_lib"], mode=ctypes.RTLD_GLOBAL)
    sys.path.insert(0, spec["code"])
    import numba

    import dp_core
    from dp_core.privacy import ExponentialMechanism, Quantile
    from dp_core.privacy.utilities.mean import ClippedMean

    if not Path(dp_core.__file__).resolve().is_relative_to(Path(spec["code"]).resolve()):
        raise RuntimeError(f"dp_core imported from {dp_core.__file__}, not {spec['code']}")

    if spec["dim"] == 1:
        mechanism = ExponentialMechanism(Quantile(0.5, 0.0, 100.0), epsilon=1.0)
    else:
        mechanism = ExponentialMechanism(ClippedMean((0.0, 0.0), (100.0, 100.0)), epsilon=1.0)
    data = records(spec["dim"])
    mechanism.sample(data)  # load or compile the kernels; start the threading layer

    def timed(count: int) -> list[float]:
        out = []
        for _ in range(count):
            start = time.perf_counter()
            mechanism.sample(data)
            out.append(time.perf_counter() - start)
        return out

    quiet = timed(spec["releases"])
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(spec["busy_processes"])]
    try:
        time.sleep(0.5)
        contended = timed(spec["releases"])
    finally:
        for proc in busy:
            proc.kill()
        for proc in busy:
            proc.wait()
    return {
        "layer": numba.threading_layer(),
        "threads": numba.get_num_threads(),
        "quiet": quiet,
        "contended": contended,
    }


def run_config(name: str, args: argparse.Namespace, dim: int, releases: int) -> dict:
    _, extra = CONFIGS[name]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NUMBA_THREADING", "OMP_", "GOMP_", "PRIVFLOW_SERIAL"))
    }
    env.update(extra)
    code = str(args.before if name == "before" else ROOT)
    spec = {
        "code": code,
        "dim": dim,
        "releases": releases,
        "busy_processes": args.busy,
        "tbb_lib": str(args.tbb_lib) if name == "tbb-all" else "",
    }
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name}: worker failed\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report
def summary(times: list[float]) -> tuple[float, float]:
    return statistics.median(times), float(np.percentile(times, 90))


def table(results: dict[str, dict]) -> str:
    rows = []
    for name, res in results.items():
        q50, q90 = summary(res["quiet"])
        c50, c90 = summary(res["contended"])
        rows.append(
            [
                CONFIGS[name][0],
                f"{res['layer']}, {res['threads']}",
                fmt_seconds(q50),
                fmt_seconds(q90),
                fmt_seconds(c50),
                fmt_seconds(c90),
                f"{c50 / q50:.2f}x",
            ]
        )
    header = [
        "configuration",
        "layer, threads",
        "quiet median",
        "quiet p90",
        "contended median",
        "contended p90",
        "contended / quiet (median)",
    ]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--before", type=Path, help="checkout of the previous code ('before')")
    parser.add_argument("--tbb-lib", type=Path, help="libtbb.so.12 to preload ('tbb-all')")
    parser.add_argument("--configs", default="", help="comma-separated subset of the configs")
    parser.add_argument("--releases", type=int, default=20, help="timed releases per phase")
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="busy loops")
    parser.add_argument("--two-d", action="store_true", help="also a 2-D mean release")
    parser.add_argument("--two-d-releases", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="5 releases per phase")
    parser.add_argument("--json", type=Path, default=ROOT / ".benchmarks" / "release_speed.json")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    names = [n for n in (args.configs.split(",") if args.configs else CONFIGS) if n]
    if args.before is None:
        names = [n for n in names if n != "before"]
    if args.tbb_lib is None:
        names = [n for n in names if n != "tbb-all"]
    releases = 5 if args.quick else args.releases

    load_start = os.getloadavg()
    probe_start = wakeup_probe()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    default: dict[str, dict] = {}
    two_d: dict[str, dict] = {}
    for name in names:
        default[name] = run_config(name, args, 1, releases)
        args.json.write_text(json.dumps({"default": default, "two_d": two_d}, indent=1))
    for name in names if args.two_d else ():
        two_d[name] = run_config(name, args, 2, args.two_d_releases)
        args.json.write_text(json.dumps({"default": default, "two_d": two_d}, indent=1))
    probe_end = wakeup_probe()
    load_end = os.getloadavg()
    print("## Release speed: quiet and under CPU contention\n")
    print(f"Command: `{command_line()}`\n")
    print("\n".join(machine_description()))
    print(probe_start.replace("Noise probe", "Noise probe (start)"))
    print(probe_end.replace("Noise probe", "Noise probe (end)"))
    print(
        "- Load average (1, 5, 15 min) at start "
        + ", ".join(f"{v:.2f}" for v in load_start)
        + "; at end "
        + ", ".join(f"{v:.2f}" for v in load_end)
        + f" ({os.cpu_count()} cores)\n"
    )
    print(
        "`ExponentialMechanism(Quantile(0.5, 0, 100), epsilon=1.0).sample(records)`, n = "
        f"{N_RECORDS} records, default sampler (N = 2000, 336 steps, 286 relaxation moves); "
        f"{releases} releases quiet, then {releases} with {args.busy} busy-loop processes; each "
        "configuration in a fresh process after one untimed release.\n"
    )
    print(table(default))
    if two_d:
        print(
            "\nA 2-D release, `ExponentialMechanism(ClippedMean((0, 0), (100, 100)), "
            "epsilon=1.0).sample(records)` on n = 1000 records, default sampler (N = 2000, "
            f"work 8e6 per step: above the serial threshold); {args.two_d_releases} releases "
            "per phase:\n"
        )
        print(table(two_d))


if __name__ == "__main__":
    main()
