"""The expression language of user-written per-record losses (issue 19; docs/privacy.md,
"Custom utilities").

A loss is one expression over numbers, ``theta[i]`` (``i`` < dim), the declared column aliases,
``+ - * /``, ``**`` with an integer literal exponent (|k| <= :data:`MAX_EXPONENT`), unary
minus, ``pi`` and the functions of :data:`FUNCTIONS`; a comparison (``< <= > >= == !=``) may
appear only as the condition of ``where(cond, a, b)``. Nothing else.

The text is never evaluated: its length and characters are checked *before* Python's parser
sees it, the parser runs in ``eval`` mode, and a whitelist walk over the ``ast`` (bounded node
count and depth) calls a :class:`Backend` for each allowed node — :mod:`codegen`'s builds the
SymPy expression directly (no ``eval``, ``exec``, ``sympify`` or ``parse_expr``); the null
backend of :func:`check_loss` only checks, without importing SymPy. Every refusal is
:class:`~dp_core.errors.InvalidParameter` naming ``utility.loss``; messages quote grammar facts,
never the rejected text.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from dp_core.errors import InvalidParameter

__all__ = [
    "ALIAS_PATTERN",
    "FIELD",
    "FUNCTIONS",
    "MAX_BRACKETS",
    "MAX_DEPTH",
    "MAX_EXPONENT",
    "MAX_LENGTH",
    "MAX_NODES",
    "Backend",
    "build",
    "check_alias",
    "check_loss",
    "parse_tree",
]

FIELD = "utility.loss"
MAX_LENGTH = 2000
"""Characters; checked before the parser runs."""
MAX_NODES = 512
"""AST nodes of the parsed expression."""
MAX_DEPTH = 200
"""Nesting depth of the parsed expression (a sum of n terms nests n deep)."""
MAX_BRACKETS = 32
"""Bracket depth of the text, checked before the parser (whose own limit is 200)."""
MAX_EXPONENT = 16
"""|k| of an integer exponent ``a ** k``."""
MAX_LITERAL = 1e15
"""|v| of a numeric literal."""
MAX_ARGS = 8
"""Arguments of ``min`` / ``max``."""
ALIAS_PATTERN = "[A-Za-z_][A-Za-z0-9_]{0,31}"
_ALLOWED_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ \t.+-*/()[],<>=!"
)


FUNCTIONS: dict[str, tuple[int, int]] = {
    "abs": (1, 1),
    "min": (2, MAX_ARGS),
    "max": (2, MAX_ARGS),
    "exp": (1, 1),
    "log": (1, 1),
    "log1p": (1, 1),
    "sqrt": (1, 1),
    "tanh": (1, 1),
    "sin": (1, 1),
    "cos": (1, 1),
    "sigmoid": (1, 1),
    "softplus": (1, 1),
    "huber": (2, 2),
    "clip": (3, 3),
    "where": (3, 3),
}
"""name -> (min args, max args). ``huber(r, d)`` = r²/2 for |r| <= d, else d(|r| - d/2);
``clip(v, lo, hi)`` = min(max(v, lo), hi); ``where(cond, a, b)``; ``sigmoid`` = 1/(1 + e^-z);
``softplus`` = log(1 + e^z)."""

_RESERVED = frozenset({"theta", "pi", *FUNCTIONS})
_BINOPS: dict[type, str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_COMPARE: dict[type, str] = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}


class Backend(Protocol):
    """What the whitelist walk builds with (SymPy in :mod:`codegen`; nothing when checking)."""

    def number(self, value: int | float) -> Any: ...

    def theta(self, index: int) -> Any: ...

    def column(self, index: int) -> Any: ...

    def pi(self) -> Any: ...

    def neg(self, a: Any) -> Any: ...

    def binop(self, op: str, a: Any, b: Any) -> Any: ...

    def power(self, a: Any, k: int) -> Any: ...

    def call(self, name: str, args: list[Any]) -> Any: ...

    def compare(self, op: str, a: Any, b: Any) -> Any: ...


class _Check:
    """The null backend: the walk alone checks the grammar."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args: None


def _refuse(message: str) -> InvalidParameter:
    return InvalidParameter(FIELD, message)


def check_alias(alias: str, field: str = "utility.columns") -> str:
    """A column alias: an ASCII identifier of at most 32 characters, not a reserved name."""
    if not isinstance(alias, str) or re.fullmatch(ALIAS_PATTERN, alias) is None:
        raise InvalidParameter(field, f"aliases must match {ALIAS_PATTERN}")
    if alias in _RESERVED:
        raise InvalidParameter(field, "an alias must not be theta, pi or a function name")
    return alias


def _pre_parse(text: Any) -> str:
    """Length, characters and bracket depth, checked before Python's parser sees the text."""
    if not isinstance(text, str):
        raise _refuse("must be a string")
    if len(text) > MAX_LENGTH:
        raise _refuse(f"must be at most {MAX_LENGTH} characters")
    if not text.strip():
        raise _refuse("must not be empty")
    if not _ALLOWED_CHARS.issuperset(text):
        raise _refuse(
            "may contain only ASCII letters, digits, spaces and + - * / ( ) [ ] , < > = !"
        )
    depth = 0
    for char in text:
        depth += (char in "([") - (char in ")]")
        if depth > MAX_BRACKETS:
            raise _refuse(f"nests deeper than {MAX_BRACKETS} brackets")
    return text


