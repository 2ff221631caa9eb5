"""Switch a SQLite file to WAL safely when several processes open it for the first time."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

__all__ = ["enable_wal"]

ATTEMPTS = 40


def enable_wal(cursor: Any) -> None:
    """Switching a new file to WAL needs an exclusive lock that SQLite does not wait for (no
    busy handler): workers opening one new file at once got "database is locked". Retry,
    bounded; once the file is WAL the pragma is a no-op that takes no lock."""
    for attempt in range(ATTEMPTS):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == ATTEMPTS - 1:
                raise
            time.sleep(min(0.25, 0.05 * (attempt + 1)))
