"""Service settings: every knob of a privflow process, read from ``PRIVFLOW_*`` variables.

There is no module-level instance: ``create_app`` and the CLI build a ``Settings()`` when they
need one, so importing this module reads nothing from the environment.
"""

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["LogLevel", "Settings"]

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


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
        Compile every Numba signature the service uses in a background thread at start-up;
        ``/readyz`` answers 503 until that finishes. Set to false only where kernels are not
        needed (tests of the HTTP surface): the app is then ready at once.
    database_url
        SQLAlchemy-style URL of the store (SQLite file by default, PostgreSQL for several
        replicas). Not used yet: the store arrives in a later issue.
    """

    model_config = SettingsConfigDict(env_prefix="PRIVFLOW_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    log_level: LogLevel = "info"
    warm_on_startup: bool = True
    database_url: str = "sqlite:///./privflow.db"
