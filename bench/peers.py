"""privflow against OpenDP, diffprivlib and Google's python-dp at the same pure ε and privacy unit.

Tasks: median, the 0.1 and 0.9 quantiles, the mean (one column in [0, 100]), linear regression
(d = 2, x in [-1, 1]², y in [-2, 2], θ in the ball of radius 1), logistic regression (d = 2,
same features, labels in {0, 1}, radius 1) and k-means (k = 2 centres of one column in
[0, 100]; diffprivlib is the only peer with one). Grid: n ∈ {100, 10^3, 10^4},
ε ∈ {0.1, 0.5, 1, 4}, two data sets:

* ``symmetric``: N(40, 12) clipped to [0, 100] (research/accuracy.md); regression
  x ~ U[-1, 1]², y = x·θ* + N(0, 0.5²) clipped to [-2, 2], θ* = (0.6, -0.4); logistic labels
  ~ Bernoulli(sigmoid(x·θ*)).
* ``heavy``: Pareto with α = 1.5 and x_m = 10 (support [10, ∞), median 15.9, q_0.9 = 46.4,
  3.2% of the mass above 100 clipped to 100); regression x = 0.5·t₂ per coordinate clipped to
  [-1, 1] (20% of the coordinates land on ±1), y = x·θ* + 0.5·t₂ clipped to [-2, 2]; logistic
  labels as above on these features.

Error: the distance of a release to the non-private estimate on the same clipped records
(research/accuracy.md): the empirical quantile (``np.quantile``), the sample mean, OLS, the
logistic MLE on the ball, and for k-means the matched centre distance (mean over the k = 2
centres of |c_(j) - c*_(j)| after sorting both, c* the exact optimal 1-D 2-means of the clipped
records: in 1-D sorting is the optimal matching, the number is in the data's units like every
other row, and the excess k-means objective is second order in the centre error, so it would
flatter poor releases); the regressions use the Euclidean norm. MAE ± standard error over
repetitions; time per release is the median wall time of one call.

privflow, in process: ``ExponentialMechanism(family, ε, n_max=n, neighbouring=unit,
method=...)``, n_max = n (the public size bound is the data size: the tightest honest bound).

* ``shk``: a release of one sample costs a whole sampler run, so the expected error of one
  release is estimated from the particle cloud of the public seeded run the release does
  (``plan.schedule.run(UtilityPotential(...), private=False, seed=s)``, as the verification
  tests do): every particle is a possible release, the error is averaged over the particles and
  then over seeds (one data draw per seed); the s.e. is over seeds, or over the
  particles of the run when there is one seed (the default). The time per release is a
  real ``.sample()`` (one call per task and n at ε = 1, symmetric data, add/remove).
* ``exact``: exact draws; ``ExponentialMechanism(family, m·ε, method="exact").sample(records,
  n_samples=m)`` gives m independent draws each at ε (one score computation per data draw).

Privacy units (docs/benchmarks.md "Peers" has the reasoning): privflow defaults to add/remove
one record and also runs ``neighbouring="replace_one"`` for the tasks whose peer is natively
replace-one (mean, linear and logistic regression; symmetric data, n >= 10^3, ε >= 0.5).
Families get ``form=...`` only where the
constructor accepts it (both forms are run; ``--forms`` restricts).

Run: ``.venv/bin/python bench/peers.py [--quick] [--json PATH] [--before PATH]`` (needs
``pip install -e '.[peers]'``). ``--code-root DIR`` imports ``dp_core`` from DIR (e.g. a
``git archive`` of a commit) instead of the working tree. Never run by the tests.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from _common import command_line, load_average, machine_description, markdown_table  # noqa: E402

THETA_STAR = np.array([0.6, -0.4])
RADIUS = 1.0
UNIT_SHORT = {"add_remove": "a/r", "replace_one": "r1"}
REPLACE_ONE_TASKS = ("mean", "linreg", "logreg")


# ----------------------------------------------------------------------------- tasks and data
@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # quantile | mean | linear | logistic | kmeans
    q: float = 0.5


TASKS = {
    t.name: t
    for t in (
        Task("median", "quantile", 0.5),
        Task("q0.1", "quantile", 0.1),
        Task("q0.9", "quantile", 0.9),
        Task("mean", "mean"),
        Task("linreg", "linear"),
        Task("logreg", "logistic"),
        Task("kmeans", "kmeans"),
    )
}


def _seed(*parts: object) -> int:
    return int.from_bytes(repr(parts).encode(), "little") % (2**63)


def make_data(task: Task, dataset: str, n: int, draw: int) -> dict[str, np.ndarray]:
    """Clipped records of one data draw: ``x`` (n,) for the 1-D tasks, ``X`` (n, 2) and ``y``
    (n,) for the regressions (y is 0/1 for logistic)."""
    rng = np.random.default_rng(_seed(task.kind, dataset, n, draw))
    if task.kind in ("quantile", "mean", "kmeans"):
        raw = (
            rng.normal(40.0, 12.0, n) if dataset == "symmetric" else 10.0 * (1 + rng.pareto(1.5, n))
        )
        return {"x": np.clip(raw, 0.0, 100.0)}
    if dataset == "symmetric":
        X = rng.uniform(-1.0, 1.0, (n, 2))
        noise = rng.normal(0.0, 0.5, n)
    else:
        X = np.clip(0.5 * rng.standard_t(2, (n, 2)), -1.0, 1.0)
        noise = 0.5 * rng.standard_t(2, n)
    if task.kind == "linear":
        return {"X": X, "y": np.clip(X @ THETA_STAR + noise, -2.0, 2.0)}
    p = 1.0 / (1.0 + np.exp(-(X @ THETA_STAR)))
    return {"X": X, "y": (rng.uniform(size=n) < p).astype(np.float64)}


def _logistic_ball_mle(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.optimize import minimize

    s = 2.0 * y - 1.0

    def f(t: np.ndarray) -> tuple[float, np.ndarray]:
        m = s * (X @ t)
        sig = 0.5 * (1.0 - np.tanh(0.5 * m))  # sigmoid(-m), overflow-free
        return float(np.sum(np.logaddexp(0.0, -m))), -(X.T @ (s * sig))

    res = minimize(
        f,
        np.zeros(X.shape[1]),
        jac=True,
        method="SLSQP",
        constraints=[{"type": "ineq", "fun": lambda t: RADIUS**2 - t @ t, "jac": lambda t: -2 * t}],
        options={"ftol": 1e-12, "maxiter": 500},
    )
    return res.x


def _two_means_1d(x: np.ndarray) -> np.ndarray:
    """Exact optimal 1-D 2-means centres (sorted): best split of the sorted records."""
    xs = np.sort(x)
    n = xs.size
    c1, c2 = np.cumsum(xs), np.cumsum(xs**2)
    i = np.arange(1, n)  # left cluster xs[:i]
    left = c2[i - 1] - c1[i - 1] ** 2 / i
    right = (c2[-1] - c2[i - 1]) - (c1[-1] - c1[i - 1]) ** 2 / (n - i)
    k = int(np.argmin(left + right)) + 1
    return np.array([xs[:k].mean(), xs[k:].mean()])


def target(task: Task, data: dict[str, np.ndarray]) -> np.ndarray:
    """The non-private estimate on the same clipped records."""
    if task.kind == "quantile":
        return np.array([np.quantile(data["x"], task.q)])
    if task.kind == "mean":
        return np.array([data["x"].mean()])
    if task.kind == "kmeans":
        return _two_means_1d(data["x"])
    if task.kind == "linear":
        return np.linalg.lstsq(data["X"], data["y"], rcond=None)[0]
    return _logistic_ball_mle(data["X"], data["y"])


def errors(task: Task, releases: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-release error; releases (m, dim)."""
    r = np.asarray(releases, dtype=np.float64).reshape(len(releases), -1)
    if task.kind == "kmeans":
        return np.mean(np.abs(np.sort(r, axis=1) - truth), axis=1)
    return np.linalg.norm(r - truth, axis=1)


