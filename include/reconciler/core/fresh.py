"""An update's precondition on a fresh read of its resource, just before it is sent.

A plan is made against a snapshot; a batch can wait in a pool, an approval can take hours. So
each update is checked against the resource as it is *now*: every field it means to change
must still hold the value the plan saw (or already the value it wants: a retry after a lost
response). Anything else means someone changed that field since the plan was made, and the
update is refused rather than applied over their change. Fields the update does not name
(ignored, suppressed, unchanged) may move freely: an autoscaler's ``desired_capacity`` does.

Creates and deletes need no read of their own: every provider's apply already reads, refuses a
name held by a resource it does not own, and never deletes an unowned or protected resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.core.fields import fields_of
from reconciler.core.model import Action, ObservedResource

__all__ = ["changed_since_plan"]

_MISSING: Any = object()


def changed_since_plan(action: Action, fresh: ObservedResource | None) -> str | None:
    """Why ``action`` (an update) no longer fits the resource, or None if it still does."""
    if action.type != "update" or action.id.endswith("#undo"):
        return None  # rollback restores what this cycle changed: it always runs
    if fresh is None:
        return f"{action.target} is gone since the plan was made"
    fields = fields_of(action)
    if fields.everything:
        return None  # a plan from before fields were named: nothing to check field by field
    before = action.inverse.params.get("spec", {}) if action.inverse else {}
    after = action.params.get("spec", {})
    for path, now in _values(fresh.spec, fields.whole, fields.keys):
        if now not in (_at(before, path), _at(after, path)):
            return (f"{action.target}: {'.'.join(path)} changed since the plan was made "
                    f"(planned from {_shown(_at(before, path))}, now {_shown(now)})")
    return None


def _values(spec: Mapping[str, Any], whole: frozenset[str],
            keys: Mapping[str, frozenset[str]]) -> list[tuple[tuple[str, ...], Any]]:
    paths: list[tuple[str, ...]] = [(top,) for top in sorted(whole)]
    paths += [(top, key) for top in sorted(keys) for key in sorted(keys[top])]
    return [(path, _at(spec, path)) for path in paths]


def _at(spec: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(spec, Mapping) or part not in spec:
            return _MISSING
        spec = spec[part]
    return spec


def _shown(value: Any) -> str:
    return "nothing" if value is _MISSING else repr(value)
