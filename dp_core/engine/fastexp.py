"""A vectorisable, accurate ``exp`` for the pairwise kernels (and ``log1p`` on [0, 1] for the
logistic loss's softplus: :func:`log1p_unit`).

glibc's ``exp`` is a library call the compiler cannot vectorise, and it caps a fused pairwise
loop at about 1/6 of the machine's exp+FMA ceiling (research/baselines.md). :func:`exp`
below is straight-line arithmetic that LLVM turns into SIMD code inside the engine's tile loops:

* range reduction ``x = k ln2 + r`` with ``k = floor(x log2 e + 1/2)`` and a two-part ``ln 2``
  (Cody–Waite), so ``|r| <= ln2/2`` is exact to a few ulp;
* ``exp(r)`` by a degree-11 polynomial fitted in 50-digit arithmetic (weighted least squares on
  Chebyshev nodes of [-ln2/2, ln2/2]; relative approximation error 3.1e-18, far below the
  double rounding of 1.1e-16), evaluated by Horner's rule with fused multiply-adds;
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

__all__ = ["EXP_UNDERFLOW", "exp", "fma", "log1p_unit"]

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
    p = 2.4989491355772432869e-8
    p = fma(p, r, 2.763226447373136647e-7)
    p = fma(p, r, 2.7557638344026342473e-6)
    p = fma(p, r, 2.4801486607756640003e-5)
    p = fma(p, r, 1.9841269413815111087e-4)
    p = fma(p, r, 1.3888888951133485417e-3)
    p = fma(p, r, 8.3333333335690970531e-3)
    p = fma(p, r, 4.1666666666493154227e-2)
    p = fma(p, r, 1.6666666666666147838e-1)
    p = fma(p, r, 5.0000000000000176278e-1)
    p = fma(p, r, 1.0)
    p = fma(p, r, 1.0)
    # (2p) · 2^(k-1): k = 1024 (x just below the overflow point) stays representable, and the
    # product is formed once from a normal factor (no subnormal intermediate near -708).
    y = (p * 2.0) * _bits_to_float((kf + 1022) << 52)
    if x < EXP_UNDERFLOW:
        y = 0.0
    if x > _EXP_OVERFLOW:
        y = _INF
    if x != x:
        y = x
    return y


@njit(cache=True, nogil=True, inline="always")
def log1p_unit(x: float) -> float:
    """log(1 + x) for x in [0, 1], branch-free so that tile loops vectorise.

    ``log1p(x) = 2 atanh(z)``, ``z = x/(2 + x) ∈ [0, 1/3]``, by the series
    ``2z + 2z³ Σ_{j=1}^{17} z^{2j-2}/(2j + 1)`` (Horner in z² with fused multiply-adds; the first
    omitted term is below 6e-20 relative). z is carried as ``z_hi + z_lo``: the rounding of
    ``2 + x`` and of the quotient are recovered (Fast2Sum, an exact FMA residual), so the
    leading term ``2z`` is nearly exact and the result is within 1 ulp of ``log1p`` on [0, 1]
    (measured in ``tests/unit/engine``); no cancellation for small x. The softplus
    ``log(1 + e^{-|m|})`` of the logistic loss is its use.
    """
    a = 2.0 + x
    a_err = (2.0 - a) + x  # 2 + x = a + a_err exactly (|2| >= |x|)
    inv_a = 1.0 / a  # one division: the residual below is exact, so z_hi's rounding is recovered
    z_hi = x * inv_a
    z_lo = (fma(-z_hi, a, x) - z_hi * a_err) * inv_a
    z2 = z_hi * z_hi
    q = 0.02857142857142857
    q = fma(q, z2, 0.030303030303030304)
    q = fma(q, z2, 0.03225806451612903)
    q = fma(q, z2, 0.034482758620689655)
    q = fma(q, z2, 0.037037037037037035)
    q = fma(q, z2, 0.04)
    q = fma(q, z2, 0.043478260869565216)
    q = fma(q, z2, 0.047619047619047616)
    q = fma(q, z2, 0.05263157894736842)
    q = fma(q, z2, 0.058823529411764705)
    q = fma(q, z2, 0.06666666666666667)
    q = fma(q, z2, 0.07692307692307693)
    q = fma(q, z2, 0.09090909090909091)
    q = fma(q, z2, 0.1111111111111111)
    q = fma(q, z2, 0.14285714285714285)
    q = fma(q, z2, 0.2)
    q = fma(q, z2, 0.3333333333333333)
    return 2.0 * z_hi + fma(2.0 * z_hi * z2, q, 2.0 * z_lo)
