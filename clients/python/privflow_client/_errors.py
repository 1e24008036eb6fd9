"""The SDK's one error hierarchy, mapped from the API's problem codes (API.md "Error codes").

Every error the client raises is a :class:`PrivflowError`; act on its class or on ``code``::

    PrivflowError                 code, status, detail, errors
    ├── Unauthenticated           401  unauthenticated
    ├── Forbidden                 403  forbidden (also: dataset not granted to this key)
    ├── NotFound                  404  not_found
    ├── BudgetExceeded            409  budget_exceeded (nothing spent, nothing run)
    ├── TooLarge                  413  too_large
    ├── InvalidRequest            422  invalid_request (field problems in ``errors``)
    ├── IdempotencyConflict       422  idempotency_conflict (same key, another body)
    ├── Overloaded                429  overloaded (``retry_after`` seconds)
    ├── InternalError             500  internal
    ├── ConnectionFailed          no response: the service could not be reached
    └── JobTimeout                a job did not finish in time (also a ``TimeoutError``)

A problem with a code this SDK does not know (``cancelled`` for a cancelled job, say) is a plain
``PrivflowError`` carrying that code. ``status`` is ``None`` when no HTTP answer exists
(``ConnectionFailed``, or ``InvalidRequest`` raised before sending because a request model did
not validate).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BudgetExceeded",
    "ConnectionFailed",
    "FieldError",
    "Forbidden",
    "IdempotencyConflict",
    "InternalError",
    "InvalidRequest",
    "JobTimeout",
    "NotFound",
    "Overloaded",
    "PrivflowError",
    "TooLarge",
    "Unauthenticated",
    "error_for",
]

FieldError = dict[str, str]
"""One field problem: ``{"field": "utility.q", "message": "..."}``."""


class PrivflowError(Exception):
    """Base of every SDK error: the API's problem ``code`` with its HTTP ``status``.

    Attributes
    ----------
    code
        The API's stable problem code (``budget_exceeded``, ...): act on this.
    status
        HTTP status of the answer, or ``None`` when there was none.
    detail
        The human sentence of the problem.
    errors
        Field problems (``[{"field", "message"}]``), empty when the problem names none.
    """

    default_code: ClassVar[str] = "error"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        status: int | None = None,
        errors: list[FieldError] | None = None,
    ) -> None:
        super().__init__(detail)
        self.code: str = code or self.default_code
        self.status: int | None = status
        self.detail: str = detail
        self.errors: list[FieldError] = list(errors or [])

    def __str__(self) -> str:
        head = f"{self.status} {self.code}" if self.status is not None else self.code
        text = f"{head}: {self.detail}"
        if self.errors:
            fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in self.errors)
            text += f" ({fields})"
        return text


class Unauthenticated(PrivflowError):
    """Missing, unknown or revoked API key (401)."""

    default_code = "unauthenticated"


class Forbidden(PrivflowError):
    """Authenticated but not allowed: an admin-only call, or a dataset not granted (403)."""

    default_code = "forbidden"


class NotFound(PrivflowError):
    """No such resource visible to this key (404)."""

    default_code = "not_found"


class BudgetExceeded(PrivflowError):
    """The release does not fit the dataset's budget or the key's cap; nothing was spent (409)."""

    default_code = "budget_exceeded"


class TooLarge(PrivflowError):
    """The request is over a size limit (413)."""

    default_code = "too_large"


class InvalidRequest(PrivflowError):
    """Schema or semantic validation failed; ``errors`` names the fields (422)."""

    default_code = "invalid_request"


class IdempotencyConflict(PrivflowError):
    """This ``Idempotency-Key`` was already used with a different request (422)."""

    default_code = "idempotency_conflict"


class Overloaded(PrivflowError):
    """The service's queue is full; nothing was done. Retry after ``retry_after`` seconds (429)."""

    default_code = "overloaded"

    def __init__(self, detail: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retry_after: float | None = retry_after


class InternalError(PrivflowError):
    """The service failed; the body never carries private data (500)."""

    default_code = "internal"


class ConnectionFailed(PrivflowError):
    """No HTTP answer: connecting, sending or reading failed (after any retries)."""

    default_code = "connection_failed"


class JobTimeout(PrivflowError, TimeoutError):
    """``Job.wait`` ran out of time; the job itself goes on (cancel it to stop it)."""

    default_code = "job_timeout"


_BY_CODE: dict[str, type[PrivflowError]] = {
    cls.default_code: cls
    for cls in (
        Unauthenticated,
        Forbidden,
        NotFound,
        BudgetExceeded,
        TooLarge,
        InvalidRequest,
        IdempotencyConflict,
        Overloaded,
        InternalError,
    )
}

_CODE_BY_STATUS = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    413: "too_large",
    422: "invalid_request",
    429: "overloaded",
    500: "internal",
}


def error_for(
    status: int,
    problem: dict[str, Any] | None,
    *,
    retry_after: float | None = None,
) -> PrivflowError:
    """The exception for an error answer: by the problem's ``code``, else by HTTP status.

    ``problem`` is the decoded problem+json body, or ``None`` when the body was not one (a
    proxy's HTML page, say).
    """
    problem = problem or {}
    code = problem.get("code")
    if not isinstance(code, str) or not code:
        code = _CODE_BY_STATUS.get(status, "unavailable" if status >= 500 else "http_error")
    detail = problem.get("detail")
    if not isinstance(detail, str) or not detail:
        detail = str(problem.get("title") or f"HTTP {status}")
    raw_errors = problem.get("errors")
    errors = (
        [
            {"field": str(e.get("field", "")), "message": str(e.get("message", ""))}
            for e in raw_errors
            if isinstance(e, dict)
        ]
        if isinstance(raw_errors, list)
        else []
    )
    cls = _BY_CODE.get(code, PrivflowError)
    if cls is Overloaded:
        return Overloaded(detail, code=code, status=status, errors=errors, retry_after=retry_after)
    return cls(detail, code=code, status=status, errors=errors)
