"""Rollback points: which the plan names (policy ``rollback``), which one a failure returns
to, and what must be undone to get there. Both drivers' rollbacks take them from here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.core.model import Action, Plan
from reconciler.core.policy import Policy

__all__ = ["rollback_points", "restore_point", "to_undo"]


def rollback_points(waves: int, policy: Policy) -> tuple[int, ...]:
    """Point ``p`` is the fleet before wave ``p``: one before every wave (``rollback: wave``),
    or only before the first (``rollback: plan``: a failure undoes every wave of the pass)."""
    if not waves:
        return ()
    return tuple(range(waves)) if policy.rollback == "wave" else (0,)


def restore_point(plan: Plan, failed_wave: int) -> int:
    """The latest point the plan names at or before the failed wave."""
    return max((p for p in plan.rollback_points if p <= failed_wave), default=0)


def to_undo(plan: Plan, point: int, failed_wave: int,
            succeeded: Mapping[str, Any]) -> list[Action]:
    """The forward actions of waves ``point`` .. ``failed_wave`` that succeeded, newest first.
    ``succeeded`` maps each succeeded action's id to when it finished (any sortable value)."""
    done = [a for w in plan.waves[point:failed_wave + 1] for a in w.actions if a.id in succeeded]
    return sorted(done, key=lambda a: succeeded[a.id], reverse=True)
