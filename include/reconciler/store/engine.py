"""The store's SQLAlchemy engines: SQLite set up to be shared by many processes, or PostgreSQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import StaticPool

from reconciler.sqlite_wal import enable_wal

__all__ = ["configure_sqlite", "make_engine", "writer"]

_BUSY_TIMEOUT_S = 30.0
_SQLITE_BEGIN = "reconciler_sqlite_begin"


def writer(engine: Engine) -> Engine:
    """The engine for read-then-write transactions: on SQLite they BEGIN IMMEDIATE."""
    return engine.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    """WAL + busy timeout so processes share the file; BEGIN is ours (pysqlite's is lazy)."""
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}")
    enable_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock up front: a deferred read-then-write would fail
    # with SQLITE_BUSY instead of waiting, and could act on a stale read.
    conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get(_SQLITE_BEGIN, '')}")


def configure_sqlite(engine: Engine) -> None:
    for name, listener in (("connect", _sqlite_connect), ("begin", _sqlite_begin)):
        if not event.contains(engine, name, listener):
            event.listen(engine, name, listener)


def make_engine(url: URL) -> Engine:
    if url.get_backend_name() == "postgresql":
        return sa.create_engine(url, pool_pre_ping=True)
    if url.get_backend_name() != "sqlite":
        raise ValueError(f"store must be sqlite or postgresql, not {url.get_backend_name()!r}")
    memory = url.database in (None, "", ":memory:")
    return sa.create_engine(
        url, connect_args={"check_same_thread": False, "timeout": _BUSY_TIMEOUT_S},
        # An in-memory database lives in one connection; share it (single-process tests only).
        **({"poolclass": StaticPool} if memory else {}),
    )
