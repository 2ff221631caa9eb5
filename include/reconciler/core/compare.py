"""Desired versus observed: a keyed O(n) diff with field-level changes, then drift and urgency."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.core.gcpause import without_gc
from reconciler.core.kinds import DEFAULT_RULES, KindRegistry, KindRules, field_matches
from reconciler.core.model import (
    URGENCY_RANK,
    DesiredResource,
    Diff,
    Drift,
    FieldChange,
    KindCoverage,
    Modification,
    ObservedResource,
    ResourceKey,
    Snapshot,
)
from reconciler.core.policy import Policy

__all__ = ["compare", "diff_spec", "drift_of", "ignore_patterns", "coverage", "URGENCY_WEIGHT",
           "OWNERSHIP_FIELD", "PROTECTION_FIELD", "UNMANAGED_LISTED"]

OWNERSHIP_FIELD = "@owned"  # the pseudo-field an adoption changes (policy.adopt)
PROTECTION_FIELD = "@protected"  # un-protecting is step one of deleting a protected resource

UNMANAGED_LISTED = 1000  # unmanaged keys a diff lists; its coverage counts every one

URGENCY_WEIGHT: dict[str, float] = {"none": 0.0, "low": 1.0, "high": 3.0, "critical": 10.0}

# (change class, sla tier) -> urgency; see DESIGN.md "compare".
_URGENCY: dict[tuple[str, str], str] = {
    ("capacity", "critical"): "critical",
    ("capacity", "standard"): "high",
    ("capacity", "best_effort"): "low",
    ("config", "critical"): "high",
    ("config", "standard"): "high",
    ("config", "best_effort"): "low",
}


@without_gc
def compare(
    desired: Iterable[DesiredResource],
    snapshot: Snapshot,
    *,
    rules: KindRegistry,
    policy: Policy,
    kinds: Iterable[str] | None = None,
    suppress: frozenset[str] = frozenset(),
) -> tuple[Diff, Drift]:
    """Diff the desired resources against the snapshot and score the drift.

    Only managed resources can be modified or deleted; an unmanaged resource with a desired
    name is a conflict and is never touched, unless ``policy.adopt`` says to take ownership
    of it (an update with ``params["adopt"]``). Only kinds in ``kinds`` (default: every kind
    observed) are compared. Field changes named in ``suppress`` (``kind/name:path``, see
    core.oscillation) are neither drift nor acted on; they are listed in ``Diff.suppressed``.
    """
    scope = set(kinds) if kinds is not None else set(snapshot.kinds)
    observed = {(r.key.kind, r.key.name): r for r in snapshot.resources if r.key.kind in scope}
    covered = coverage(observed.values(), policy, scope & snapshot.kinds.keys())
    additions: list[DesiredResource] = []
    modifications: list[Modification] = []
    conflicts = []
    in_flight = set(snapshot.in_flight)
    waiting: list[ResourceKey] = []
    suppressed: list[str] = []
    unchanged = 0
    for want in desired:
        if want.key.kind not in scope:
            continue
        have = observed.pop((want.key.kind, want.key.name), None)
        if have is None and want.key in in_flight:
            waiting.append(want.key)  # created, not listed yet: a second create would duplicate
        elif have is None:
            additions.append(want)
        elif not have.managed and not policy.adopt:
            conflicts.append(want.key)
        else:
            changes = diff_spec(want.spec, have.spec, ignore_patterns(want, policy),
                                _slack(want, policy))
            if not have.managed:  # adopt: taking ownership is itself a change
                changes.append(FieldChange(path=OWNERSHIP_FIELD, before=False, after=True))
            if want.protected != have.protected:
                changes.append(FieldChange(path=PROTECTION_FIELD, before=have.protected,
                                           after=want.protected))
            if suppress and changes:
                changes = _unsuppressed(str(want.key), changes, suppress, suppressed)
            if changes:
                modifications.append(
                    Modification(key=want.key, changes=tuple(changes), desired=want, observed=have)
                )
            else:
                unchanged += 1
    extras = sorted((r for r in observed.values() if r.managed),
                    key=lambda r: (r.key.kind, r.key.name))
    deletions = [r for r in extras if not r.protected]
    unmanaged = sorted((r.key for r in observed.values() if _unmanaged(r, policy)),
                       key=lambda k: (k.kind, k.name))[:UNMANAGED_LISTED]
    diff = Diff.model_construct(
        additions=tuple(additions),
        modifications=tuple(modifications),
        deletions=tuple(deletions),
        unchanged=unchanged,
        conflicts=tuple(conflicts),
        suppressed=tuple(suppressed),
        protected_orphans=tuple(r.key for r in extras if r.protected),
        in_flight=tuple(waiting),
        unmanaged=tuple(unmanaged),
        coverage=covered,
    )
    return diff, drift_of(diff, rules)


def coverage(observed: Iterable[ObservedResource], policy: Policy,
             kinds: Iterable[str] = ()) -> dict[str, KindCoverage]:
    """Per kind (every one of ``kinds``, and each observed): resources this target owns, those
    no target owns, and those of them ``policy.unmanaged_ignore`` hides. Resources another
    target owns count in neither. An unowned resource with a desired name (a conflict, or one
    being adopted) is unmanaged too: it is not managed yet."""
    counts: dict[str, list[int]] = {kind: [0, 0, 0] for kind in kinds}
    ignore = policy.unmanaged_ignore
    for r in observed:
        row = counts.setdefault(r.key.kind, [0, 0, 0])
        if r.managed:
            row[0] += 1
        elif r.foreign_owner is None:
            row[2 if ignore.ignores(r.key.kind, r.key.name, r.spec) else 1] += 1
    return {kind: KindCoverage.model_construct(managed=m, unmanaged=u, ignored=i)
            for kind, (m, u, i) in sorted(counts.items())}


def _unmanaged(r: ObservedResource, policy: Policy) -> bool:
    return (not r.managed and r.foreign_owner is None
            and not policy.unmanaged_ignore.ignores(r.key.kind, r.key.name, r.spec))


def _unsuppressed(key: str, changes: list[FieldChange], suppress: frozenset[str],
                  suppressed: list[str]) -> list[FieldChange]:
    keep = []
    for change in changes:
        cid = f"{key}:{change.path}"
        if cid in suppress:
            suppressed.append(cid)
        else:
            keep.append(change)
    return keep


def ignore_patterns(want: DesiredResource, policy: Policy) -> tuple[str, ...]:
    """The field paths never compared for ``want``: its own and its kind's in the policy."""
    return want.ignore_fields + policy.ignore_fields.get(want.key.kind, ())


