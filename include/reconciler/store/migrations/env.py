"""Alembic environment for the store: runs on the connection (and transaction) the store opened."""

from __future__ import annotations

from alembic import context

from reconciler.store.migrations import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the store's migrations run through "
                       "reconciler.store.migrations.upgrade(conn), "
                       "which passes the connection; opening the store runs them")
context.configure(connection=connection, version_table=VERSION_TABLE)
with context.begin_transaction():  # joins the caller's transaction when one is open
    context.run_migrations()
