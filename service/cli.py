"""The ``privflow`` command line: ``serve`` (run the HTTP service), ``migrate`` (bring the
store's schema up to date), ``create-key`` (mint an API key, e.g. the first admin's), ``warm``
(compile kernels).

``privflow serve`` migrates the store before it starts its workers (each worker checks again;
migrations are idempotent and serialised by an advisory lock on PostgreSQL). On a store with no
API key and without ``PRIVFLOW_ADMIN_KEY`` it then creates the first admin key, writes it to a
file only the user can read and prints it once on the console (``service.bootstrap``).
``privflow warm`` compiles every Numba signature the service uses into the on-disk cache (the
Docker build runs it so the cache ships in the image). Logs are JSON lines on stderr.

Heavy modules (uvicorn, pydantic, Numba) are imported inside the subcommands, so
``privflow --help`` answers at once.
"""

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from service.logs import logging_config

if TYPE_CHECKING:
    from service.settings import Settings

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

    migrate = commands.add_parser(
        "migrate", help="apply the store's migrations (PRIVFLOW_DATABASE_URL)"
    )
    migrate.set_defaults(handler=_migrate)

    keys = commands.add_parser(
        "create-key",
        help="create an API key in the store and print it once (JSON on stdout, never logged)",
    )
    keys.add_argument("--name", required=True, help="a label for the key")
    keys.add_argument("--role", choices=("admin", "analyst"), default="admin")
    keys.set_defaults(handler=_create_key)

    warm = commands.add_parser(
        "warm", help="compile the served kernel signatures into the Numba cache"
    )
    warm.set_defaults(handler=_warm)
    return parser


def _settings(command: str, **overrides: object) -> "Settings | None":
    """``Settings()``, or None after printing what is wrong (names only, never a value: a
    rejected setting may be a secret) to stderr."""
    from pydantic import ValidationError

    from service.settings import Settings

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        print(f"privflow {command}: invalid settings", file=sys.stderr)
        for error in exc.errors(include_url=False, include_input=False):
            field = ".".join(str(part) for part in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            print(f"  {field} (PRIVFLOW_{field.upper()}): {message}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    overrides = {
        name: value
        for name in ("host", "port", "workers")
        if (value := getattr(args, name)) is not None
    }
    settings = _settings("serve", **overrides)
    if settings is None:
        return 2
    _apply_migrations(settings.database_url)
    _bootstrap_admin(settings)
    uvicorn.run(
        _APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=logging_config(settings.log_level),
    )
    _exit_now_if_compiling()
    return 0


def _exit_now_if_compiling() -> None:
    """After the server stopped, do not wait for background kernel compilation.

    The warm-up thread is a daemon, but one caught in a long import (torch) or compilation can
    hold the interpreter's shutdown for tens of seconds. Everything that matters is closed by
    now (the lifespan stopped the pool and the store; Numba writes its cache files atomically),
    so leave at once.
    """
    import os
    import threading

    from service.app import WARM_THREAD_NAME  # imported by uvicorn already

    if any(t.name == WARM_THREAD_NAME and t.is_alive() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _warm(args: argparse.Namespace) -> int:
    from dp_core import engine

    report = engine.warm()
    print(f"compiled {report.signatures} kernel signatures in {report.seconds:.1f} s")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    settings = _settings("migrate")
    if settings is None:
        return 2
    _apply_migrations(settings.database_url)
    print("store migrated to the newest schema")
    return 0


def _create_key(args: argparse.Namespace) -> int:
    import json

    from service.store.db import Store
    from service.store.keys import create_key

    settings = _settings("create-key")
    if settings is None:
        return 2
    store = Store(settings.database_url)
    try:
        store.migrate()
        with store.transaction() as conn:
            key, secret = create_key(conn, args.name, args.role)
    finally:
        store.dispose()
    print(json.dumps({"id": key.id, "name": key.name, "role": key.role, "key": secret}))
    return 0


def _bootstrap_admin(settings: "Settings") -> None:
    """On a store with no key and no ``PRIVFLOW_ADMIN_KEY``: create an admin key, write it to
    its 0600 file and print it once on the console (stdout, never the log)."""
    from service.bootstrap import banner, bootstrap_admin
    from service.store.db import Store

    store = Store(settings.database_url)
    try:
        key = bootstrap_admin(settings, store)
    finally:
        store.dispose()
    if key is not None:
        print(banner(key), flush=True)


def _apply_migrations(url: str) -> None:
    from service.store.db import Store

    store = Store(url)
    try:
        store.migrate()
    finally:
        store.dispose()


if __name__ == "__main__":
    sys.exit(main())
