"""A checked loss -> SymPy -> straight-line kernel body (issue 19).

:class:`_SymPy` is the :class:`~expression.Backend` that builds the SymPy expression from the
whitelisted syntax tree over the renamed symbols ``th0..`` (θ) and ``x0..`` (columns, in the
declared order), so :attr:`LossExpression.canonical` carries no user spelling and keys the
compiled-kernel cache. ``sigmoid`` and ``softplus`` are SymPy functions of their own (printed as
the engine's overflow-free helpers), ``huber``, ``clip`` and ``where`` are Piecewise / Min / Max.

The gradient ∇_θ ℓ and, for the gradient-norm form, the Hessian (MALA needs ∇u, whose
Jacobian is Σ of the clipped gradients' derivatives) are differentiated symbolically; the
distributional parts of the derivatives of ``abs``, ``min``, ``max`` and ``where`` (DiracDelta
terms, zero almost everywhere) are dropped, so the kernel computes the a.e. derivative. SymPy's
common-subexpression elimination shares work between ℓ, g and H; SymPy's Python code printer,
restricted to the engine's vocabulary (:func:`dp_core.engine.custom_kernels.check_body`),
prints each assignment. Floats print with ``repr`` (round-trip exact).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sympy as sp
from mpmath.libmp import prec_to_dps
from sympy.codegen.cfunctions import log1p
from sympy.printing.pycode import PythonCodePrinter

from dp_core.engine.custom_kernels import KernelBody
from dp_core.errors import InvalidParameter
from dp_core.privacy.utilities.expression import FIELD, build, parse_tree

__all__ = ["LossExpression", "derivatives", "kernel_body", "parse_loss", "sigmoid", "softplus"]


class sigmoid(sp.Function):  # noqa: N801 (the grammar's spelling)
    """σ(z) = 1/(1 + e^{-z}); d/dz = σ(1 - σ). At a number it evaluates (to any precision), so
    ``max(sigmoid(1), x)`` can compare it."""

    is_extended_real = True

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_evalf(self, prec: int) -> sp.Expr | None:
        z = self.args[0]
        return (1 / (1 + sp.exp(-z))).evalf(prec_to_dps(prec)) if z.is_number else None


class softplus(sp.Function):  # noqa: N801
    """log(1 + e^z); d/dz = σ(z). Evaluates at a number as :class:`sigmoid` does."""

    is_extended_real = True

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sigmoid(self.args[0])

    def _eval_evalf(self, prec: int) -> sp.Expr | None:
        z = self.args[0]
        if not z.is_number:
            return None
        return (sp.Max(z, 0) + sp.log(1 + sp.exp(-sp.Abs(z)))).evalf(prec_to_dps(prec))


def _huber(r: sp.Expr, delta: sp.Expr) -> sp.Expr:
    return sp.Piecewise((r**2 / 2, sp.Abs(r) <= delta), (delta * (sp.Abs(r) - delta / 2), True))


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": sp.Abs,
    "min": sp.Min,
    "max": sp.Max,
    "exp": sp.exp,
    "log": sp.log,
    "log1p": log1p,
    "sqrt": sp.sqrt,
    "tanh": sp.tanh,
    "sin": sp.sin,
    "cos": sp.cos,
    "sigmoid": sigmoid,
    "softplus": softplus,
    "huber": _huber,
    "clip": lambda v, lo, hi: sp.Min(sp.Max(v, lo), hi),
    "where": lambda cond, a, b: sp.Piecewise((a, cond), (b, True)),
}
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "<": sp.StrictLessThan,
    "<=": sp.LessThan,
    ">": sp.StrictGreaterThan,
    ">=": sp.GreaterThan,
    "==": sp.Eq,
    "!=": sp.Ne,
}


class _SymPy:
    """The SymPy backend of the whitelist walk."""

    def __init__(self, theta: tuple[sp.Symbol, ...], columns: tuple[sp.Symbol, ...]) -> None:
        self.symbols = theta, columns

    def number(self, value: int | float) -> sp.Expr:
        return sp.Integer(value) if isinstance(value, int) else sp.Float(value)

    def theta(self, index: int) -> sp.Expr:
        return self.symbols[0][index]

    def column(self, index: int) -> sp.Expr:
        return self.symbols[1][index]

    def pi(self) -> sp.Expr:
        return sp.pi

    def neg(self, a: sp.Expr) -> sp.Expr:
        return -a

    def binop(self, op: str, a: sp.Expr, b: sp.Expr) -> sp.Expr:
        return {"+": a + b, "-": a - b, "*": a * b}[op] if op != "/" else a / b

    def power(self, a: sp.Expr, k: int) -> sp.Expr:
        return a**k

    def call(self, name: str, args: list[Any]) -> sp.Expr:
        return _FUNCTIONS[name](*args)

    def compare(self, op: str, a: sp.Expr, b: sp.Expr) -> Any:
        return _COMPARE[op](a, b)


@dataclass(frozen=True)
class LossExpression:
    """A parsed loss as SymPy over ``theta`` (dim symbols) and ``columns`` (one per alias)."""

    expr: sp.Expr
    theta: tuple[sp.Symbol, ...]
    columns: tuple[sp.Symbol, ...]

    @property
    def canonical(self) -> str:
        return sp.srepr(self.expr)

    @property
    def dim(self) -> int:
        return len(self.theta)


def parse_loss(text: Any, columns: Sequence[str], dim: int) -> LossExpression:
    """``text`` as SymPy; :class:`InvalidParameter` (``utility.loss``) outside the grammar."""
    tree = parse_tree(text, columns, dim)
    theta = tuple(sp.Symbol(f"th{a}", real=True) for a in range(dim))
    cols = tuple(sp.Symbol(f"x{c}", real=True) for c in range(len(columns)))
    expr = build(tree, columns, dim, _SymPy(theta, cols))
    if not isinstance(expr, sp.Expr) or expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo, sp.I):
        raise InvalidParameter(FIELD, "simplifies to a non-finite or complex constant")
    return LossExpression(expr, theta, cols)


class _KernelPrinter(PythonCodePrinter):
    """Python source for Numba over the engine's helpers; anything unknown is refused."""

    def __init__(self) -> None:
        super().__init__({"standard": "python3", "fully_qualified_modules": True})

    def _print_Float(self, expr: sp.Float) -> str:  # noqa: N802
        return repr(float(expr))

    def _print_Rational(self, expr: sp.Rational) -> str:  # noqa: N802
        return f"({float(expr.p)!r}/{float(expr.q)!r})"

    def _print_Integer(self, expr: sp.Integer) -> str:  # noqa: N802
        return str(int(expr))

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:  # noqa: N802
        """A negative integer power as 1.0/(b**k): Numba's integer power raises on a zero base
        whatever the error model, a float division gives inf."""
        base, exp = expr.args
        if exp.is_Integer and exp < 0:
            power = self.parenthesize(base, 1000) + ("" if exp == -1 else f"**{int(-exp)}")
            return f"(1.0/{power})"
        if exp == sp.Rational(-1, 2):
            return f"(1.0/math.sqrt({self._print(base)}))"
        return super()._print_Pow(expr, rational=rational)

    def _print_Heaviside(self, expr: Any) -> str:  # noqa: N802
        return f"_heaviside({self._print(expr.args[0])})"

    def _print_sigmoid(self, expr: Any) -> str:
        return f"_sigmoid({self._print(expr.args[0])})"

    def _print_softplus(self, expr: Any) -> str:
        return f"_softplus({self._print(expr.args[0])})"

    def _print_log1p(self, expr: Any) -> str:
        return f"math.log1p({self._print(expr.args[0])})"

    def _print_Exp1(self, expr: Any) -> str:  # noqa: N802
        return repr(float(sp.E))

    def _print_Pi(self, expr: Any) -> str:  # noqa: N802
        return "math.pi"

    def _print_Min(self, expr: Any) -> str:  # noqa: N802
        return self._nested("min", expr.args)

    def _print_Max(self, expr: Any) -> str:  # noqa: N802
        return self._nested("max", expr.args)

    def _nested(self, name: str, args: tuple[Any, ...]) -> str:
        text = self._print(args[0])
        for arg in args[1:]:
            text = f"{name}({text}, {self._print(arg)})"
        return text

    def _print_Not(self, expr: Any) -> str:  # noqa: N802
        return f"(not {self._print(expr.args[0])})"

    def _print_BooleanTrue(self, expr: Any) -> str:  # noqa: N802
        return "True"

    def _print_BooleanFalse(self, expr: Any) -> str:  # noqa: N802
        return "False"


