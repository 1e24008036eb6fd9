"""Record-pass kernels generated for user-written losses (issue 19), compiled on first use.

:mod:`dp_core.privacy.utilities.codegen` prints a loss, its gradient and (for the gradient
form) its Hessian as straight-line Python over the scalars ``th0..`` (θ) and ``x0..`` (one
record's columns); this module wraps that body in one of four fixed loop templates and compiles
it with ``numba.njit(cache=False)``. The body never contains user text: it is printed from a
SymPy tree over renamed symbols, and :func:`check_body` refuses any identifier outside a fixed
vocabulary before anything is compiled.

Templates (records clipped to their public bounds beforehand):

* ``shk/gradient_norm``: A(θ) = Σ_x clip_G(g) and J(θ) = Σ_x ∂clip_G(g)/∂θ, with
  ∂clip_G(g)/∂θ = H for |g| <= G and (G/|g|)(I - ĝĝᵀ)H otherwise (H the Hessian, ĝ = g/|g|);
  a non-finite g counts as the zero vector (and contributes no curvature), a non-finite H as
  zero curvature.
* ``shk/loss``: L(θ) = Σ_x min(max(ℓ, 0), c) with a non-finite ℓ counted as c, and ∇L = Σ of
  g over the records with 0 < ℓ < c (finite g only).
* ``grid/gradient_norm`` and ``grid/loss``: the exact path's per-record integer contributions,
  one record at a time through :mod:`grid_scores`' rounding helpers (never a batched product).

The record passes are fused and tiled like :mod:`utility_kernels` (TILE partial sums reduced by
the fixed tree: deterministic, thread-count independent), with ``nogil``, no fastmath, and
``error_model="numpy"`` (a division by zero is inf, not an exception). Each kernel is serial
over a range ``[start, stop)`` of points and :func:`run_chunks` spreads the points over the
engine's thread count: a ``parallel=True`` compile takes two to three times longer (measured
8-12 s against 3.5-5 s here), and a compile is what a user waits for. Compiled kernels live
in a bounded LRU keyed by the canonical expression; a compile that exceeds its time limit is
refused (it finishes in the background and stays cached).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import get_num_threads, njit

from dp_core.engine.grid_scores import _add_rounded_gradient, _round_loss
from dp_core.engine.kernels import TILE, _tree_sum
from dp_core.errors import InvalidParameter

__all__ = [
    "CACHE_SIZE",
    "COMPILE_TIMEOUT_S",
    "KINDS",
    "CompiledKernel",
    "KernelBody",
    "cache_info",
    "check_body",
    "compile_kernel",
    "run_chunks",
]

CACHE_SIZE = 64
"""Compiled kernels kept (least recently used evicted)."""
COMPILE_TIMEOUT_S = 30.0
KINDS = ("shk/gradient_norm", "shk/loss", "grid/gradient_norm", "grid/loss")


@njit(cache=True, nogil=True, inline="always")
def _sigmoid(z):
    """σ(z) without overflow."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(cache=True, nogil=True, inline="always")
def _softplus(z):
    """log(1 + e^z) without overflow."""
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


@njit(cache=True, nogil=True, inline="always")
def _heaviside(z):
    """H(z) with H(0) = 1/2 (SymPy's convention)."""
    return 1.0 if z > 0.0 else (0.0 if z < 0.0 else 0.5)


