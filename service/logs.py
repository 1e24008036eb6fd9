"""Structured logs: one JSON object per line for the service and uvicorn loggers.

Only fields a call site passes explicitly (``extra=``) are added to the message, and call sites
pass ids, codes, counts of public things and exception *types*: never records, samples of
private runs, seeds, keys or exception text.

Python warnings (``warnings.warn``: opacus, torch, NumPy) would otherwise be printed to stderr
as several lines of plain text between the JSON lines; :func:`route_warnings` sends them through
the ``py.warnings`` logger instead, which :func:`logging_config` formats like every other, so
each line of the log stays one JSON object.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFormatter", "logging_config", "route_warnings"]

WARNINGS_LOGGER = "py.warnings"
"""The logger :func:`logging.captureWarnings` writes warnings to."""

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...extra}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info and record.exc_info[0] is not None:
            out["error_type"] = record.exc_info[0].__name__  # the type only, never the text
        return json.dumps(out, default=str)


def logging_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict (also uvicorn's ``log_config``)."""
    level = "DEBUG" if level == "trace" else level.upper()
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler},
        "loggers": {
            name: {"handlers": ["default"], "level": level, "propagate": False}
            for name in (
                "service",
                "uvicorn",
                "uvicorn.error",
                "uvicorn.access",
                "dp_core",
                WARNINGS_LOGGER,
            )
        },
    }


def route_warnings() -> None:
    """Send ``warnings.warn`` output to the ``py.warnings`` logger, not raw to stderr.

    Process-wide and idempotent; the app's lifespan calls it in every serving process (each
    uvicorn worker included). The filters still decide which warnings are shown at all.
    """
    logging.captureWarnings(True)
