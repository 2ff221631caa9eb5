"""A resource's spec with its values in clear, read from the desired source at the moment a
provider must send them (a new ECS task definition revision), and kept nowhere.

Everything else in a cycle holds digests (reconciler.digests). The provider checks the values
read here against the digests of the action it runs, so a source that changed since the cycle
read it is never half-applied: the values do not match and the action waits for the next cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reconciler.core.errors import InvalidDesiredState, ReconcilerError
from reconciler.core.model import DesiredState, ResourceKey
from reconciler.digests import keep_clear

__all__ = ["ClearSource", "clear_source"]


class ClearSource:
    """Callable ``key -> spec in clear`` (None when the source does not declare it or cannot be
    read now) over a loader of the desired source."""

    def __init__(self, load: Callable[[], DesiredState]) -> None:
        self._load = load

    def __call__(self, key: ResourceKey) -> Mapping[str, Any] | None:
        try:
            with keep_clear():
                state = self._load()
        except (InvalidDesiredState, ReconcilerError, OSError):
            return None  # the caller reports it as "not the values this cycle planned"
        for resource in state.resources:
            if resource.key == key:
                return resource.spec
        return None

    def __repr__(self) -> str:
        return "ClearSource(...)"  # never the values


def clear_source(source: str, allow_empty: bool = True) -> ClearSource:
    """A ClearSource over a folder, file or ``s3://`` prefix (see reconciler.desired)."""
    from reconciler.desired import load_desired

    return ClearSource(lambda: load_desired(source, allow_empty=allow_empty))