# ----------------------------------------------------------------------------- privflow
class Privflow:
    """privflow's families and mechanism, imported after ``--code-root`` is on the path."""

    def __init__(self) -> None:
        from dp_core.privacy.mechanism import ExponentialMechanism
        from dp_core.privacy.utilities import (
            ClippedMean,
            KMeans,
            LinearRegression,
            LogisticRegression,
            Quantile,
            UtilityPotential,
        )

        self.EM = ExponentialMechanism
        self.Potential = UtilityPotential
        self.classes = {
            "quantile": Quantile,
            "mean": ClippedMean,
            "linear": LinearRegression,
            "logistic": LogisticRegression,
            "kmeans": KMeans,
        }

    def forms(self, task: Task) -> list[str | None]:
        """``[None]`` where the family has no ``form`` parameter (only today's form)."""
        params = inspect.signature(self.classes[task.kind]).parameters
        if "form" not in params:
            return [None]
        default = params["form"].default
        return [default, *(f for f in ("gradient_norm", "loss") if f != default)]

    def family(self, task: Task, form: str | None) -> Any:
        cls = self.classes[task.kind]
        kw: dict[str, Any] = {} if form is None else {"form": form}
        if task.kind == "quantile":
            return cls(task.q, 0.0, 100.0)
        if task.kind == "mean":
            return cls((0.0,), (100.0,), clip=100.0, **kw)  # the clip never binds (diameter)
        if task.kind == "kmeans":
            return cls((0.0,), (100.0,), 2, clip=100.0, **kw)
        if task.kind == "linear":
            return cls((-1.0, -1.0), (1.0, 1.0), -2.0, 2.0, RADIUS, **kw)
        return cls((-1.0, -1.0), (1.0, 1.0), RADIUS, **kw)

    @staticmethod
    def records(task: Task, data: dict[str, np.ndarray]) -> np.ndarray:
        if task.kind == "quantile":
            return data["x"]
        if task.kind in ("mean", "kmeans"):
            return data["x"][:, None]
        return np.column_stack([data["X"], data["y"]])

    def shk_particles(
        self, fam: Any, records: np.ndarray, eps: float, n: int, unit: str, seed: int
    ) -> np.ndarray:
        mech = self.EM(fam, eps, n_max=n, neighbouring=unit)
        schedule = mech.plan(1).schedule
        potential = self.Potential(fam, fam.prepare(records), schedule.inverse_temperature)
        return schedule.run(potential, fam.domain, private=False, seed=seed).particles

    def exact_draws(
        self, fam: Any, records: np.ndarray, eps: float, n: int, unit: str, m: int
    ) -> np.ndarray:
        mech = self.EM(fam, eps * m, n_max=n, neighbouring=unit, method="exact")
        return mech.sample(records, m).samples

    def time_release(
        self, fam: Any, records: np.ndarray, eps: float, n: int, unit: str, method: str
    ) -> float:
        mech = self.EM(fam, eps, n_max=n, neighbouring=unit, method=method)
        start = time.perf_counter()
        mech.sample(records, 1)
        return time.perf_counter() - start


