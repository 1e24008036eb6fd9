"""A local syntax check of a custom utility's ``loss`` (API.md "Custom utilities").

The service is the authority: it parses the expression with the same grammar, differentiates
it and compiles it. :func:`check_loss` catches syntax mistakes before a request is sent, with
the same rules: at most 2000 characters of ASCII, a whitelist over Python's ``ast`` in ``eval``
mode (nothing is evaluated), at most 512 syntax nodes, ``theta[i]`` with an integer literal,
the declared column aliases, ``pi``, ``+ - * /``, ``**`` with an integer literal exponent of
magnitude at most 16, and the functions of :data:`FUNCTIONS`; a comparison only as the
condition of ``where(cond, a, b)``.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable

from privflow_client._errors import InvalidRequest

__all__ = ["FUNCTIONS", "LossSyntaxError", "check_loss"]

FUNCTIONS: dict[str, tuple[int, int]] = {
    **dict.fromkeys(
        ("abs", "exp", "log", "log1p", "sqrt", "tanh", "sin", "cos", "sigmoid", "softplus"),
        (1, 1),
    ),
    "min": (2, 8),
    "max": (2, 8),
    "huber": (2, 2),
    "clip": (3, 3),
    "where": (3, 3),
}
"""Function name -> (least, most) arguments."""

_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ \t.+-*/()[],<>=!"
)
_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div)
_COMPARE = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)


class LossSyntaxError(InvalidRequest, ValueError):
    """The expression is outside the loss grammar: the 422 naming ``utility.loss`` the service
    would answer, found locally (``status`` is None: nothing was sent)."""

    def __init__(self, message: str) -> None:
        super().__init__(
            f"utility.loss: {message}", errors=[{"field": "utility.loss", "message": message}]
        )


def check_loss(loss: str, columns: Iterable[str] = (), dim: int | None = None) -> None:
    """Raise :class:`LossSyntaxError` unless ``loss`` is in the grammar; ``columns`` are the
    aliases (keys of the utility's ``columns``), ``dim`` the domain's dimension (``theta[i]``
    needs i < dim; unchecked when None)."""
    if not isinstance(loss, str) or not loss.strip():
        raise LossSyntaxError("the loss must be a non-empty string")
    if len(loss) > 2000 or not _CHARS.issuperset(loss):
        raise LossSyntaxError("at most 2000 characters: ASCII letters, digits, +-*/()[],<>=!")
    depth = 0
    for char in loss:
        depth += (char in "([") - (char in ")]")
        if depth > 32:
            raise LossSyntaxError("brackets nest deeper than 32")
    try:
        tree = ast.parse(loss.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise LossSyntaxError("not a valid expression") from None
    if sum(1 for _ in ast.walk(tree)) > 512:
        raise LossSyntaxError("more than 512 syntax nodes")
    _Walk(set(columns), dim).node(tree.body, 0)


class _Walk:
    def __init__(self, names: set[str], dim: int | None) -> None:
        self.names = names
        self.dim = dim

    def node(self, node: ast.AST, depth: int) -> None:
        if depth > 200:
            raise LossSyntaxError("nests deeper than 200 levels")
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise LossSyntaxError("constants must be numbers")
            if not (math.isfinite(value) and abs(value) <= 1e15):
                raise LossSyntaxError("numbers must be finite, magnitude at most 1e15")
        elif isinstance(node, ast.Name):
            if node.id != "pi" and node.id not in self.names:
                raise LossSyntaxError(f"unknown name {node.id!r}: use theta[i], pi or an alias")
        elif isinstance(node, ast.Subscript):
            self.theta(node)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            self.node(node.operand, depth + 1)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            self.node(node.left, depth + 1)
            exponent = node.right
            if isinstance(exponent, ast.UnaryOp) and isinstance(exponent.op, (ast.USub, ast.UAdd)):
                exponent = exponent.operand
            value = getattr(exponent, "value", None)
            if not (type(value) is int and value <= 16):
                raise LossSyntaxError("exponents must be integer literals with |k| <= 16")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, _OPS):
            self.node(node.left, depth + 1)
            self.node(node.right, depth + 1)
        elif isinstance(node, ast.Call):
            self.call(node, depth)
        else:
            raise LossSyntaxError(f"{type(node).__name__} is not part of the loss grammar")

    def theta(self, node: ast.Subscript) -> None:
        index = getattr(node.slice, "value", None)
        if not (isinstance(node.value, ast.Name) and node.value.id == "theta"):
            raise LossSyntaxError("the only subscript is theta[i]")
        if type(index) is not int or index < 0 or (self.dim is not None and index >= self.dim):
            raise LossSyntaxError("theta[i] needs an integer literal i within the dimension")

    def call(self, node: ast.Call, depth: int) -> None:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS:
            raise LossSyntaxError("calls are limited to " + ", ".join(FUNCTIONS))
        low, high = FUNCTIONS[name]
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise LossSyntaxError("functions take positional arguments only")
        if not low <= len(node.args) <= high:
            raise LossSyntaxError(f"{name} takes {low} to {high} arguments")
        args = node.args
        if name == "where":
            cond = args[0]
            if not (
                isinstance(cond, ast.Compare)
                and len(cond.ops) == 1
                and isinstance(cond.ops[0], _COMPARE)
            ):
                raise LossSyntaxError("where(cond, a, b) needs one comparison as its condition")
            self.node(cond.left, depth + 2)
            self.node(cond.comparators[0], depth + 2)
            args = args[1:]
        for arg in args:
            self.node(arg, depth + 1)
