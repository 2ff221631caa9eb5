"""The store's schema migrations (Alembic): `upgrade` brings a store to the newest schema.

Versions live in versions/; the applied one is in a version table of our own so the store can
share a PostgreSQL database with Airflow's (whose table is alembic_version).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

__all__ = ["VERSION_TABLE", "current_revision", "head_revision", "upgrade"]

VERSION_TABLE = "reconciler_alembic_version"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the store has migrations"
    return head


def current_revision(connection: Connection) -> str | None:
    """The store's schema version, None for a store made before migrations (or empty)."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(connection: Connection) -> None:
    """Upgrade to the newest schema in the caller's transaction (which serialises openers)."""
    if current_revision(connection) != head_revision():
        command.upgrade(_config(connection), "head")
