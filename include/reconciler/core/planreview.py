"""What a plan is judged by: its validation (refused deletions, what needs approval), the
preconditions a fresh snapshot must still meet, and whether only conflicts are left undone."""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.core.model import Plan, PlanValidation, Snapshot, Wave, content_hash
from reconciler.core.policy import Policy

__all__ = ["CONFLICT", "check_preconditions", "only_conflicts", "spec_hash", "validate"]

CONFLICT = ("conflict: the name is held by a resource this target does not own; left alone "
            "(set policy.adopt to take it over, or rename the desired resource)")


def spec_hash(spec: Mapping[str, object]) -> str:
    return content_hash(spec)


def validate(
    waves: tuple[Wave, ...], snapshot: Snapshot, policy: Policy, errors: list[str]
) -> PlanValidation:
    observed = {(r.key.kind, r.key.name): r for r in snapshot.resources}
    deletions = [a for w in waves for a in w.actions if a.type == "delete"]
    for act in deletions:
        have = observed.get((act.target.kind, act.target.name))
        if have is not None and (have.protected or not have.managed):
            errors.append(f"refusing to delete protected or unowned {act.target}")
    reasons = []
    managed = sum(1 for r in snapshot.resources if r.managed)
    if deletions and len(deletions) > policy.max_delete_fraction * managed:
        reasons.append(
            f"deletes {len(deletions)} of {managed} managed resources "
            f"(> max_delete_fraction {policy.max_delete_fraction:.0%})"
        )
    risky = [a for w in waves for a in w.actions if not a.reversible and a.risk == "high"]
    if policy.approve_irreversible and risky:
        reasons.append(f"{len(risky)} irreversible high-risk actions")
    return PlanValidation(
        ok=not errors,
        errors=tuple(errors),
        needs_approval=bool(reasons),
        approval_reasons=tuple(reasons),
    )


def check_preconditions(plan: Plan, snapshot: Snapshot) -> list[str]:
    """Preconditions that no longer hold on a fresh snapshot (a stale plan is refused)."""
    observed = {(r.key.kind, r.key.name): r for r in snapshot.resources}
    failures = []
    for act in plan.actions:
        for pre in act.preconditions:
            have = observed.get((pre.key.kind, pre.key.name))
            if pre.check == "absent" and have is not None:
                failures.append(f"{act.id}: {pre.key} exists now")
            elif pre.check in ("present", "matches") and have is None:
                failures.append(f"{act.id}: {pre.key} is gone")
            elif pre.check == "matches" and have and spec_hash(have.spec) != pre.spec_hash:
                failures.append(f"{act.id}: {pre.key} changed since the plan was made")
    return failures


def only_conflicts(plan: Plan) -> bool:
    """Whether all a plan leaves undone is conflicts: blocked, but not a failure."""
    return plan.is_empty and bool(plan.audit.blocked) and all(
        b.reason == CONFLICT for b in plan.audit.blocked)
