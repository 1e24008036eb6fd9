"""The engine's signature table, family by family, and ``warm()``, which compiles (or loads) every
entry once.

Every Numba kernel the service calls is listed here with a tiny call of the exact argument types
the service uses (float64 C-contiguous arrays, int64 / float64 scalars, uint64 streams), so that
the Docker build compiles everything and a served call finds its signature compiled. Entries are
grouped in families (:data:`SIGNATURES`), listed in the order a fresh service compiles them in
the background: what every private release needs first. :func:`warm_family` compiles one family
(thread-safe; a second call returns at once), and :func:`warm` all of them. Kernels are declared
with ``cache=True``: the second process start loads them from the on-disk cache
(``NUMBA_CACHE_DIR`` or ``__pycache__``), which :func:`compile_stats` lets a test verify.

A call of a kernel whose family is not compiled yet compiles just that kernel's signature in the
calling thread (Numba's lazy compilation, serialised by its global compiler lock), so it never
waits for the other families.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dp_core.engine import (
    affine,
    birth_death,
    gram,
    grid_scores,
    kde,
    kernels,
    langevin,
    matrix_maps,
    potentials,
    rng,
    semidiscrete,
    sinkhorn,
    sinkhorn_solve,
    two_layer,
    utility_kernels,
)

__all__ = ["SIGNATURES", "FamilyReport", "WarmReport", "compile_stats", "warm", "warm_family"]


def _tiny_points(n: int = 3, d: int = 2) -> np.ndarray:
    return np.linspace(-1.0, 1.0, n * d).reshape(n, d)


def _warm_kernels() -> None:
    x = _tiny_points()
    w = np.full(3, 1.0 / 3.0)
    for kind in kernels.KERNELS.values():
        kernels.kernel_sum(x, x, w, kind, 0.5)
        kernels.kernel_grad_sum(x, x, w, kind, 0.5)
        kernels.kernel_sum_self(x, w, kind, 0.5)
        kernels.kernel_grad_sum_self(x, w, kind, 0.5)
    kernels.logsumexp_cost(x, x, np.log(w), np.zeros(3), 0.25)
    kernels.softmax_barycentre(x, x, np.log(w), np.zeros(3), 0.25)


def _warm_generators() -> None:
    x = _tiny_points()
    phi = np.zeros(3)
    affine.affine_top2(x, x, phi)
    semidiscrete.smoothed_energy_terms(x, x, phi, 0.25)
    affine.affine_logsumexp(x, x, phi, 0.25, barycentre=True)


def _warm_particles() -> None:
    x = _tiny_points()
    streams = rng.new_streams(0, 3)
    rng.fill_normals(streams, np.empty((3, 2)))
    rng.fill_uniforms(streams, np.empty((3, 2)))
    lo, hi = np.full(2, -2.0), np.full(2, 2.0)
    langevin.uniform_in_domain(streams, langevin.BOX, lo, hi, x)
    g = np.zeros_like(x)
    prop = np.empty_like(x)
    inside = np.empty(3, dtype=np.uint8)
    accepted = np.empty(3, dtype=np.uint8)
    v = np.zeros(3)
    steps = np.empty(3)
    langevin.log_uniform_steps(streams, 0.001, 0.01, steps)
    langevin.mala_propose(x, g, steps, streams, langevin.BOX, lo, hi, prop, inside)
    langevin.mala_accept(x, v, g, prop, v, g, inside, steps, streams, accepted)
    beta = np.empty(3)
    birth_death.birth_death_rates(v, v, beta)
    birth_death.birth_death_sweep(x, v, g, beta, 0.01, streams[:1].copy(), np.empty(3, np.int64))
    x1 = _tiny_points(3, 1)
    kde.log_kde_self(x1, 0.5)
    order = np.empty(3, np.int64)
    birth_death.reaction(
        x1, v, g[:, :1].copy(), 0.5, 0.01, streams[:1].copy(), v.copy(), beta, order
    )


def _warm_potentials() -> None:
    target = potentials.GaussianMixturePotential([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], [1.0, 1.0])
    target.value_and_grad(_tiny_points())


def _warm_utilities() -> None:
    x1 = _tiny_points(3, 1)
    x2 = _tiny_points(3, 2)
    records = np.sort(np.linspace(-1.0, 1.0, 5))
    counts = np.empty(3, dtype=np.int64)
    utility_kernels.quantile_counts(x1, records, counts)
    v = np.empty(3)
    prefix = np.concatenate([[0.0], np.cumsum(records)])
    prefix_sq = np.concatenate([[0.0], np.cumsum(records**2)])
    utility_kernels.clipped_mean_loss_1d(x1, records, prefix, prefix_sq, 0.5, v, np.empty((3, 1)))
    g2 = np.empty((3, 2))
    x2_t = np.ascontiguousarray(x2.T)
    utility_kernels.clipped_mean_loss_nd(x2, x2_t, 0.5, v, g2)
    utility_kernels.logistic_loss(x2, x2_t, np.ones(3), v, g2)
    utility_kernels.kmeans_loss(x2, np.ascontiguousarray(x1.T), 2, 0.5, v, g2)
    utility_kernels.clipped_gradient_sum_1d(x1, records, prefix, 0.5, np.empty((3, 1)), v)
    weights = np.empty((3, 1))
    utility_kernels.assignment_gradient_sum(x2, x2_t, 1, 0.5, g2, weights)
    utility_kernels.assignment_curvature(x2, x2_t, 1, 0.5, x2, g2)
    utility_kernels.logistic_gradient_sum(x2, x2_t, np.ones(3), g2, np.empty((3, 2, 2)))


def _warm_grid_scores() -> None:
    x2 = _tiny_points(3, 2)
    x3 = _tiny_points(3, 3)
    for gradient, width in ((True, 2), (False, 1)):
        out = np.empty((3, width), dtype=np.int64)
        grid_scores.assignment_grid_sums(x2, x2, 1, 0.5, gradient, 0.01, 1.0, 120, out)
        grid_scores.linear_grid_sums(x2, x3, gradient, 0.01, 1.0, 120, out)
        grid_scores.logistic_grid_sums(x2, x3, gradient, 0.01, 1.0, 120, out)


def _warm_sinkhorn() -> None:
    x = _tiny_points()
    off = np.array([0, 3], dtype=np.int64)
    w = np.full(3, 1.0 / 3.0)
    sinkhorn_solve.sinkhorn_pairs(x, off, w, x, off, w, 0.5, max_iter=2, path="dense")
    sinkhorn_solve.sinkhorn_self(x, off, w, 0.5, max_iter=2, path="dense")
    prob = np.zeros(3, dtype=np.int64)
    mat_off = np.array([0, 9], dtype=np.int64)
    C = np.empty(9)
    sinkhorn.build_costs(x, prob, off, x, off, mat_off, C)
    lw, eps, active = np.log(w), np.full(1, 0.25), np.ones(1, dtype=np.uint8)
    problem = (prob, off, off, mat_off, C, lw, np.zeros(3), eps, active)
    for dense_pass in (sinkhorn.dense_pass_serial, sinkhorn.dense_pass_parallel):
        for average, bary in ((False, np.empty((3, 2))), (True, np.empty((0, 2)))):
            out = (np.zeros(3), np.empty(3), bary.shape[0] > 0, x, bary, 3)
            dense_pass(*problem, average, *out)


def _warm_flow_maps() -> None:
    x = _tiny_points()
    for kind in kernels.KERNELS.values():
        gram.kernel_matrix(x, x, kind, 0.5)
    m = np.linspace(-1.0, 1.0, 12).reshape(2, 2, 3)
    out = np.empty_like(m)
    v = np.empty(2)
    matrix_maps.regularized_polar(m, 1e-2, matrix_maps.SQRT, out, v, v.copy())
    matrix_maps.newton_schulz5(m, 5, out)
    units = np.linspace(-1.0, 1.0, 2 * 3 * 3).reshape(2, 3, 3)
    a = np.full(2, 0.5)
    for kind in (two_layer.QUADEXP, two_layer.LINEAR):
        two_layer.mean_output(units, a, x, kind, 2.0)
        two_layer.pullback(units, x, np.ones(3), kind, 2.0, True)
        two_layer.unit_outputs(units, x, kind, 2.0)


SIGNATURES: dict[str, tuple[Callable[[], None], tuple[object, ...]]] = {
    "particles": (
        _warm_particles,
        (
            rng._init_streams,
            rng.fill_normals,
            rng.fill_uniforms,
            langevin.uniform_in_domain,
            langevin.log_uniform_steps,
            langevin.mala_propose,
            langevin.mala_accept,
            birth_death.birth_death_rates,
            birth_death.birth_death_sweep,
            kde._log_kde_1d_kernel,
            birth_death._reaction_1d,
        ),
    ),
    "utilities": (
        _warm_utilities,
        (
            utility_kernels.quantile_counts,
            utility_kernels.clipped_mean_loss_1d,
            utility_kernels.clipped_mean_loss_nd,
            utility_kernels.logistic_loss,
            utility_kernels.kmeans_loss,
            utility_kernels.clipped_gradient_sum_1d,
            utility_kernels.assignment_gradient_sum,
            utility_kernels.assignment_curvature,
            utility_kernels.logistic_gradient_sum,
        ),
    ),
    "kernels": (
        _warm_kernels,
        (
            kernels._kernel_sum_kernel,
            kernels._self_kernel,
            kernels._kernel_grad_sum_kernel,
            kernels._lse_kernel,
        ),
    ),
    "grid_scores": (
        _warm_grid_scores,
        (
            grid_scores.assignment_grid_sums,
            grid_scores.linear_grid_sums,
            grid_scores.logistic_grid_sums,
        ),
    ),
    "potentials": (_warm_potentials, (potentials._mixture_value_and_grad,)),
    "sinkhorn": (
        _warm_sinkhorn,
        (
            sinkhorn.small_batch_solve,
            sinkhorn.build_costs,
            sinkhorn.dense_pass_serial,
            sinkhorn.dense_pass_parallel,
        ),
    ),
    "flow_maps": (
        _warm_flow_maps,
        (
            gram._kernel_matrix_kernel,
            matrix_maps.regularized_polar,
            matrix_maps.newton_schulz5,
            two_layer._mean_output_kernel,
            two_layer._pullback_kernel,
            two_layer._unit_outputs_kernel,
        ),
    ),
    "generators": (
        _warm_generators,
        (affine._top2_kernel, affine._affine_kernel),
    ),
}
"""Family name -> (a call that exercises every served signature, the dispatchers it compiles),
in the order a fresh service compiles them: the SHK particle moves and the utility kernels every
private release uses first, the public flows' kernels last."""


