"""The ``privflow`` command line: ``serve`` (run the HTTP service), ``warm`` (compile kernels).

``privflow warm`` compiles every Numba signature the service uses into the on-disk cache (the
Docker build runs it so the cache ships in the image).

Heavy modules (uvicorn, pydantic, Numba) are imported inside the subcommands, so
``privflow --help`` answers at once.
"""

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["main"]

_APP_FACTORY = "service.app:create_app"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``privflow`` command line with ``argv`` (``sys.argv[1:]`` when None).

    Returns the process exit status; ``--help`` and usage errors exit through ``SystemExit``.
    """
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="privflow",
        description="Differential-privacy sampling service.",
        epilog="Settings come from PRIVFLOW_* environment variables; flags override them.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP service (uvicorn)")
    serve.add_argument("--host", help="address to bind (PRIVFLOW_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (PRIVFLOW_PORT, default 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (PRIVFLOW_WORKERS, default 1)")
    serve.set_defaults(handler=_serve)

    warm = commands.add_parser(
        "warm", help="compile the served kernel signatures into the Numba cache"
    )
    warm.set_defaults(handler=_warm)
    return parser


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from service.settings import Settings

    overrides = {
        name: value
        for name in ("host", "port", "workers")
        if (value := getattr(args, name)) is not None
    }
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"privflow serve: invalid settings\n{exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        _APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=_log_config(settings.log_level),
    )
    return 0


def _warm(args: argparse.Namespace) -> int:
    from dp_core import engine

    report = engine.warm()
    print(f"compiled {report.signatures} kernel signatures in {report.seconds:.1f} s")
    return 0


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus the ``service`` logger on its stderr handler."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["service"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


if __name__ == "__main__":
    sys.exit(main())
