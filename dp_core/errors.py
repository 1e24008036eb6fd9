"""The DPCoreError tree: every error the numerical and privacy core raises.

::

    DPCoreError                 base; carries a stable ``code``
    ├── InvalidParameter        a public parameter is out of range; names the ``field``
    ├── Cancelled               a run was cancelled cooperatively by its caller
    └── NumericalFailure        a computation produced a non-finite value where none may appear

Messages never contain values derived from private records: callers only pass public
parameters into them.
"""

from __future__ import annotations

__all__ = ["Cancelled", "DPCoreError", "InvalidParameter", "NumericalFailure"]


class DPCoreError(Exception):
    """Base of every error raised by ``dp_core``."""

    code: str = "dp_core_error"


class InvalidParameter(DPCoreError, ValueError):
    """A public parameter is invalid; ``field`` names it for the API layer."""

    code = "invalid_request"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Cancelled(DPCoreError):
    """The caller asked the run to stop; raised between two steps."""

    code = "cancelled"


class NumericalFailure(DPCoreError, ArithmeticError):
    """A kernel produced NaN or infinity where the algorithm guarantees finite values."""

    code = "numerical_failure"