@dataclass(frozen=True)
class WarmReport:
    """What ``warm()`` did: wall time and the number of compiled signatures."""

    seconds: float
    signatures: int


@dataclass(frozen=True)
class FamilyReport:
    """What :func:`warm_family` did for one family: its name, the seconds this call spent
    compiling or loading it (0 when it was already done), and its compiled signatures."""

    family: str
    seconds: float
    signatures: int


_FAMILY_LOCKS = {name: threading.Lock() for name in SIGNATURES}
_WARM_FAMILIES: set[str] = set()


def warm_family(name: str) -> FamilyReport:
    """Compile or load from cache every signature of the family ``name`` of :data:`SIGNATURES`.

    Thread-safe: a call while another thread warms the same family waits for it; a call after
    it returns at once with ``seconds == 0``. Raises ``KeyError`` for an unknown family.
    """
    run, dispatchers = SIGNATURES[name]
    seconds = 0.0
    with _FAMILY_LOCKS[name]:
        if name not in _WARM_FAMILIES:
            start = time.perf_counter()
            run()
            seconds = time.perf_counter() - start
            _WARM_FAMILIES.add(name)
    return FamilyReport(name, seconds, sum(len(d.signatures) for d in dispatchers))


def warm(on_family: Callable[[FamilyReport], None] | None = None) -> WarmReport:
    """Compile or load from cache every signature in :data:`SIGNATURES`, family by family in
    the table's order, calling ``on_family`` with each family's report."""
    start = time.perf_counter()
    for name in SIGNATURES:
        report = warm_family(name)
        if on_family is not None:
            on_family(report)
    total = sum(len(d.signatures) for _, ds in SIGNATURES.values() for d in ds)
    return WarmReport(seconds=time.perf_counter() - start, signatures=total)


def compile_stats() -> dict[str, tuple[int, int]]:
    """Dispatcher name -> (cache hits, cache misses) in this process, for the cache test."""
    out: dict[str, tuple[int, int]] = {}
    for _, dispatchers in SIGNATURES.values():
        for d in dispatchers:
            hits = sum(d.stats.cache_hits.values())
            misses = sum(d.stats.cache_misses.values())
            out[d.py_func.__qualname__] = (hits, misses)
    return out
