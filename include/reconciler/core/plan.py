"""Diff to plan: actions with preconditions, risk and inverses, ordered into validated waves."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reconciler.core.compare import ignore_patterns
from reconciler.core.fidelity import degraded
from reconciler.core.fields import masked, update_fields
from reconciler.core.gcpause import without_gc
from reconciler.core.graph import layer
from reconciler.core.kinds import (
    DEFAULT_RULES,
    KindRegistry,
    KindRules,
    field_matches,
    region_of,
    scope_label,
)
from reconciler.core.model import (
    Action,
    ActionType,
    BlockedChange,
    Degradation,
    DesiredResource,
    Diff,
    Modification,
    ObservedResource,
    Plan,
    PlanAudit,
    Precondition,
    ResourceKey,
    Risk,
    Snapshot,
    Wave,
    content_hash,
)
from reconciler.core.planhash import plan_hash
from reconciler.core.planorder import action_id, dependencies, waves_of
from reconciler.core.planreview import (
    CONFLICT,
    check_preconditions,
    only_conflicts,
    spec_hash,
    validate,
)
from reconciler.core.policy import Policy
from reconciler.core.rollback import rollback_points

__all__ = ["PlanContext", "make_plan", "action_id", "spec_hash", "check_preconditions",
           "CONFLICT", "only_conflicts"]

_RISK_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2}
PROTECTED_ORPHAN = ("protected-orphaned: removed from the desired state but protected; kept. "
                    "To delete it, apply protected: false first, then remove it")


@dataclass(frozen=True)
class PlanContext:
    """Everything a plan depends on besides the diff; all plain data."""

    target: str
    correlation_id: str
    desired_version: str
    policy: Policy
    rules: KindRegistry
    now: datetime
    estimates: Mapping[tuple[str, str], float] = field(default_factory=dict)
    allow_deletions: bool = True  # False when the quality gate failed


@without_gc
def make_plan(diff: Diff, snapshot: Snapshot, ctx: PlanContext) -> Plan:
    """Turn a diff into an ordered plan. Pure: same inputs, same plan and hash."""
    blocked = [BlockedChange(key=k, change="delete", reason=PROTECTED_ORPHAN)
               for k in diff.protected_orphans]
    blocked += [BlockedChange(key=k, change="create", reason=CONFLICT) for k in diff.conflicts]
    degradation = degraded(snapshot, ctx.policy)
    applies = _apply_actions(diff, snapshot, ctx, blocked)
    deletes = _delete_actions(diff.deletions, snapshot, ctx, blocked, degradation)
    deps = dependencies(applies, deletes, diff, ctx.rules)
    levels, cycle = layer(list(applies) + list(deletes), deps)
    actions = {**applies, **deletes}
    waves = waves_of(actions, levels, deps)
    errors = [f"dependency cycle: {' -> '.join(cycle)}"] if cycle else []
    validation = validate(waves, snapshot, ctx.policy, errors)
    parallel = degradation.max_parallel or ctx.policy.max_parallel
    audit = _audit(waves, blocked, snapshot, ctx, parallel)
    return Plan(
        target=ctx.target,
        correlation_id=ctx.correlation_id,
        desired_version=ctx.desired_version,
        waves=waves,
        rollback_points=rollback_points(len(waves), ctx.policy),
        validation=validation,
        audit=audit,
        hash=plan_hash(ctx.target, ctx.desired_version, waves, validation),
        degradation=degradation,
    )



def _apply_actions(
    diff: Diff, snapshot: Snapshot, ctx: PlanContext, blocked: list[BlockedChange]
) -> dict[str, Action]:
    out: dict[str, Action] = {}
    for want in diff.additions:
        if _too_incomplete(want.key.kind, snapshot, ctx.policy, blocked, want.key, "create"):
            continue
        act = _create(want, ctx)
        out[act.id] = act
    for mod in diff.modifications:
        if _too_incomplete(mod.key.kind, snapshot, ctx.policy, blocked, mod.key, "update"):
            continue
        act = _update(mod, ctx, diff.suppressed)
        out[act.id] = act
    return out


def _too_incomplete(
    kind: str,
    snapshot: Snapshot,
    policy: Policy,
    blocked: list[BlockedChange],
    key: ResourceKey,
    change: ActionType,
) -> bool:
    status = snapshot.kinds.get(kind)
    completeness = status.completeness if status else 0.0
    if completeness >= policy.completeness_threshold:
        return False
    reason = f"{kind} observed {completeness:.0%} < threshold {policy.completeness_threshold:.0%}"
    blocked.append(BlockedChange(key=key, change=change, reason=reason))
    return True


def _rules(ctx: PlanContext, kind: str) -> KindRules:
    return ctx.rules.get(kind) or DEFAULT_RULES(kind)


def _estimate(ctx: PlanContext, kind: str, type_: ActionType) -> float:
    est = ctx.estimates.get((kind, type_))
    return round(est, 3) if est is not None else _rules(ctx, kind).duration(type_)


def _token(ctx: PlanContext, type_: str, key: ResourceKey, digest: str) -> str:
    """Deterministic per (target, change, resource, spec): a retry or re-run reuses it."""
    return content_hash([ctx.target, type_, key.kind, key.name, digest], 32)


def _create(want: DesiredResource, ctx: PlanContext) -> Action:
    key, digest = want.key, spec_hash(want.spec)
    undo = Action(
        id=action_id("delete", key) + "#undo",
        type="delete",
        target=key,
        idempotency_token=_token(ctx, "delete", key, digest),
        risk="high",
        reversible=False,
        estimated_duration_s=_estimate(ctx, key.kind, "delete"),
    )
    return Action(
        id=action_id("create", key),
        type="create",
        target=key,
        params={"spec": want.spec, "protected": want.protected},
        preconditions=(Precondition(check="absent", key=key),),
        estimated_duration_s=_estimate(ctx, key.kind, "create"),
        risk="low",
        reversible=True,
        inverse=undo,
        idempotency_token=_token(ctx, "create", key, digest),
    )


def _update(mod: Modification, ctx: PlanContext, suppressed: tuple[str, ...]) -> Action:
    """Names the fields to change (``params["fields"]``, see core.fields); the undo names the same.

    ``params["spec"]`` stays whole (providers validate it and find the resource by it), but
    holds the observed value at every ignored or suppressed path.
    """
    key, before = mod.key, mod.observed.spec
    fields = list(update_fields([c.path for c in mod.changes], mod.desired.spec, before))
    after = _left_alone(mod, ctx, fields, suppressed)
    h_before, h_after = spec_hash(before), spec_hash(after)
    paths = [c.path for c in mod.changes]
    restore = {k: before[k] for k in after if k in before}
    undo = Action(
        id=action_id("update", key) + "#undo",
        type="update",
        target=key,
        params={"spec": restore, "protected": mod.observed.protected, "fields": fields},
        preconditions=(Precondition(check="matches", key=key, spec_hash=h_after),),
        idempotency_token=_token(ctx, "undo", key, h_before),
        estimated_duration_s=_estimate(ctx, key.kind, "update"),
    )
    return Action(
        id=action_id("update", key),
        type="update",
        target=key,
        params={
            "spec": after,
            "protected": mod.desired.protected,
            "adopt": not mod.observed.managed,
            "changes": [c.model_dump(mode="json") for c in mod.changes],
            "fields": fields,
        },
        preconditions=(Precondition(check="matches", key=key, spec_hash=h_before),),
        estimated_duration_s=_estimate(ctx, key.kind, "update"),
        risk=_rules(ctx, key.kind).update_risk(paths),
        reversible=True,
        inverse=undo,
        idempotency_token=_token(ctx, "update", key, h_after),
    )


def _left_alone(mod: Modification, ctx: PlanContext, fields: list[str],
                suppressed: tuple[str, ...]) -> dict[str, Any]:
    """The desired spec with the observed value at every ignored or suppressed path."""
    ignore = ignore_patterns(mod.desired, ctx.policy)
    prefix = f"{mod.key}:"
    fought = {s[len(prefix):] for s in suppressed if s.startswith(prefix)}
    if not ignore and not fought:
        return mod.desired.spec

    def left_alone(path: str) -> bool:
        if any(f == path or f.startswith(f"{path}.") for f in fields):
            return False  # the plan sets it (or a key of it)
        return path in fought or field_matches(path, ignore)

    return masked(mod.desired.spec, mod.observed.spec, left_alone)


def _delete_actions(
    extras: Iterable[ObservedResource],
    snapshot: Snapshot,
    ctx: PlanContext,
    blocked: list[BlockedChange],
    degradation: Degradation,
) -> dict[str, Action]:
    out: dict[str, Action] = {}
    for have in extras:
        reason = _deletion_blocker(have, snapshot, ctx, degradation)
        if reason:
            blocked.append(BlockedChange(key=have.key, change="delete", reason=reason))
            continue
        digest = spec_hash(have.spec)
        act = Action(
            id=action_id("delete", have.key),
            type="delete",
            target=have.key,
            preconditions=(Precondition(check="matches", key=have.key, spec_hash=digest),),
            estimated_duration_s=_estimate(ctx, have.key.kind, "delete"),
            risk="high",
            reversible=False,
            idempotency_token=_token(ctx, "delete", have.key, digest),
        )
        out[act.id] = act
    return out


def _deletion_blocker(have: ObservedResource, snapshot: Snapshot, ctx: PlanContext,
                      degradation: Degradation) -> str | None:
    if not have.managed:
        return "not owned by this target"
    if have.protected:
        return "protected (set protected: false first, then remove it)"
    if not snapshot.is_complete(have.key.kind):
        status = snapshot.kinds.get(have.key.kind)
        seen = status.completeness if status else 0.0
        return f"{have.key.kind} not fully observed ({seen:.0%}); never delete the unobserved"
    if not degradation.allow_deletions:
        return "observation degraded: " + "; ".join(degradation.reasons)
    if not ctx.allow_deletions:
        return "quality gate failed; deletions are blocked"
    return _region_blind(have.key.kind, snapshot)


def _region_blind(kind: str, snapshot: Snapshot) -> str | None:
    """A region (of an account) any of whose kinds was not fully observed gets no deletions
    (its listing may be failing as a whole: an outage, a role that cannot be assumed); other
    regions' and accounts' deletions go ahead."""
    region = region_of(kind)
    blind = sorted(k for k in snapshot.kinds
                   if region_of(k) == region and not snapshot.is_complete(k))
    if not blind:
        return None
    return f"{', '.join(blind)} not fully observed: no deletions in {scope_label(region)}"


def _audit(
    waves: tuple[Wave, ...], blocked: list[BlockedChange], snapshot: Snapshot, ctx: PlanContext,
    parallel: int,
) -> PlanAudit:
    counts: dict[str, int] = {"create": 0, "update": 0, "delete": 0, "blocked": len(blocked)}
    max_risk: Risk = "low"
    duration = 0.0
    for wave in waves:
        for act in wave.actions:
            counts[act.type] += 1
            if _RISK_RANK[act.risk] > _RISK_RANK[max_risk]:
                max_risk = act.risk
        longest = max((a.estimated_duration_s for a in wave.actions), default=0.0)
        duration += longest * math.ceil(len(wave.actions) / parallel)
    return PlanAudit(
        created_at=ctx.now,
        target=ctx.target,
        correlation_id=ctx.correlation_id,
        desired_version=ctx.desired_version,
        snapshot_captured_at=snapshot.captured_at,
        counts=counts,
        blocked=tuple(blocked),
        estimated_duration_s=round(duration, 3),
        max_risk=max_risk,
    )


