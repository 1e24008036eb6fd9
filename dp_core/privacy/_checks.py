"""Validation of public privacy parameters, shared by accounting and the ledger.

Each helper returns the value as a number or raises ``InvalidParameter(field, ...)``.
"""

from __future__ import annotations

import math
import operator

from dp_core.errors import InvalidParameter

__all__ = ["count", "delta_value", "nonneg", "order", "real"]


def real(field: str, value: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidParameter(field, "must be a real number") from None


def nonneg(field: str, value: float, *, allow_inf: bool = False) -> float:
    """``value`` as a float ≥ 0 (finite unless ``allow_inf``); InvalidParameter otherwise."""
    x = real(field, value)
    if math.isnan(x) or x < 0.0 or (math.isinf(x) and not allow_inf):
        raise InvalidParameter(field, "must be >= 0" + ("" if allow_inf else " and finite"))
    return x


def order(field: str, value: float) -> float:
    x = real(field, value)
    if math.isnan(x) or x <= 1.0:
        raise InvalidParameter(field, "a Rényi order must be > 1")
    return x


def delta_value(field: str, value: float, *, allow_zero: bool) -> float:
    x = real(field, value)
    if math.isnan(x) or x >= 1.0 or x < 0.0 or (x == 0.0 and not allow_zero):
        raise InvalidParameter(field, "must lie in [0, 1)" if allow_zero else "must lie in (0, 1)")
    return x


def count(field: str, value: int) -> int:
    try:
        k = operator.index(value)
    except TypeError:
        raise InvalidParameter(field, "must be an integer") from None
    if k < 0:
        raise InvalidParameter(field, "must be >= 0")
    return k