def _slack(want: DesiredResource, policy: Policy) -> Mapping[str, float]:
    if not want.tolerance:
        return policy.tolerance.numeric
    return {**policy.tolerance.numeric, **want.tolerance}


def diff_spec(
    desired: Mapping[str, Any],
    observed: Mapping[str, Any],
    ignore: tuple[str, ...] = (),
    slack: Mapping[str, float] | None = None,
) -> list[FieldChange]:
    """Field-level changes for the fields the desired spec declares.

    Top-level fields only the provider reports (ids, addresses) are not drift; below the top a
    declared map is owned whole, so an extra label is drift. Lists of dicts with a ``name`` are
    matched by name; other lists compare whole.
    """
    if not ignore and not slack and _subset_equal(desired, observed):
        return []
    changes: list[FieldChange] = []
    _walk(desired, observed, "", ignore, slack or {}, changes)
    return changes


def _subset_equal(desired: Mapping[str, Any], observed: Mapping[str, Any]) -> bool:
    return all(k in observed and observed[k] == v for k, v in desired.items())


_MISSING = object()


def _walk(
    want: Any, have: Any, path: str, ignore: tuple[str, ...], slack: Mapping[str, float],
    out: list[FieldChange],
) -> None:
    if path and ignore and field_matches(path, ignore):
        return
    if isinstance(want, dict) and isinstance(have, dict):
        for k, v in want.items():
            _walk(v, have.get(k, _MISSING), f"{path}.{k}" if path else k, ignore, slack, out)
        if path:  # a declared map is owned whole: keys only the fleet has are drift too
            for k in have.keys() - want.keys():
                _walk(None, have[k], f"{path}.{k}", ignore, slack, out)
        return
    if _named_list(want) and _named_list(have) and _names(want) == _names(have):
        by_name = {item["name"]: item for item in have}
        for item in want:
            _walk(item, by_name[item["name"]], f"{path}.{item['name']}", ignore, slack, out)
        return
    if want == have or _within_slack(want, have, path, slack):
        return
    out.append(FieldChange(path=path, before=None if have is _MISSING else have, after=want))


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, dict) and "name" in i for i in value)


def _names(items: list[dict[str, Any]]) -> list[Any]:
    return [i["name"] for i in items]


def _within_slack(want: Any, have: Any, path: str, slack: Mapping[str, float]) -> bool:
    tol = slack.get(path)
    numeric = (int, float)
    if tol is None or not isinstance(want, numeric) or not isinstance(have, numeric):
        return False
    return abs(float(want) - float(have)) <= tol


def drift_of(diff: Diff, rules: KindRegistry) -> Drift:
    """Weighted drift: each drifted resource counts by its urgency; the worst urgency wins."""
    urgencies: list[str] = [_urgency_missing(r) for r in diff.additions]
    urgencies += [_urgency_modified(m, rules.get(m.key.kind) or DEFAULT_RULES(m.key.kind))
                  for m in diff.modifications]
    urgencies += ["low"] * len(diff.deletions)
    urgencies += ["high"] * len(diff.conflicts)
    counts: dict[str, int] = {}
    for u in urgencies:
        counts[u] = counts.get(u, 0) + 1
    drifted = len(urgencies)
    total = drifted + diff.unchanged
    worst = max(urgencies, key=URGENCY_RANK.__getitem__, default="none")
    return Drift(
        magnitude=sum(URGENCY_WEIGHT[u] * n for u, n in counts.items()),
        fraction=round(drifted / total, 6) if total else 0.0,
        urgency=worst,
        by_urgency=counts,
        drifted=drifted,
        total=total,
    )


def _urgency_missing(want: DesiredResource) -> str:
    return _URGENCY[("capacity", want.sla)]


def _urgency_modified(mod: Modification, rules: KindRules) -> str:
    paths = [c.path for c in mod.changes]
    if all(p == PROTECTION_FIELD or field_matches(p, rules.cosmetic_fields) for p in paths):
        return "low"
    shortfall = any(
        field_matches(c.path, rules.capacity_fields) and _is_shortfall(c) for c in mod.changes
    )
    return _URGENCY[("capacity" if shortfall else "config", mod.desired.sla)]


def _is_shortfall(change: FieldChange) -> bool:
    before, after = change.before, change.after
    if isinstance(before, (int, float)) and isinstance(after, (int, float)):
        return before < after
    return after == "running" or before is None