# ----------------------------------------------------------------------------- peers
Release = Callable[[dict[str, Any]], np.ndarray]


class Peer:
    """One library: ``release(task, n, eps)`` gives a function data -> estimate, or None."""

    name = ""
    units: ClassVar[dict[str, str]] = {}

    def release(self, task: Task, n: int, eps: float) -> Release | None:
        raise NotImplementedError


class OpenDP(Peer):
    name = "OpenDP"
    units: ClassVar[dict[str, str]] = {"quantile": "a/r", "mean": "a/r (resize to public n)"}

    def __init__(self) -> None:
        import opendp.prelude as dp

        dp.enable_features("contrib")
        self.dp = dp
        # 4096 cell midpoints of [0, 100]: the candidates of privflow's former exact grid
        self.candidates = ((np.arange(4096) + 0.5) * (100.0 / 4096)).tolist()

    def release(self, task: Task, n: int, eps: float) -> Release | None:
        dp = self.dp
        space = (dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance())
        if task.kind == "quantile":

            def make(scale: float) -> Any:
                return dp.m.make_private_quantile(
                    *space, dp.max_divergence(), self.candidates, task.q, scale
                )

        elif task.kind == "mean":

            def make(scale: float) -> Any:
                return (
                    space
                    >> dp.t.then_clamp((0.0, 100.0))
                    >> dp.t.then_resize(size=n, constant=50.0)
                    >> dp.t.then_mean()
                    >> dp.m.then_laplace(scale)
                )

        else:
            return None
        meas = make(dp.binary_search_param(make, d_in=1, d_out=eps))
        return lambda data: np.array([meas(data["xl"])])


class PythonDP(Peer):
    name = "python-dp"
    units: ClassVar[dict[str, str]] = {"quantile": "a/r", "mean": "a/r"}

    def __init__(self) -> None:
        from pydp.algorithms.laplacian import BoundedMean, Percentile

        self.mean, self.percentile = BoundedMean, Percentile

    def release(self, task: Task, n: int, eps: float) -> Release | None:
        if task.kind == "quantile":
            make = lambda: self.percentile(  # noqa: E731
                epsilon=eps, percentile=task.q, lower_bound=0.0, upper_bound=100.0, dtype="float"
            )
        elif task.kind == "mean":
            make = lambda: self.mean(  # noqa: E731
                epsilon=eps, lower_bound=0.0, upper_bound=100.0, dtype="float"
            )
        else:
            return None
        return lambda data: np.array([make().quick_result(data["xl"])])


