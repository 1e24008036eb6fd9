"""RFC 9457 problem details: the API's error type, its codes and the FastAPI handlers.

Every error response is ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail`` and ``code`` (API.md "Error codes"), plus ``errors`` for field problems. Actions raise
:class:`ApiError`; ``install_error_handlers`` maps it, request-validation errors,
``dp_core.errors.InvalidParameter`` and anything unexpected (500 ``internal``, whose body never
carries exception text: it could hold private values) to that shape.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dp_core.errors import InvalidParameter

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "ApiError",
    "BodyTooLarge",
    "FieldError",
    "InvalidBody",
    "install_error_handlers",
    "problem_body",
    "problem_response",
]

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"

_TITLES = {
    "unauthenticated": "Authentication required",
    "forbidden": "Forbidden",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "budget_exceeded": "Privacy budget exceeded",
    "too_large": "Request too large",
    "too_expensive": "Request too expensive",
    "deadline": "Deadline exceeded",
    "invalid_request": "Invalid request",
    "idempotency_conflict": "Idempotency key reused with another request",
    "overloaded": "Service overloaded",
    "not_ready": "Service not ready",
    "conflict": "Conflict",
    "internal": "Internal error",
}

FieldError = dict[str, str]
"""``{"field": "utility.q", "message": "must lie in (0, 1)"}``."""


class BodyTooLarge(StarletteHTTPException):
    """Raised while a request body streams in past the size limit (``service.limits``); an
    HTTPException so FastAPI's body parsing passes it through to the 413 handler."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"Request bodies are limited to {max_bytes} bytes.")


class InvalidBody(StarletteHTTPException):
    """A JSON body refused while it is decoded (``service.api._body``): 422 ``invalid_request``
    naming ``field``. An HTTPException, so FastAPI's body decoding passes it through."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(422, f"{field}: {message}")
        self.errors: list[FieldError] = [{"field": field, "message": message}]


class ApiError(Exception):
    """An error the API answers with a problem+json body; ``code`` is API.md's."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors
        self.headers = headers

    @classmethod
    def invalid(cls, field: str, message: str) -> ApiError:
        """422 ``invalid_request`` naming one field."""
        return cls(
            422,
            "invalid_request",
            f"{field}: {message}",
            errors=[{"field": field, "message": message}],
        )

    def body(self) -> dict[str, Any]:
        return problem_body(self.status, self.code, self.detail, self.errors)


def problem_body(
    status: int, code: str, detail: str, errors: list[FieldError] | None = None
) -> dict[str, Any]:
    """The problem+json object for ``code``."""
    body: dict[str, Any] = {
        "type": f"/errors/{code}",
        "title": _TITLES.get(code, code.replace("_", " ").capitalize()),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    return body


def problem_response(
    status: int,
    code: str,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        problem_body(status, code, detail, errors),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


_ABSENT = object()


def _field_name(
    loc: tuple[Any, ...] | list[Any], body: Any = _ABSENT, error_type: str = "missing"
) -> str:
    """``("body", "utility", "q")`` -> ``"utility.q"``; list indices as ``[i]``.

    ``loc`` is walked along the request ``body`` (when known) so that the labels pydantic adds
    for union members (the tag ``"quantile"`` in ``("body", "utility", "quantile", "q")``, the
    member type ``"float"`` of ``float | int | str``) are dropped: a name is kept only where the
    body has that key, or as the last key of a ``missing`` error.
    """
    parts: list[str] = []
    node = body
    items = list(loc)
    for position, item in enumerate(items):
        if item in ("body", "query", "path", "header") and not parts:
            if item != "body":
                node = _ABSENT
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and 0 <= item < len(node) else _ABSENT
            continue
        name = str(item)
        if "[" in name or name.startswith("function-"):
            continue  # pydantic's union-member and validator labels are not field names
        if node is not _ABSENT:
            if not isinstance(node, dict):
                continue  # a union member's label under a non-object value
            if name not in node and (position + 1 < len(items) or error_type != "missing"):
                continue  # a discriminated union's tag, not a key of the object
        parts.append(("." if parts else "") + name)
        node = node.get(name, _ABSENT) if isinstance(node, dict) else _ABSENT
    return "".join(parts) or "body"


def _status_code_for(exc: StarletteHTTPException) -> tuple[int, str]:
    return {
        400: (422, "invalid_request"),  # FastAPI: a body it cannot decode (API.md: always 422)
        401: (401, "unauthenticated"),
        403: (403, "forbidden"),
        404: (404, "not_found"),
        405: (405, "method_not_allowed"),
        413: (413, "too_large"),
    }.get(
        exc.status_code,
        (exc.status_code, "invalid_request" if exc.status_code < 500 else "internal"),
    )


@lru_cache(maxsize=256)
def _template_regex(template: str) -> re.Pattern[str]:
    """``/v1/jobs/{job_id}`` -> a pattern matching one path segment per parameter."""
    parts = re.split(r"\{[^/{}]+\}", template)
    return re.compile("[^/]+".join(re.escape(part) for part in parts))


def _allow_header(request: Request, headers: dict[str, str] | None) -> dict[str, str] | None:
    """A 405's ``Allow`` lists every method of the resource (RFC 9110 §15.5.6).

    Starlette names only the methods of the first route whose path matched, so a path served by
    two routes (``GET`` and ``POST /v1/keys``) would advertise one of them; the OpenAPI document
    knows them all. Undocumented paths keep Starlette's header.
    """
    methods = [
        method.upper()
        for template, operations in request.app.openapi().get("paths", {}).items()
        if _template_regex(template).fullmatch(request.scope.get("path", ""))
        for method in operations
    ]
    if not methods:
        return headers
    return {**(headers or {}), "Allow": ", ".join(dict.fromkeys(methods))}


def _count_refusal(request: Request, code: str) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.refusals.labels(code).inc()


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with problem+json."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        _count_refusal(request, exc.code)
        return problem_response(exc.status, exc.code, exc.detail, exc.errors, exc.headers)

    @app.exception_handler(InvalidParameter)
    async def _invalid_parameter(request: Request, exc: InvalidParameter) -> JSONResponse:
        error = ApiError.invalid(exc.field, exc.message)
        _count_refusal(request, error.code)
        return problem_response(error.status, error.code, error.detail, error.errors)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        _count_refusal(request, "invalid_request")
        errors = [
            {
                "field": _field_name(err.get("loc", ()), exc.body, err.get("type", "")),
                "message": str(err.get("msg", "invalid")).removeprefix("Value error, "),
            }
            for err in exc.errors()
        ]
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        return problem_response(422, "invalid_request", f"Invalid fields: {fields}", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status, code = _status_code_for(exc)
        _count_refusal(request, code)
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(code, code)
        headers = getattr(exc, "headers", None)
        if status == 405:
            headers = _allow_header(request, headers)
        errors = getattr(exc, "errors", None)  # InvalidBody names its field
        return problem_response(status, code, detail, errors, headers=headers)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the log by type only: exception text may quote private values.
        logger.error("unhandled error", extra={"error_type": type(exc).__name__})
        return problem_response(500, "internal", "The request failed inside the service.")
