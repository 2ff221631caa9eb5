"""The fields an update means to change: named by the plan, the only ones a provider sends.

``Action.params["fields"]`` lists, sorted, each a top-level spec field set whole
(``max_size``, ``containers``) or ``field.key`` for one key of a map field set or removed
alone (``tags.env``). Whatever is not named — ignored, suppressed or unchanged fields — is
left as the resource has it, so fixing ``max_size`` never resets an autoscaler's
``desired_capacity`` (Terraform's ``ignore_changes``, Argo CD's ignoreDifferences).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.model import Action

__all__ = ["FieldSet", "EVERYTHING", "update_fields", "fields_of", "merged", "masked"]

PSEUDO_PREFIX = "@"  # "@owned", "@protected": changes of the record, not of the spec


@dataclass(frozen=True)
class FieldSet:
    """``params["fields"]`` read back: fields set whole, and map keys set one by one."""

    whole: frozenset[str] = frozenset()
    keys: Mapping[str, frozenset[str]] = field(default_factory=dict)
    everything: bool = False  # a create, or an old plan's undo: the whole spec

    @classmethod
    def of(cls, entries: Iterable[str]) -> FieldSet:
        whole: set[str] = set()
        keys: dict[str, set[str]] = {}
        for entry in entries:
            top, sep, key = entry.partition(".")
            if sep:
                keys.setdefault(top, set()).add(key)
            else:
                whole.add(top)
        return cls(frozenset(whole), {t: frozenset(k) for t, k in keys.items() if t not in whole})

    def touches(self, top: str) -> bool:
        """Whether the top-level field ``top``, or any key of it, is to be changed."""
        return self.everything or top in self.whole or top in self.keys

    def keys_of(self, top: str) -> frozenset[str] | None:
        """The keys of map field ``top`` to change; None: the whole map (every key)."""
        if self.everything or top in self.whole:
            return None
        return self.keys.get(top, frozenset())


EVERYTHING = FieldSet(everything=True)


def update_fields(
    paths: Iterable[str], desired: Mapping[str, Any], observed: Mapping[str, Any]
) -> tuple[str, ...]:
    """The sorted ``params["fields"]`` of changes at ``paths`` (pseudo-paths left out)."""
    return tuple(sorted({_field_of(p, desired, observed) for p in paths
                         if not p.startswith(PSEUDO_PREFIX)}))


def _field_of(path: str, desired: Mapping[str, Any], observed: Mapping[str, Any]) -> str:
    top, sep, rest = path.partition(".")
    maps = [v for v in (desired.get(top), observed.get(top)) if isinstance(v, Mapping)]
    if not sep or not maps:
        return top  # a scalar or a list (named lists included) is sent whole
    keys = {str(k) for m in maps for k in m}
    if rest in keys:
        return f"{top}.{rest}"
    # a key may hold dots itself ("app.kubernetes.io/name"): the longest key that prefixes it
    prefixes = [k for k in keys if rest.startswith(f"{k}.")]
    return f"{top}.{max(prefixes, key=len, default=rest)}"


def fields_of(action: Action) -> FieldSet:
    """What an action may change. A create sets everything.

    An update from a plan made before ``fields`` existed falls back to its ``changes``, which
    never held ignored or suppressed paths; an old undo has neither and restores its whole spec,
    as it always did.
    """
    params = action.params
    if action.type != "update":
        return EVERYTHING
    if "fields" in params:
        return FieldSet.of(params["fields"])
    if "changes" in params:
        spec = params.get("spec")
        paths = [str(c.get("path", "")) for c in params["changes"]]
        return FieldSet.of(update_fields(paths, spec if isinstance(spec, Mapping) else {}, {}))
    return EVERYTHING


def merged(stored: Mapping[str, Any], spec: Mapping[str, Any], fields: FieldSet) -> dict[str, Any]:
    """``stored`` with only the named fields (and map keys) taken from ``spec``.

    A named field or key that ``spec`` lacks is removed: that is how an undo restores a field
    the update added.
    """
    if fields.everything:
        return dict(spec)
    out = dict(stored)
    for top in fields.whole:
        if top in spec:
            out[top] = spec[top]
        else:
            out.pop(top, None)
    for top, keys in fields.keys.items():
        want, have = spec.get(top), out.get(top)
        values = dict(have) if isinstance(have, Mapping) else {}
        for key in keys:
            if isinstance(want, Mapping) and key in want:
                values[key] = want[key]
            else:
                values.pop(key, None)
        out[top] = values
    return out


def masked(desired: Mapping[str, Any], observed: Mapping[str, Any],
           left_alone: Callable[[str], bool]) -> dict[str, Any]:
    """``desired`` with the observed value at every path ``left_alone`` says to leave alone.

    A second line of defence at the top level (a provider that sent the whole spec would send
    back what the resource has), and the only one inside a field sent whole: an ignored
    ``containers.*.image`` keeps its live image when the container list is sent for its cpu.
    Paths are walked as compare walks them: map keys, list items matched by ``name``.
    """
    return {k: _masked(v, observed.get(k, _MISSING), k, left_alone) for k, v in desired.items()}


_MISSING: Any = object()


def _masked(want: Any, have: Any, path: str, left_alone: Callable[[str], bool]) -> Any:
    if have is _MISSING:
        return want
    if left_alone(path):
        return have
    if isinstance(want, Mapping) and isinstance(have, Mapping):
        out = {k: _masked(v, have.get(k, _MISSING), f"{path}.{k}", left_alone)
               for k, v in want.items()}
        # a key only the resource has is drift, unless it is left alone: then it stays
        out.update({k: v for k, v in have.items() if k not in want and left_alone(f"{path}.{k}")})
        return out
    if _named(want) and _named(have) and [i["name"] for i in want] == [i["name"] for i in have]:
        live = {item["name"]: item for item in have}
        return [_masked(i, live[i["name"]], f"{path}.{i['name']}", left_alone) for i in want]
    return want


def _named(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, Mapping) and "name" in i for i in value)
