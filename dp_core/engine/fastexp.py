"""A vectorisable, accurate ``exp`` for the pairwise kernels.

glibc's ``exp`` is a library call the compiler cannot vectorise, and it caps a fused pairwise
loop at about 1/6 of the machine's exp+FMA ceiling (research/baselines.md). :func:`exp`
below is straight-line arithmetic that LLVM turns into SIMD code inside the engine's tile loops:

* range reduction ``x = k ln2 + r`` with ``k = floor(x log2 e + 1/2)`` and a two-part ``ln 2``
  (Cody–Waite), so ``|r| <= ln2/2`` is exact to a few ulp;
* ``exp(r)`` by its Taylor polynomial of degree 13 (truncation error ``< 4e-18`` relative);
* the factor ``2^k`` built directly from its IEEE-754 bit pattern.

Accuracy: within 2 ulp of ``math.exp`` on [-708, 709] (measured in ``tests/unit/engine``).
Inputs below -708 return exactly 0 (the true value is below 3.3e-308, at most 1.5 times the
smallest normal double: the only normal results flushed are those of (-708.40, -708));
inputs above 709.78 return +inf. NaN propagates. No ``fastmath`` is used: the results are
IEEE-deterministic, as required on paths that feed acceptance decisions and rates.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["EXP_UNDERFLOW", "exp", "fma"]

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
EXP_UNDERFLOW = -708.0
_EXP_OVERFLOW = 709.782712893384
_INF = float("inf")


@intrinsic
def _bits_to_float(typingctx, bits):  # pragma: no cover - compiled by numba
    """Reinterpret an int64 bit pattern as a float64 (an LLVM bitcast; vectorises)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return sig, codegen


@intrinsic
def fma(typingctx, a, b, c):  # pragma: no cover - compiled by numba
    """a * b + c with one rounding (IEEE fused multiply-add; ``llvm.fma``, vectorises).

    Unlike ``fastmath`` contraction this is an explicit, deterministic operation.
    """
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.DoubleType(), [ir.DoubleType()] * 3)
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.f64")
        return builder.call(fn, args)

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def exp(x: float) -> float:
    """exp(x) to within 2 ulp, branch-free so that tile loops vectorise (see module doc)."""
    xc = min(max(x, EXP_UNDERFLOW), _EXP_OVERFLOW)
    kf = int(xc * _LOG2E + 0.5 + 2048.0) - 2048  # floor without a library call
    k = float(kf)
    r = fma(-k, _LN2_LO, fma(-k, _LN2_HI, xc))
    p = 1.0 / 6227020800.0
    p = fma(p, r, 1.0 / 479001600.0)
    p = fma(p, r, 1.0 / 39916800.0)
    p = fma(p, r, 1.0 / 3628800.0)
    p = fma(p, r, 1.0 / 362880.0)
    p = fma(p, r, 1.0 / 40320.0)
    p = fma(p, r, 1.0 / 5040.0)
    p = fma(p, r, 1.0 / 720.0)
    p = fma(p, r, 1.0 / 120.0)
    p = fma(p, r, 1.0 / 24.0)
    p = fma(p, r, 1.0 / 6.0)
    p = fma(p, r, 0.5)
    p = fma(p, r, 1.0)
    p = fma(p, r, 1.0)
    # 2^(k-1) times 2, so that k = 1024 (x just below the overflow point) stays representable.
    y = p * _bits_to_float((kf + 1022) << 52) * 2.0
    if x < EXP_UNDERFLOW:
        y = 0.0
    if x > _EXP_OVERFLOW:
        y = _INF
    if x != x:
        y = x
    return y