def _drop_delta(expr: sp.Expr) -> sp.Expr:
    return expr.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.S.Zero)


def derivatives(loss: LossExpression, order: int) -> list[sp.Expr]:
    """[ℓ] + [∂ℓ/∂θ_a] (order >= 1) + [∂²ℓ/∂θ_a∂θ_b, a <= b] (order 2)."""
    outputs = [loss.expr]
    if order >= 1:
        grads = [_drop_delta(sp.diff(loss.expr, t)) for t in loss.theta]
        outputs += grads
    if order >= 2:
        for a in range(loss.dim):
            for b in range(a, loss.dim):
                outputs.append(_drop_delta(sp.diff(grads[a], loss.theta[b])))
    for out in outputs:
        if out.has(sp.Derivative, sp.Subs, sp.I, sp.zoo, sp.nan):
            raise InvalidParameter(FIELD, "cannot be differentiated in closed form")
    return outputs


def _names(dim: int, order: int) -> list[str]:
    names = ["l"]
    if order >= 1:
        names += [f"g{a}" for a in range(dim)]
    if order >= 2:
        names += [f"h{a}_{b}" for a in range(dim) for b in range(a, dim)]
    return names


def kernel_body(loss: LossExpression, order: int) -> KernelBody:
    """The kernel body computing ℓ and its derivatives up to ``order`` (0, 1 or 2)."""
    outputs = derivatives(loss, order)
    replacements, reduced = sp.cse(outputs, symbols=sp.numbered_symbols("_c"), order="none")
    printer = _KernelPrinter()
    lines = [f"{sym} = {printer.doprint(value)}" for sym, value in replacements]
    lines += [
        f"{name} = {printer.doprint(value)}"
        for name, value in zip(_names(loss.dim, order), reduced, strict=True)
    ]
    if printer._not_supported or any("\n" in line for line in lines):
        raise InvalidParameter(FIELD, "uses an operation the compiler cannot translate")
    key = f"{loss.canonical}|d={loss.dim}|m={len(loss.columns)}|o={order}"
    return KernelBody(key, loss.dim, len(loss.columns), order, tuple(lines))
