"""The store's schema (SQLAlchemy Core): one table per resource of API.md.

Every listable table has an integer ``seq`` primary key (insertion order, the pagination cursor)
and a unique public string ``id``. Records are kept only in ``datasets.records`` (float64 bytes,
categories as their index) and are never selected by a read path that answers a request.
Migrations in ``migrations/versions`` create exactly this schema (a test compares them).
"""

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect

__all__ = [
    "datasets",
    "generators",
    "grants",
    "idempotency",
    "jobs",
    "keys",
    "ledger",
    "memories",
    "metadata",
    "releases",
]

metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite drops the offset on storage)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


ID = String(40)

keys = Table(
    "keys",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", ID, nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

datasets = Table(
    "datasets",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", ID, nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("columns", JSON, nullable=False),
    Column("n_records", BigInteger, nullable=False),
    Column("records", LargeBinary, nullable=False),
    Column("budget_epsilon", Float, nullable=False),
    Column("budget_delta", Float, nullable=False),
    Column("accountant", String(16), nullable=False),
    Column("neighbouring", String(16), nullable=False),
    Column("size_bound", BigInteger, nullable=False),
    Column("created_by", ID, ForeignKey("keys.id"), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # Running sums of the ledger rule (certificates note (27)); changed only under a row lock.
    Column("spent_pure_epsilon", Float, nullable=False),
    Column("spent_zcdp_rho", Float, nullable=False),
    Column("spent_delta", Float, nullable=False),
    Column("release_count", Integer, nullable=False),
)

grants = Table(
    "grants",
    metadata,
    Column("dataset_id", ID, ForeignKey("datasets.id"), primary_key=True),
    Column("key_id", ID, ForeignKey("keys.id"), primary_key=True),
    Column("epsilon_cap", Float, nullable=True),
    Column("delta_cap", Float, nullable=True),
    Column("spent_epsilon", Float, nullable=False),
    Column("spent_delta", Float, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

ledger = Table(
    "ledger",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("release_id", ID, nullable=False, unique=True),
    Column("dataset_id", ID, ForeignKey("datasets.id"), nullable=False),
    Column("key_id", ID, ForeignKey("keys.id"), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("utility", JSON, nullable=False),
    Column("method", String(16), nullable=False),
    Column("charged_epsilon", Float, nullable=False),
    Column("charged_delta", Float, nullable=False),
    Column("charged_pure_epsilon", Float, nullable=False),
    Column("charged_zcdp_rho", Float, nullable=False),
    Column("certificate", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("runner", String(200), nullable=False),
    Column("heartbeat_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Index("ix_ledger_dataset_seq", "dataset_id", "seq"),
    Index("ix_ledger_status", "status"),
)

releases = Table(
    "releases",
    metadata,
    Column("id", ID, ForeignKey("ledger.release_id"), primary_key=True),
    Column("body", JSON, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", ID, nullable=False, unique=True),
    Column("key_id", ID, ForeignKey("keys.id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("progress", Float, nullable=False),
    Column("result", JSON, nullable=True),
    Column("error", JSON, nullable=True),
    Column("cancel_requested", Boolean, nullable=False),
    Column("release_id", ID, nullable=True),
    Column("runner", String(200), nullable=False),
    Column("heartbeat_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("work", JSON, nullable=True),  # the public work estimate (service.cost)
    Index("ix_jobs_status", "status"),
)

idempotency = Table(
    "idempotency",
    metadata,
    Column("key_id", ID, ForeignKey("keys.id"), primary_key=True),
    Column("idempotency_key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("response", JSON, nullable=True),
    Column("release_id", ID, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

memories = Table(
    "memories",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", ID, nullable=False, unique=True),
    Column("key_id", ID, ForeignKey("keys.id"), nullable=False),
    Column("blur", Float, nullable=False),
    Column("beta", Float, nullable=False),
    Column("n_patterns", Integer, nullable=False),
    Column("dim", Integer, nullable=False),
    # Public point clouds: [{"points": [[...]], "weights": [...] | null}, ...]
    Column("patterns", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

generators = Table(
    "generators",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", ID, nullable=False, unique=True),
    Column("key_id", ID, ForeignKey("keys.id"), nullable=False),
    Column("n_points", Integer, nullable=False),
    Column("dim", Integer, nullable=False),
    Column("epsilon", Float, nullable=False),
    Column("method", String(16), nullable=False),
    Column("source", String(16), nullable=False),
    Column("fit", JSON, nullable=False),
    Column("provenance", JSON, nullable=False),
    # dp_core.generators.Generator.to_dict(compact=True): heights, public points, weights
    Column("state", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)
