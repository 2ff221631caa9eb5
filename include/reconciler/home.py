"""Where Reconciler keeps local state (a module of its own so the store needs no config)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["reconciler_home"]


def reconciler_home(env: Mapping[str, str] | None = None) -> Path:
    """Where local state lives: $RECONCILER_HOME, else ``./.reconciler``."""
    home = (os.environ if env is None else env).get("RECONCILER_HOME")
    return Path(home) if home else Path.cwd() / ".reconciler"