_VOCABULARY = frozenset(
    {
        "math.exp",
        "math.log",
        "math.log1p",
        "math.sqrt",
        "math.tanh",
        "math.sin",
        "math.cos",
        "math.pi",
        "math.copysign",
        "abs",
        "min",
        "max",
        "if",
        "else",
        "and",
        "or",
        "not",
        "True",
        "False",
        "_sigmoid",
        "_softplus",
        "_heaviside",
    }
)
_LOCAL = re.compile(r"(th|x|_c|g)\d+|h\d+_\d+|l")
_IDENT = re.compile(r"(?<![A-Za-z0-9_.])[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_CHARS = re.compile(r"[A-Za-z0-9_ .+\-*/()<>=!,]*")


@dataclass(frozen=True)
class KernelBody:
    """Straight-line assignments computing ``l``, ``g0..g{d-1}`` (order >= 1) and
    ``h{a}_{b}`` for a <= b (order 2) from ``th0..`` and ``x0..``; ``key`` is canonical."""

    key: str
    dim: int
    n_columns: int
    order: int
    lines: tuple[str, ...]


def check_body(body: KernelBody) -> None:
    """Refuse a body with any identifier outside the printer's vocabulary (defence in depth:
    the printer only emits these)."""
    for line in body.lines:
        if _CHARS.fullmatch(line) is None:
            raise InvalidParameter("utility.loss", "cannot be compiled")
        for name in _IDENT.findall(line):
            if name not in _VOCABULARY and _LOCAL.fullmatch(name) is None:
                raise InvalidParameter("utility.loss", "cannot be compiled")


# --------------------------------------------------------------------------- templates


def _unpack(prefix: str, source: str, count: int, indent: int) -> str:
    pad = " " * indent
    return "".join(f"{pad}{prefix}{a} = {source.format(a=a)}\n" for a in range(count))


def _body(lines: tuple[str, ...], indent: int) -> str:
    pad = " " * indent
    return "".join(f"{pad}{line}\n" for line in lines)


def _h(a: int, b: int) -> str:
    return f"h{min(a, b)}_{max(a, b)}"


def _gradient_norm_shk(body: KernelBody) -> str:
    """Branch-free per record (selects, so the tile loop can vectorise): with s = min(1, G/|g|)
    the clipped gradient is s·g and its Jacobian s·H - [|g| > G]·(G/|g|³)·g (Hg)ᵀ."""
    d = body.dim
    lines = [
        "sq = " + " + ".join(f"g{a} * g{a}" for a in range(d)),
        "fin = sq < np.inf",
        "norm = math.sqrt(sq) if fin else 0.0",
        "scale = 1.0 if norm <= clip else clip / norm",
        "curl = clip / (norm * norm * norm) if norm > clip else 0.0",
        "hs = " + " + ".join(_h(a, b) for a in range(d) for b in range(d)),
        "hfin = fin & (abs(hs) < np.inf)",
    ]
    lines += [f"ac{a}[t] += scale * g{a} if fin else 0.0" for a in range(d)]
    lines += [
        f"w{b} = " + " + ".join(f"{_h(a, b)} * g{a}" for a in range(d)) + " if hfin else 0.0"
        for b in range(d)
    ]
    lines += [
        f"ac{d + a * d + b}[t] += scale * {_h(a, b)} - curl * g{a} * w{b} if hfin else 0.0"
        for a in range(d)
        for b in range(d)
    ]
    return (
        "def kernel(start, stop, points, records_t, clip, a_out, j_out):\n"
        "    n = records_t.shape[1]\n"
        "    for i in range(start, stop):\n"
        + _unpack("th", "points[i, {a}]", d, 8)
        + f"        acc = np.zeros(({d + d * d}, TILE))\n"
        + _unpack("ac", "acc[{a}]", d + d * d, 8)
        + _tiles(body)
        + _body(body.lines, 16)
        + _body(tuple(lines), 16)
        + f"        for a in range({d}):\n"
        "            a_out[i, a] = _tree_sum(acc[a])\n"
        f"            for b in range({d}):\n"
        f"                j_out[i, a, b] = _tree_sum(acc[{d} + a * {d} + b])\n"
    )


def _loss_shk(body: KernelBody) -> str:
    """The clipped loss (c where non-finite: NaN fails every comparison, ±inf the finiteness
    test) and, where 0 < ℓ < c and g is finite, the gradient; branch-free selects, no min/max
    (Numba's NaN-aware min/max kept the loop scalar: 5x slower, measured)."""
    d = body.dim
    lines = [
        "lc = (l if l < clip else clip) if l > 0.0 else 0.0",
        "ac0[t] += lc if abs(l) < np.inf else clip",
        "inside = (l > 0.0) & (l < clip) & ("
        + " + ".join(f"g{a} * g{a}" for a in range(d))
        + " < np.inf)",
    ]
    lines += [f"ac{1 + a}[t] += g{a} if inside else 0.0" for a in range(d)]
    return (
        "def kernel(start, stop, points, records_t, clip, v_out, g_out):\n"
        "    n = records_t.shape[1]\n"
        "    for i in range(start, stop):\n"
        + _unpack("th", "points[i, {a}]", d, 8)
        + f"        acc = np.zeros(({d + 1}, TILE))\n"
        + _unpack("ac", "acc[{a}]", d + 1, 8)
        + _tiles(body)
        + _body(body.lines, 16)
        + _body(tuple(lines), 16)
        + "        v_out[i] = _tree_sum(acc[0])\n"
        f"        for a in range({d}):\n"
        "            g_out[i, a] = _tree_sum(acc[1 + a])\n"
    )


def _tiles(body: KernelBody) -> str:
    """The tile loop header: one row view per column, hoisted, then one record per lane."""
    return (
        "        for j0 in range(0, n, TILE):\n"
        "            cnt = min(TILE, n - j0)\n"
        + _unpack("xr", "records_t[{a}, j0 : j0 + cnt]", body.n_columns, 12)
        + "            for t in range(cnt):\n"
        + _unpack("x", "xr{a}[t]", body.n_columns, 16)
    )


def _gradient_norm_grid(body: KernelBody) -> str:
    d = body.dim
    pad = " " * 12
    sq = " + ".join(f"g{a} * g{a}" for a in range(d))
    return (
        "def kernel(start, stop, grid, records, quantum, bound, limit, out):\n"
        "    n = records.shape[0]\n"
        "    for i in range(start, stop):\n"
        + _unpack("th", "grid[i, {a}]", d, 8)
        + "        row = out[i]\n"
        "        row[:] = 0\n"
        f"        g = np.zeros({d})\n"
        f"        rounded = np.zeros({d}, dtype=np.int64)\n"
        "        for r in range(n):\n"
        + _unpack("x", "records[r, {a}]", body.n_columns, 12)
        + _body(body.lines, 12)
        + f"{pad}if not ({sq} < np.inf):\n"
        f"{pad}    continue\n"
        + "".join(f"{pad}g[{a}] = g{a}\n" for a in range(d))
        + f"{pad}_add_rounded_gradient(g, bound, quantum, limit, row, rounded)\n"
    )


def _loss_grid(body: KernelBody) -> str:
    d = body.dim
    pad = " " * 12
    return (
        "def kernel(start, stop, grid, records, quantum, bound, limit, out):\n"
        "    n = records.shape[0]\n"
        "    for i in range(start, stop):\n"
        + _unpack("th", "grid[i, {a}]", d, 8)
        + "        row = out[i]\n"
        "        row[:] = 0\n"
        "        for r in range(n):\n"
        + _unpack("x", "records[r, {a}]", body.n_columns, 12)
        + _body(body.lines, 12)
        + f"{pad}row[0] += _round_loss(l if abs(l) < np.inf else bound, bound, quantum)\n"
    )


_TEMPLATES: dict[str, tuple[Callable[[KernelBody], str], str, int]] = {
    "shk/gradient_norm": (
        _gradient_norm_shk,
        "void(i8, i8, f8[:, ::1], f8[:, ::1], f8, f8[:, ::1], f8[:, :, ::1])",
        2,
    ),
    "shk/loss": (_loss_shk, "void(i8, i8, f8[:, ::1], f8[:, ::1], f8, f8[::1], f8[:, ::1])", 1),
    "grid/gradient_norm": (
        _gradient_norm_grid,
        "void(i8, i8, f8[:, ::1], f8[:, ::1], f8, f8, i8, i8[:, ::1])",
        1,
    ),
    "grid/loss": (_loss_grid, "void(i8, i8, f8[:, ::1], f8[:, ::1], f8, f8, i8, i8[:, ::1])", 0),
}
"""kind -> (source template, eager signature, derivative order the body must provide)."""


def kernel_source(kind: str, body: KernelBody) -> str:
    """The Python source of ``kind``'s kernel around ``body`` (for inspection and tests)."""
    template, _, order = _TEMPLATES[kind]
    if body.order < order:
        raise ValueError(f"{kind} needs derivatives of order {order}")
    return template(body)


def _compile(kind: str, body: KernelBody) -> Callable[..., None]:
    check_body(body)
    _, signature, _ = _TEMPLATES[kind]
    namespace: dict[str, Any] = {
        "np": np,
        "math": math,
        "TILE": TILE,
        "_tree_sum": _tree_sum,
        "_sigmoid": _sigmoid,
        "_softplus": _softplus,
        "_heaviside": _heaviside,
        "_add_rounded_gradient": _add_rounded_gradient,
        "_round_loss": _round_loss,
    }
    code = compile(kernel_source(kind, body), f"<privflow custom {kind}>", "exec")
    exec(code, namespace)  # generated from a checked SymPy tree: no user text
    return njit(signature, nogil=True, cache=False, error_model="numpy")(namespace["kernel"])


@dataclass(frozen=True)
class CompiledKernel:
    """A compiled kernel and the seconds its compile took in this call (None: cached)."""

    kernel: Callable[..., None]
    compile_seconds: float | None


_lock = threading.Lock()
_cache: OrderedDict[tuple[str, str], Future[Callable[..., None]]] = OrderedDict()
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="privflow-compile")
_stats = {"hits": 0, "misses": 0}