class Diffprivlib(Peer):
    name = "diffprivlib"
    units: ClassVar[dict[str, str]] = {
        "quantile": "a/r and r1",
        "mean": "r1 (n known)",
        "linear": "a/r and r1",
        "logistic": "r1 (n known)",
        "kmeans": "a/r",
    }

    def __init__(self) -> None:
        import diffprivlib

        self.lib = diffprivlib

    def release(self, task: Task, n: int, eps: float) -> Release | None:
        lib = self.lib
        acct = lib.BudgetAccountant
        if task.kind == "quantile":
            return lambda d: np.array(
                [lib.tools.quantile(d["x"], task.q, eps, bounds=(0, 100), accountant=acct())]
            )
        if task.kind == "mean":
            return lambda d: np.array(
                [lib.tools.mean(d["x"], epsilon=eps, bounds=(0, 100), accountant=acct())]
            )
        if task.kind == "linear":
            return lambda d: (
                lib.models.LinearRegression(
                    epsilon=eps,
                    bounds_X=([-1.0, -1.0], [1.0, 1.0]),
                    bounds_y=(-2.0, 2.0),
                    fit_intercept=False,
                    accountant=acct(),
                )
                .fit(d["X"], d["y"])
                .coef_.ravel()
            )
        if task.kind == "logistic":
            return lambda d: (
                lib.models.LogisticRegression(
                    epsilon=eps, data_norm=math.sqrt(2.0), fit_intercept=False, accountant=acct()
                )
                .fit(d["X"], d["y"].astype(int))
                .coef_.ravel()
            )
        return lambda d: np.sort(
            lib.models.KMeans(n_clusters=2, epsilon=eps, bounds=([0.0], [100.0]), accountant=acct())
            .fit(d["x"][:, None])
            .cluster_centers_.ravel()
        )


# ----------------------------------------------------------------------------- the run
@dataclass
class Cell:
    task: str
    dataset: str
    n: int
    eps: float
    method: str  # column key, e.g. "privflow SHK" or "OpenDP"
    unit: str
    form: str | None
    mae: float
    se: float
    reps: int
    note: str = ""


@dataclass
class Config:
    ns: tuple[int, ...]
    epsilons: tuple[float, ...]
    datasets: tuple[str, ...]
    peer_reps: int
    peer_draws: int
    exact_reps: int  # quantile (the exact quantile is cheap)
    exact_grid_reps: int  # the grid families: each exact base-2 draw costs 0.1-0.3 s
    exact_draws: int
    shk_seeds: int  # seeds per cell, one data draw each
    shk_everywhere: tuple[str, ...]  # data sets with SHK in every cell (others: acceptance region)
    shk_max_n: int = 10**9  # no SHK above this n (logistic: one record pass per step)


def in_acceptance_region(n: int, eps: float) -> bool:
    return n >= 1000 and eps >= 0.5


FULL = Config(
    ns=(100, 1000, 10_000),
    epsilons=(0.1, 0.5, 1.0, 4.0),
    datasets=("symmetric", "heavy"),
    peer_reps=200,
    peer_draws=10,
    exact_reps=200,
    exact_grid_reps=40,
    exact_draws=4,
    shk_seeds=1,
    shk_everywhere=("symmetric",),
)
QUICK = Config(
    ns=(1000,),
    epsilons=(1.0,),
    datasets=("symmetric",),
    peer_reps=40,
    peer_draws=2,
    exact_reps=40,
    exact_grid_reps=10,
    exact_draws=2,
    shk_seeds=1,
    shk_everywhere=("symmetric",),
)


