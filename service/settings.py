"""Service settings: every knob of a privflow process, read from ``PRIVFLOW_*`` variables.

There is no module-level instance: ``create_app`` and the CLI build a ``Settings()`` when they
need one, so importing this module reads nothing from the environment.
"""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["MIN_SECRET_CHARS", "LogLevel", "Settings"]

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]

MIN_SECRET_CHARS = 32
"""Shortest accepted secret setting (``secrets.token_urlsafe(32)`` gives 43 characters)."""


def _long_enough(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < MIN_SECRET_CHARS:
        raise ValueError(
            f"must be at least {MIN_SECRET_CHARS} characters; generate one with "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return value


LongSecret = Annotated[SecretStr, AfterValidator(_long_enough)]


class Settings(BaseSettings):
    """Process settings; each field ``name`` is read from ``PRIVFLOW_<NAME>``.

    Attributes
    ----------
    host, port
        Address ``privflow serve`` binds to.
    workers
        Number of uvicorn worker processes. Each worker has its own metrics registry and warms
        its own kernels (from the on-disk Numba cache after the first run).
    log_level
        Level of the uvicorn and ``service`` loggers.
    warm_on_startup
        Compile every Numba signature the service uses in a background thread at start-up,
        family by family (a request compiles what it calls and is not compiled yet, so
        ``/readyz`` does not wait for this). Set to false only where kernels are not needed
        (tests of the HTTP surface): kernels then compile on first use only.
    database_url
        SQLAlchemy URL of the store: an SQLite file by default, PostgreSQL
        (``postgresql+psycopg://...``) for several processes or replicas. ``postgresql://`` is
        read as ``postgresql+psycopg://``.
    admin_key
        The first admin API key (API.md "Auth"). Stored only as a hash; without it no admin
        can authenticate until one is created by another admin. At least 32 characters (a
        shorter one stops start-up with an error naming the setting, never its value).
        Without it, ``privflow serve`` on a store with no key creates one, prints it once and
        writes it to ``admin_key_file`` (``service.bootstrap``).
    admin_key_file
        Where ``privflow serve`` writes the admin key it creates for an empty store (mode
        0600). Default: ``privflow-admin.key`` beside the SQLite database file, or in the
        working directory for PostgreSQL.
    metrics_key
        A scrape token for Prometheus: ``Authorization: Bearer <metrics_key>`` opens ``/metrics``
        and nothing else (it is not an API key). Admin keys open ``/metrics`` too; without this
        setting only they do. At least 32 characters.
    metrics_dataset_labels
        Label the per-dataset series of ``/metrics`` (budgets, releases, epsilon charged) with
        dataset ids. Off by default: they are then summed under ``dataset="all"``, so no
        dataset id reaches Prometheus or whoever reads it. ``/metrics`` needs an admin key or
        the scrape token either way (docs/deploy.md, "How metrics are secured").
    openapi_enabled
        Serve the OpenAPI document (``/openapi.json``) and its browsable pages (``/docs``,
        ``/redoc``). On by default for development; 404 when off (the compose deployment).
    max_points
        Largest number of points (or records) one request may carry; more is 413.
    max_body_bytes
        Largest body of ``POST /v1/datasets`` from an admin key (records travel there), and the
        ceiling of every other limit; more is 413 ``too_large`` before the body is parsed.
    max_request_bytes
        Largest body of every other request (default 8 MiB); more is 413 ``too_large``. The
        size is checked from ``Content-Length`` before the body is read, and counted as a
        chunked body streams in; a body to ``/v1`` without an active key is 401 unread.
    job_workers
        Threads running private releases in this process. The Numba kernels use every core
        already, so more than one mainly adds concurrency, not throughput.
    job_queue
        Releases waiting or running beyond which a release is answered 429 with Retry-After.
    lease_seconds
        A running release or job whose process stopped renewing its lease for this long is
        marked ``aborted`` (its charge stays spent).
    compute_workers, compute_queue
        The same for public compute (flows, memories, generators), in a lane of its own so
        that it cannot hold the workers releases wait for (``service.jobs``).
    max_jobs_per_key
        Work items one key may have waiting or running in this process, both lanes together;
        one more is 429 ``overloaded`` with Retry-After.
    max_work_units
        The largest public work estimate (``service.cost``) a request may have; more is 413
        ``too_expensive`` before anything is charged or run.
    work_units_per_second
        The rate that turns work units into the ``estimated_seconds`` shown with an estimate
        (measured on the reference 2-core machine; docs/service.md, "Work limits").
    job_deadline_seconds
        Running time after which a release or job is stopped through the cancellation path
        and fails with code ``deadline`` (a release's charge stays spent).
    """

    # Errors never echo a value: a rejected setting may be a secret.
    model_config = SettingsConfigDict(
        env_prefix="PRIVFLOW_", extra="ignore", hide_input_in_errors=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    log_level: LogLevel = "info"
    warm_on_startup: bool = True
    database_url: str = "sqlite:///./privflow.db"
    admin_key: LongSecret | None = None
    admin_key_file: Path | None = None
    metrics_key: LongSecret | None = None
    metrics_dataset_labels: bool = False
    openapi_enabled: bool = True
    max_points: int = Field(default=1_000_000, ge=1)
    max_body_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    max_request_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    job_workers: int = Field(default=1, ge=1, le=64)
    job_queue: int = Field(default=64, ge=1)
    lease_seconds: float = Field(default=120.0, gt=0)
    compute_workers: int = Field(default=1, ge=1, le=64)
    compute_queue: int = Field(default=16, ge=1)
    max_jobs_per_key: int = Field(default=4, ge=1)
    max_work_units: float = Field(default=2.5e13, gt=0)
    work_units_per_second: float = Field(default=2e9, gt=0)
    job_deadline_seconds: float = Field(default=21600.0, gt=0)