def parse_tree(text: Any, columns: Sequence[str], dim: int) -> ast.Expression:
    """The checked syntax tree of ``text`` (pre-parse checks, parser, node count);
    :class:`InvalidParameter` naming ``utility.loss`` for anything outside the grammar."""
    source = _pre_parse(text)
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise _refuse("is not a valid expression") from None
    for nodes, _ in enumerate(ast.walk(tree), start=1):
        if nodes > MAX_NODES:
            raise _refuse(f"has more than {MAX_NODES} syntax nodes")
    return tree


def build(tree: ast.Expression, columns: Sequence[str], dim: int, backend: Backend) -> Any:
    """Walk a tree from :func:`parse_tree` with ``backend``, refusing anything else."""
    return _Builder(backend, dim, {name: j for j, name in enumerate(columns)}).expr(tree.body, 0)


def check_loss(text: Any, columns: Sequence[str], dim: int) -> None:
    """Refuse ``text`` unless it is a loss of the grammar over ``theta[0..dim-1]`` and the
    aliases ``columns`` (no SymPy, no compiler: fast)."""
    build(parse_tree(text, columns, dim), columns, dim, _Check())


class _Builder:
    """The whitelist walk: one method per allowed node kind, everything else refused."""

    def __init__(self, backend: Backend, dim: int, names: dict[str, int]) -> None:
        self.backend = backend
        self.dim = dim
        self.names = names

    def expr(self, node: ast.AST, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _refuse(f"nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, ast.Constant):
            return self.backend.number(_number(node.value))
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.Subscript):
            return self.backend.theta(self._theta_index(node))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = self.expr(node.operand, depth + 1)
            return self.backend.neg(inner) if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp):
            left = self.expr(node.left, depth + 1)
            if isinstance(node.op, ast.Pow):
                return self.backend.power(left, _exponent(node.right))
            op = _BINOPS.get(type(node.op))
            if op is None:
                raise _refuse("operators are + - * / and ** with an integer exponent")
            return self.backend.binop(op, left, self.expr(node.right, depth + 1))
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        if isinstance(node, ast.Compare):
            raise _refuse("comparisons are allowed only as the condition of where(cond, a, b)")
        raise _refuse(f"{type(node).__name__} is not part of the loss grammar")

    def _name(self, name: str) -> Any:
        if name == "pi":
            return self.backend.pi()
        if name in self.names:
            return self.backend.column(self.names[name])
        if name == "theta":
            raise _refuse("theta must be indexed: theta[i]")
        raise _refuse("names must be declared column aliases, pi, or theta[i]")

    def _theta_index(self, node: ast.Subscript) -> int:
        index = node.slice
        if not (isinstance(node.value, ast.Name) and node.value.id == "theta"):
            raise _refuse("the only subscript is theta[i]")
        if not (
            isinstance(index, ast.Constant)
            and isinstance(index.value, int)
            and not isinstance(index.value, bool)
            and 0 <= index.value < self.dim
        ):
            raise _refuse(f"theta[i] needs an integer literal i in [0, {self.dim})")
        return index.value

    def _call(self, node: ast.Call, depth: int) -> Any:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise _refuse("calls are limited to " + ", ".join(FUNCTIONS))
        name = node.func.id
        low, high = FUNCTIONS[name]
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            raise _refuse("functions take positional arguments only")
        if not (low <= len(node.args) <= high):
            raise _refuse(f"{name} takes {low} argument(s)" + ("" if low == high else " or more"))
        if name == "where":
            cond = self._condition(node.args[0], depth + 1)
            args = [cond, *(self.expr(arg, depth + 1) for arg in node.args[1:])]
        else:
            args = [self.expr(arg, depth + 1) for arg in node.args]
        return self.backend.call(name, args)

    def _condition(self, node: ast.AST, depth: int) -> Any:
        if not (isinstance(node, ast.Compare) and len(node.ops) == 1):
            raise _refuse("where(cond, a, b) needs one comparison as its condition")
        op = _COMPARE.get(type(node.ops[0]))
        if op is None:
            raise _refuse("comparisons are < <= > >= == !=")
        left = self.expr(node.left, depth + 1)
        return self.backend.compare(op, left, self.expr(node.comparators[0], depth + 1))


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _refuse("constants must be numbers")
    if not (math.isfinite(value) and abs(value) <= MAX_LITERAL):
        raise _refuse(f"numbers must be finite with magnitude at most {MAX_LITERAL:g}")
    return value


def _exponent(node: ast.AST) -> int:
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
    if not (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int)
        and not isinstance(node.value, bool)
        and node.value <= MAX_EXPONENT
    ):
        raise _refuse(f"exponents must be integer literals with |k| <= {MAX_EXPONENT}")
    return sign * node.value
