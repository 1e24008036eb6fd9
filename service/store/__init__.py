"""The store: SQLAlchemy Core tables, Alembic migrations and one module per resource.

``db`` owns connections and migrations; ``keys``, ``datasets``, ``ledger``, ``jobs`` and
``idempotency`` own their tables' reads and writes; ``leases`` marks orphaned work.
"""
