"""Opening the store: from a URL, $RECONCILER_STORE_URL or the home directory's SQLite file."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from reconciler.core.errors import InvalidConfig, SourceLocation
from reconciler.home import reconciler_home
from reconciler.store.engine import make_engine
from reconciler.store.sql_store import SqlStore

__all__ = ["open_store"]

log = logging.getLogger("reconciler.store")


def _default_url() -> str:
    home = reconciler_home()
    return os.environ.get("RECONCILER_STORE_URL") or f"sqlite:///{home / 'state.db'}"


def open_store(url: str | None = None, *, create_dir: bool = True) -> SqlStore:
    """Open the store at url, $RECONCILER_STORE_URL or the home db; create or upgrade its schema.

    A SQLite file's directory is made when missing, unless ``create_dir`` is false (a URL a
    person typed: a typo must not start an empty store of its own in a new directory).
    """
    try:
        parsed = make_url(url or _default_url())
    except ArgumentError as exc:
        raise InvalidConfig([(SourceLocation("store URL"), str(exc))]) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).parent
        if create_dir:
            folder.mkdir(parents=True, exist_ok=True)
        elif not folder.is_dir():
            raise InvalidConfig([(SourceLocation(f"store URL {url}"),
                                  f"no directory {folder} (create it first: only the default "
                                  "store under $RECONCILER_HOME makes its own)")])
    try:
        engine = make_engine(parsed)
    except ValueError as exc:  # a backend other than sqlite or postgresql
        raise InvalidConfig([(SourceLocation("store URL"), str(exc))]) from None
    store = SqlStore(engine)
    log.info("state store opened: %s", parsed.render_as_string(hide_password=True))
    return store
