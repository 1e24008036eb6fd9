"""Hypothesis strategies for custom-loss expressions in the grammar (issue 19), shared by the
custom-utility tests: any mix of the grammar's functions over ``x``, ``y`` and θ, and losses
quadratic in θ with arbitrary coefficients of the record."""

from __future__ import annotations

from hypothesis import strategies as st

LEAVES = ("x", "y", "theta[0]", "theta[1]", "0.5", "2", "1e3", "pi")
RECORD_LEAVES = ("x", "y", "0.5", "2", "3", "pi")


def expressions(leaves: tuple[str, ...] = LEAVES, max_leaves: int = 8) -> st.SearchStrategy[str]:
    """Random expressions of the grammar over ``leaves``: unary functions, + - * /, integer
    powers -3..4, huber, max and where."""

    def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        unary = st.sampled_from(
            ["exp", "log", "log1p", "sqrt", "tanh", "abs", "sigmoid", "softplus", "sin", "-"]
        )
        binary = st.sampled_from(["+", "-", "*", "/"])
        return st.one_of(
            st.builds(lambda f, a: f"{f}({a})" if f != "-" else f"-({a})", unary, children),
            st.builds(lambda a, op, b: f"({a} {op} {b})", children, binary, children),
            st.builds(lambda a, k: f"({a})**{k}", children, st.integers(-3, 4)),
            st.builds(lambda a, b: f"huber({a}, {b})", children, children),
            st.builds(lambda a, b: f"max({a}, {b})", children, children),
            st.builds(lambda a, b, c: f"where({a} < {b}, {c}, {a})", children, children, children),
        )

    return st.recursive(st.sampled_from(leaves), extend, max_leaves=max_leaves)


def quadratic_losses() -> st.SearchStrategy[str]:
    """Losses of degree 2 in θ = (θ₀, θ₁) whose coefficients are random functions of the record
    (the summary path's domain)."""
    coefficient = expressions(RECORD_LEAVES, max_leaves=3)
    return st.builds(
        lambda a, b, c, e, f: (
            f"({a}) * (theta[0] - ({b}))**2 + ({c}) * theta[0] * theta[1] + ({e}) * theta[1] + {f}"
        ),
        coefficient, coefficient, coefficient, coefficient, coefficient,
    )  # fmt: skip
