"""What a cycle's separate tasks add up to: the facts they leave behind and the status."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reconciler.core.model import CycleStatus

__all__ = ["CycleFacts", "cycle_status", "last"]


@dataclass
class CycleFacts:
    """What the record step learns from the run's earlier tasks (their XComs)."""

    started_at: datetime
    route: dict[str, Any] | None = None
    initial_drift: dict[str, Any] | None = None
    desired_version: str = ""
    verifies: list[dict[str, Any] | None] = field(default_factory=list)
    stops: list[dict[str, Any] | None] = field(default_factory=list)
    plan_hashes: list[str] = field(default_factory=list)
    approval_rejected: bool = False
    failed_tasks: bool = False
    dry_run: bool = False
    invalid: str | None = None
    note: dict[str, Any] | None = None  # a step's word on why the cycle stopped early
    trigger: str = "manual"
    interval_start: datetime | None = None
    flapping: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # an approved plan the fleet outran

    @property
    def acted(self) -> bool:
        return bool(self.plan_hashes) and not self.dry_run


def cycle_status(
    facts: CycleFacts, forward: list[dict[str, Any]]
) -> tuple[CycleStatus, str | None]:
    """The cycle's status from what its tasks left behind, most decisive first."""
    if facts.invalid:
        return "invalid_input", facts.invalid
    if facts.note:
        return facts.note["status"], facts.note.get("reason")
    if facts.route and facts.route["route"] in ("record", "report"):
        reason = facts.route.get("reason", "reported")
        return (reason if reason in ("in_sync", "breaker_open", "window_closed") else "reported",
                None)
    failed = [r for r in forward if r["state"] == "failed"]
    if failed:
        return "failed", f"{failed[0]['action_id']}: {failed[0].get('error')}"
    if facts.stale:
        return "needs_approval", "the approved plan went stale: " + "; ".join(facts.stale[:3])
    if facts.approval_rejected:
        return "needs_approval", "plan rejected or approval timed out; nothing applied"
    verdict = _verified(last(facts.verifies))
    if verdict:
        return verdict
    stop = last(facts.stops)
    if stop and stop.get("status"):
        return stop["status"], stop.get("reason")
    if facts.failed_tasks:
        return "failed", "a task of this cycle failed"
    return "max_iterations", "not converged within the passes of this cycle"


def _verified(final: dict[str, Any] | None) -> tuple[CycleStatus, str | None] | None:
    """What the last verify said, if it was decisive."""
    if not final:
        return None
    if final.get("settled"):
        return "converged", None
    if final.get("deadline"):
        return "deadline", "the cycle deadline passed before the fleet settled"
    if final.get("only_conflicts"):  # not a failure: reported and left alone
        return "blocked", (f"{final['only_conflicts']} conflict(s): desired names held by "
                           "resources this target does not own (set policy.adopt to take "
                           "them over)")
    return None


def last(items: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    present = [i for i in items if i]
    return present[-1] if present else None