def cache_info() -> dict[str, int]:
    """Hits, misses and current size of the compiled-kernel cache."""
    with _lock:
        return {**_stats, "size": len(_cache)}


def compile_kernel(
    kind: str, body: KernelBody, timeout: float = COMPILE_TIMEOUT_S
) -> CompiledKernel:
    """``kind``'s kernel for ``body``, from the LRU or compiled now (at most ``timeout``
    seconds waited; :class:`InvalidParameter` naming ``utility.loss`` past it or on a compile
    error, which is evicted)."""
    if kind not in _TEMPLATES:
        raise ValueError(f"unknown kernel kind {kind!r}")
    cache_key = (kind, body.key)
    with _lock:
        future = _cache.get(cache_key)
        fresh = future is None
        if future is None:
            future = _executor.submit(_compile, kind, body)
            _cache[cache_key] = future
            _stats["misses"] += 1
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
        else:
            _cache.move_to_end(cache_key)
            _stats["hits"] += 1
    start = time.perf_counter()
    try:
        kernel = future.result(timeout=timeout)
    except FutureTimeout:
        raise InvalidParameter(
            "utility.loss", f"did not compile within {timeout:g} s; simplify it"
        ) from None
    except InvalidParameter:
        _evict(cache_key, future)
        raise
    except Exception:  # a numba typing or lowering error: the expression cannot be compiled
        _evict(cache_key, future)
        raise InvalidParameter("utility.loss", "cannot be compiled") from None
    return CompiledKernel(kernel, time.perf_counter() - start if fresh else None)


def _evict(cache_key: tuple[str, str], future: Future[Any]) -> None:
    with _lock:
        if _cache.get(cache_key) is future:
            del _cache[cache_key]


_runner = ThreadPoolExecutor(thread_name_prefix="privflow-custom")


def run_chunks(kernel: Callable[..., None], count: int, *args: Any) -> None:
    """``kernel(start, stop, *args)`` over ``[0, count)`` in one chunk per engine thread
    (:func:`numba.get_num_threads`, which :func:`dp_core.engine.parallel.threads` sets); the
    kernels release the GIL, and every point's result depends on that point alone."""
    threads = max(1, min(get_num_threads(), count))
    if threads == 1:
        kernel(0, count, *args)
        return
    bounds = [count * k // threads for k in range(threads + 1)]
    futures = [_runner.submit(kernel, bounds[k], bounds[k + 1], *args) for k in range(1, threads)]
    kernel(bounds[0], bounds[1], *args)
    for future in futures:
        future.result()
