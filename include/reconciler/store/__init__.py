"""SQLAlchemy Core state store (SQLite, PostgreSQL): cycle history, audit, breakers, leases."""

from __future__ import annotations

from reconciler.store import migrations
from reconciler.store.opening import open_store
from reconciler.store.rows import AuditKind
from reconciler.store.schema import metadata
from reconciler.store.sql_store import SqlStore

__all__ = ["AuditKind", "SqlStore", "metadata", "migrations", "open_store"]