def _mean_se(values: list[float] | np.ndarray) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    se = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else float("nan")
    return float(arr.mean()), se


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_grid(
    cfg: Config,
    tasks: list[Task],
    pf: Privflow,
    peers: list[Peer],
    forms_filter: set[str] | None,
    methods: set[str],
    shk_units: set[str],
    checkpoint: Callable[[list[Cell], dict[tuple[str, int, str], list[float]]], None],
) -> tuple[list[Cell], dict[tuple[str, int, str], list[float]]]:
    cells: list[Cell] = []
    times: dict[tuple[str, int, str], list[float]] = {}
    for task in tasks:
        forms = [
            f for f in pf.forms(task) if forms_filter is None or f is None or f in forms_filter
        ]
        for dataset in cfg.datasets:
            for n in cfg.ns:
                draws = {d: make_data(task, dataset, n, d) for d in range(cfg.peer_draws)}
                truths = {d: target(task, data) for d, data in draws.items()}
                for data in draws.values():
                    if "x" in data:
                        data["xl"] = data["x"].tolist()
                for eps in cfg.epsilons:
                    started = time.perf_counter()
                    spent: dict[str, float] = {}
                    # peers: peer_reps releases spread over the data draws
                    for peer in peers:
                        fn = peer.release(task, n, eps)
                        if fn is None:
                            continue
                        errs, took = [], []
                        for r in range(cfg.peer_reps):
                            d = r % cfg.peer_draws
                            t0 = time.perf_counter()
                            est = fn(draws[d])
                            took.append(time.perf_counter() - t0)
                            errs.append(float(errors(task, est[None, :], truths[d])[0]))
                        spent[peer.name] = sum(took)
                        mae, se = _mean_se(errs)
                        unit = peer.units[task.kind]
                        cells.append(
                            Cell(
                                task.name,
                                dataset,
                                n,
                                eps,
                                peer.name,
                                unit,
                                None,
                                mae,
                                se,
                                len(errs),
                            )
                        )
                        times.setdefault((task.name, n, peer.name), []).extend(took)
                    # replace-one where a peer is natively replace-one, on the symmetric data
                    # in the acceptance region (the exact grid draws cost 0.1-0.3 s each)
                    r1 = (
                        task.name in REPLACE_ONE_TASKS
                        and dataset == "symmetric"
                        and in_acceptance_region(n, eps)
                    )
                    units = ["add_remove", *(["replace_one"] if r1 else [])]
                    for form in forms:
                        fam = pf.family(task, form)
                        for unit in units:
                            for method in ("shk", "exact"):
                                if method not in methods:
                                    continue
                                if method == "shk" and not (
                                    unit in shk_units
                                    and n <= cfg.shk_max_n
                                    and (
                                        dataset in cfg.shk_everywhere
                                        or in_acceptance_region(n, eps)
                                    )
                                ):
                                    continue
                                key = f"privflow {method.upper() if method == 'shk' else method}"
                                t0 = time.perf_counter()
                                try:
                                    mae, se, reps = _privflow_errors(
                                        pf, task, fam, method, cfg, draws, truths, n, eps, unit
                                    )
                                    cells.append(
                                        Cell(
                                            task.name,
                                            dataset,
                                            n,
                                            eps,
                                            key,
                                            unit,
                                            form,
                                            mae,
                                            se,
                                            reps,
                                        )
                                    )
                                except Exception as exc:  # e.g. exact needs a grid dimension <= 3
                                    cells.append(
                                        Cell(
                                            task.name,
                                            dataset,
                                            n,
                                            eps,
                                            key,
                                            unit,
                                            form,
                                            float("nan"),
                                            float("nan"),
                                            0,
                                            f"{type(exc).__name__}: {exc}",
                                        )
                                    )
                                label = f"{method}/{form}/{UNIT_SHORT[unit]}"
                                spent[label] = time.perf_counter() - t0
                                # time of a real release: one per task, n and method
                                if (
                                    dataset == cfg.datasets[0]
                                    and eps == 1.0
                                    and unit == "add_remove"
                                ):
                                    try:
                                        t = pf.time_release(
                                            fam, pf.records(task, draws[0]), eps, n, unit, method
                                        )
                                        times.setdefault(
                                            (task.name, n, _tkey(key, form)), []
                                        ).append(t)
                                    except Exception:
                                        pass
                    checkpoint(cells, times)
                    _log(
                        f"{task.name} {dataset} n={n} eps={eps}: "
                        f"{time.perf_counter() - started:.1f} s (load {load_average()}); "
                        + ", ".join(f"{k} {v:.1f}" for k, v in spent.items())
                    )
    return cells, times


def _tkey(key: str, form: str | None) -> str:
    return key if form is None else f"{key} ({form})"


def _privflow_errors(
    pf: Privflow,
    task: Task,
    fam: Any,
    method: str,
    cfg: Config,
    draws: dict[int, dict[str, np.ndarray]],
    truths: dict[int, np.ndarray],
    n: int,
    eps: float,
    unit: str,
) -> tuple[float, float, int]:
    """(MAE, s.e., releases counted). SHK: the particles of ``cfg.shk_seeds`` public runs (one
    data draw each); the s.e. is over seeds, or over the particles of the one run when there is
    one seed (the released particles are exchangeable draws of the law, docs/privacy.md)."""
    if method == "shk":
        per_seed = []
        for s in range(cfg.shk_seeds):
            d = s % cfg.peer_draws
            particles = pf.shk_particles(fam, pf.records(task, draws[d]), eps, n, unit, seed=s)
            per_seed.append(errors(task, particles, truths[d]))
        if len(per_seed) == 1:
            mae, se = _mean_se(per_seed[0])
        else:
            mae, se = _mean_se([float(np.mean(e)) for e in per_seed])
        return mae, se, sum(e.size for e in per_seed)
    reps = cfg.exact_reps if task.kind == "quantile" else cfg.exact_grid_reps
    per_draw = max(1, reps // cfg.exact_draws)
    out: list[float] = []
    for d in range(min(cfg.exact_draws, cfg.peer_draws)):
        samples = pf.exact_draws(fam, pf.records(task, draws[d]), eps, n, unit, per_draw)
        out.extend(errors(task, samples, truths[d]).tolist())
    mae, se = _mean_se(out)
    return mae, se, len(out)


# ----------------------------------------------------------------------------- reporting
def _fmt(mae: float, se: float) -> str:
    if not math.isfinite(mae):
        return "n/a"
    digits = max(2, 2 - math.floor(math.log10(abs(mae)))) if mae > 0 else 2
    text = f"{mae:.{digits}f}"
    if math.isfinite(se):
        text += f" ± {se:.{digits}f}" if se >= 10**-digits else f" ± <{10**-digits:g}"
    return text


def _column(c: Cell) -> str:
    if c.method.startswith("privflow"):
        form = "" if c.form is None else f"{c.form}, "
        return f"{c.method} ({form}{UNIT_SHORT[c.unit]})"
    return f"{c.method} ({c.unit})"


def tables(cells: list[Cell], times: dict[tuple[str, int, str], float], cfg: Config) -> str:
    out = []
    for task in TASKS:
        mine = [c for c in cells if c.task == task]
        if not mine:
            continue
        cols: list[str] = []
        for c in mine:
            if _column(c) not in cols:
                cols.append(_column(c))
        rows = []
        for dataset in cfg.datasets:
            for n in cfg.ns:
                for eps in cfg.epsilons:
                    got = {
                        _column(c): _fmt(c.mae, c.se)
                        for c in mine
                        if (c.dataset, c.n, c.eps) == (dataset, n, eps)
                    }
                    rows.append([dataset, n, eps, *(got.get(col, "-") for col in cols)])
        out.append(f"### {task}: mean absolute error ± s.e.\n")
        out.append(markdown_table(["data", "n", "ε", *cols], rows))
        tcols = sorted({k[2] for k in times if k[0] == task})
        if tcols:
            trows = [[n, *(_fmt_t(times.get((task, n, col))) for col in tcols)] for n in cfg.ns]
            out.append(
                f"\nTime per release, {task} (median; privflow: one real `.sample()` at ε = 1, "
                f"{cfg.datasets[0]} data, add/remove):\n"
            )
            out.append(markdown_table(["n", *tcols], trows))
        out.append("")
    return "\n".join(out)


def _fmt_t(t: float | None) -> str:
    if t is None:
        return "-"
    if t < 1e-3:
        return f"{t * 1e6:.0f} µs"
    if t < 1.0:
        return f"{t * 1e3:.1f} ms"
    return f"{t:.2f} s"


def _find(cells: list[Cell], **kw: Any) -> Cell | None:
    for c in cells:
        if all(getattr(c, k) == v for k, v in kw.items()):
            return c
    return None


def ratio_table(cells: list[Cell], cfg: Config) -> str:
    """Privacy error ratio MAE(n = 10^3) / MAE(n = 10^4) at fixed ε (1/(εn) rate: 10x)."""
    if not {1000, 10_000} <= set(cfg.ns):
        return ""
    rows = []
    for task in ("mean", "linreg"):
        for dataset in cfg.datasets:
            keys = []
            for c in cells:
                k = (c.method, c.unit, c.form)
                if c.task == task and c.dataset == dataset and k not in keys:
                    keys.append(k)
            for method, unit, form in keys:
                ratios = []
                for eps in cfg.epsilons:
                    a = _find(
                        cells,
                        task=task,
                        dataset=dataset,
                        n=1000,
                        eps=eps,
                        method=method,
                        unit=unit,
                        form=form,
                    )
                    b = _find(
                        cells,
                        task=task,
                        dataset=dataset,
                        n=10_000,
                        eps=eps,
                        method=method,
                        unit=unit,
                        form=form,
                    )
                    ok = a and b and b.mae > 0 and math.isfinite(a.mae / b.mae)
                    ratios.append(f"{a.mae / b.mae:.1f}x" if ok else "-")
                label = _column(Cell(task, dataset, 0, 0, method, unit, form, 0, 0, 0))
                rows.append([task, dataset, label, *ratios])
    head = ["task", "data", "method", *(f"ε = {e:g}" for e in cfg.epsilons)]
    return (
        "### Privacy error ratio MAE(n = 10^3) / MAE(n = 10^4) at fixed ε\n\n"
        "(1/(εn) rate: 10x; 1/sqrt(εn): 3.2x; acceptance for the gradient-norm form: >= 6x.)\n\n"
        + markdown_table(head, rows)
    )


def acceptance(cells: list[Cell], cfg: Config) -> str:
    """Mean within 2.5x of the Laplace peers, linear regression within 2x of diffprivlib
    (n >= 10^3, ε >= 0.5), privflow add/remove against each peer in its own unit."""
    rows = []
    checks = (
        ("mean", ("OpenDP", "diffprivlib", "python-dp"), 2.5),
        ("linreg", ("diffprivlib",), 2.0),
    )
    for task, peer_names, bound in checks:
        for c in cells:
            if not (
                c.task == task
                and c.method.startswith("privflow")
                and c.n >= 1000
                and c.eps >= 0.5
                and math.isfinite(c.mae)
            ):
                continue
            peers = [
                _find(cells, task=task, dataset=c.dataset, n=c.n, eps=c.eps, method=p)
                for p in peer_names
            ]
            peers = [p for p in peers if p is not None]
            if not peers:
                continue
            best = min(peers, key=lambda p: p.mae)
            ratio = c.mae / best.mae
            rows.append(
                [
                    task,
                    c.dataset,
                    c.n,
                    c.eps,
                    _column(c),
                    f"{ratio:.2f}x ({best.method})",
                    "met" if ratio <= bound else "missed",
                ]
            )
    if not rows:
        return ""
    return (
        "### Acceptance: privflow MAE / best peer MAE (n >= 10^3, ε >= 0.5)\n\n"
        "(mean: within 2.5x of the best Laplace-based peer; linear regression: within 2x of "
        "diffprivlib.)\n\n"
        + markdown_table(["task", "data", "n", "ε", "privflow", "ratio", "target"], rows)
    )


def before_table(cells: list[Cell], before: list[dict[str, Any]]) -> str:
    """Quantiles now against a saved earlier run (same grid), privflow columns only."""
    rows = []
    for c in cells:
        if c.task not in ("median", "q0.1", "q0.9") or not c.method.startswith("privflow"):
            continue
        old = next(
            (
                b
                for b in before
                if (b["task"], b["dataset"], b["n"], b["eps"], b["method"], b["unit"])
                == (c.task, c.dataset, c.n, c.eps, c.method, c.unit)
            ),
            None,
        )
        if old is None or not math.isfinite(c.mae):
            continue
        diff = c.mae - old["mae"]
        se = math.hypot(c.se if math.isfinite(c.se) else 0.0, old["se"] or 0.0)
        rows.append(
            [
                c.task,
                c.dataset,
                c.n,
                c.eps,
                c.method,
                _fmt(old["mae"], old["se"]),
                _fmt(c.mae, c.se),
                f"{diff / se:+.1f}" if se > 0 else "-",
            ]
        )
    if not rows:
        return ""
    return "### Quantiles: before and now\n\n" + markdown_table(
        ["task", "data", "n", "ε", "method", "before", "now", "z (now - before)"], rows
    )


def _header(wall: float, cfg: Config) -> list[str]:
    from importlib.metadata import version

    import dp_core

    where = Path(dp_core.__file__).resolve().parent.parent
    lines = machine_description()
    if where != ROOT:  # a snapshot: the working tree's git state says nothing about it
        stamp = where / "COMMIT"
        commit = stamp.read_text().strip() if stamp.exists() else "unknown commit"
        lines = [
            f"- Code: dp_core from `{where}` (`git archive` of commit {commit})"
            if line.startswith("- Code:")
            else line
            for line in lines
        ]
    return [
        f"Command: `{command_line()}`",
        "",
        *lines,
        f"- Peers: OpenDP {version('opendp')}, diffprivlib {version('diffprivlib')}, "
        f"python-dp {version('python-dp')}, scikit-learn {version('scikit-learn')} "
        f"(Python {platform.python_version()})",
        f"- Repetitions: peers {cfg.peer_reps} over {cfg.peer_draws} data draws; privflow exact "
        f"{cfg.exact_reps} (quantiles) or {cfg.exact_grid_reps} (grid families) over "
        f"{cfg.exact_draws} draws; privflow SHK {cfg.shk_seeds} seed(s) "
        f"per cell, all particles, in every cell of {list(cfg.shk_everywhere)} and at n >= 10^3, "
        "ε >= 0.5 elsewhere",
        f"- Wall time {wall / 60:.1f} min; load average at the end {load_average()}",
    ]


def report(runs: list[dict[str, Any]], before: list[dict[str, Any]] | None) -> str:
    """Markdown from one or more saved runs (cells of later runs never replace earlier ones)."""
    cells = [Cell(**c) for run in runs for c in run["cells"]]
    merged: dict[tuple[str, int, str], list[float]] = {}
    for run in runs:
        for *key, values in run["times"]:
            merged.setdefault(tuple(key), []).extend(values)
    times = {k: statistics.median(v) for k, v in merged.items()}
    cfg = Config(
        ns=tuple(sorted({c.n for c in cells})),
        epsilons=tuple(sorted({c.eps for c in cells})),
        datasets=tuple(d for d in ("symmetric", "heavy") if any(c.dataset == d for c in cells)),
        peer_reps=0,
        peer_draws=0,
        exact_reps=0,
        exact_grid_reps=0,
        exact_draws=0,
        shk_seeds=0,
        shk_everywhere=(),
    )
    out = ["## Peers: privflow against OpenDP, diffprivlib and python-dp", ""]
    for k, run in enumerate(runs):
        if len(runs) > 1:
            out += [f"Run {k + 1} of {len(runs)}:", ""]
        out += [*run["header"], ""]
    out.append(tables(cells, times, cfg))
    extras = [ratio_table(cells, cfg), acceptance(cells, cfg)]
    if before is not None:
        extras.append(before_table(cells, before))
    out += [e + "\n" for e in extras if e]
    notes = sorted({f"{c.task} {_column(c)}: {c.note}" for c in cells if c.note})
    if notes:
        out += ["Not available:", "", *(f"- {note}" for note in notes)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 1000, ε = 1, few repetitions")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset")
    parser.add_argument("--datasets", default=None, help="symmetric,heavy")
    parser.add_argument("--ns", default=None, help="e.g. 1000,10000")
    parser.add_argument("--epsilons", default=None, help="e.g. 0.5,1")
    parser.add_argument("--forms", default=None, help="gradient_norm,loss (default: all)")
    parser.add_argument("--methods", default="shk,exact", help="privflow methods")
    parser.add_argument(
        "--shk-units", default="add_remove", help="units SHK runs under (add_remove,replace_one)"
    )
    parser.add_argument("--shk-seeds", type=int, default=None, help="SHK seeds per cell")
    parser.add_argument(
        "--shk-region-only", action="store_true", help="SHK only at n >= 10^3, ε >= 0.5"
    )
    parser.add_argument("--shk-max-n", type=int, default=None, help="no SHK above this n")
    parser.add_argument("--no-peers", action="store_true", help="privflow only")
    parser.add_argument("--code-root", default=None, help="import dp_core from this directory")
    parser.add_argument("--json", default=None, help="write the cells and times here")
    parser.add_argument("--before", default=None, help="an earlier --json to compare quantiles")
    parser.add_argument(
        "--render", nargs="+", default=None, help="print the report of saved --json runs only"
    )
    args = parser.parse_args()
    before = json.loads(Path(args.before).read_text())["cells"] if args.before else None
    if args.render:
        print(report([json.loads(Path(p).read_text()) for p in args.render], before))
        return
    sys.path.insert(0, str(Path(args.code_root).resolve()) if args.code_root else str(ROOT))
    cfg = QUICK if args.quick else FULL
    over: dict[str, Any] = {}
    if args.datasets:
        over["datasets"] = tuple(args.datasets.split(","))
    if args.ns:
        over["ns"] = tuple(int(v) for v in args.ns.split(","))
    if args.epsilons:
        over["epsilons"] = tuple(float(v) for v in args.epsilons.split(","))
    if args.shk_seeds:
        over["shk_seeds"] = args.shk_seeds
    if args.shk_max_n:
        over["shk_max_n"] = args.shk_max_n
    if args.shk_region_only:
        over["shk_everywhere"] = ()
    cfg = Config(**{**cfg.__dict__, **over})
    tasks = [TASKS[t] for t in args.tasks.split(",")]
    warnings.simplefilter("ignore")  # diffprivlib / scikit-learn convergence chatter

    pf = Privflow()
    peers: list[Peer] = [] if args.no_peers else [OpenDP(), PythonDP(), Diffprivlib()]
    forms = None if args.forms is None else set(args.forms.split(","))
    start = time.perf_counter()
    state: dict[str, Any] = {}

    def save(cells: list[Cell], times: dict[tuple[str, int, str], list[float]]) -> None:
        state["run"] = {
            "header": _header(time.perf_counter() - start, cfg),
            "cells": [c.__dict__ for c in cells],
            "times": [[*k, v] for k, v in times.items()],
        }
        if args.json:
            path = Path(args.json)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(state["run"], indent=1))

    cells, times = run_grid(
        cfg,
        tasks,
        pf,
        peers,
        forms,
        set(args.methods.split(",")),
        set(args.shk_units.split(",")),
        save,
    )
    save(cells, times)
    print(report([state["run"]], before))


if __name__ == "__main__":
    main()
