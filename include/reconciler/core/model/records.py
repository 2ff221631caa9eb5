"""What happened: create attempts in flight, action results, events and a cycle's outcome."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from reconciler.core.model.base import (
    ActionState,
    ActionType,
    Fidelity,
    Frozen,
    OperationResult,
    ResourceKey,
)
from reconciler.core.model.diff import Drift

__all__ = [
    "PendingCreate", "ActionResult", "EventType", "Event", "ActuationResult", "CycleStatus",
    "Outcome",
]


class PendingCreate(Frozen):
    """One create attempt in flight: its client token, until the fleet lists the resource."""

    key: ResourceKey
    token: str
    base_token: str  # the plan's token: which spec this attempt creates
    correlation_id: str
    started_at: datetime


class ActionResult(Frozen):
    action_id: str
    key: ResourceKey
    type: ActionType
    state: ActionState
    outcome: OperationResult | None = None
    attempts: int = 0
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float = 0.0
    wave: int = 0
    rollback: bool = False
    token: str | None = None  # the client token the successful call carried (a create's attempt)


EventType = Literal[
    "action_started",
    "action_completed",
    "action_failed",
    "rollback_initiated",
    "drift_detected",
    "converged",
    "breaker_opened",
    "oscillation_detected",
    "cycle_finished",
    "action_refused",
]


class Event(Frozen):
    type: EventType
    target: str
    correlation_id: str
    at: datetime
    action_id: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class ActuationResult(Frozen):
    results: tuple[ActionResult, ...]
    rollback: tuple[ActionResult, ...] = ()
    error: str | None = None

    def count(self, state: ActionState) -> int:
        return sum(1 for r in self.results if r.state == state)

    @property
    def ok(self) -> bool:
        return self.error is None and self.count("failed") == 0


CycleStatus = Literal[
    "converged",
    "in_sync",
    "reported",
    "needs_approval",
    "failed",
    "no_progress",
    "deadline",
    "max_iterations",
    "breaker_open",
    "busy",
    "invalid_input",
    "window_closed",
    "blocked",  # what is left to do is blocked by conflicts (names held by unowned resources)
]


class Outcome(Frozen):
    """The small result of a cycle (controller-runtime's ``Result``, plus what happened)."""

    target: str
    correlation_id: str
    status: CycleStatus
    converged: bool
    started_at: datetime
    finished_at: datetime
    iterations: int = 0
    actions_succeeded: int = 0
    actions_failed: int = 0
    actions_skipped: int = 0
    initial_drift: Drift = Field(default_factory=Drift)
    final_drift: Drift = Field(default_factory=Drift)
    desired_version: str = ""
    plan_hashes: tuple[str, ...] = ()
    error: str | None = None
    requeue_after_s: float | None = None
    dry_run: bool = False
    changed_fields: tuple[str, ...] = ()  # "kind/name:path" this cycle's updates set
    flapping: tuple[str, ...] = ()  # fields left alone because something keeps reverting them
    trigger: str = "manual"  # cli | manual | scheduled | backfill | asset_triggered
    interval_start: datetime | None = None  # the Airflow data interval / logical date, if any
    fidelity: Fidelity = "full"  # the first snapshot's
    degraded: tuple[str, ...] = ()  # why it counted as observed under load (core.fidelity)

    @property
    def counts_as_failure(self) -> bool:
        """Whether the breaker should count this cycle as a failed one."""
        return self.status in ("failed", "no_progress", "deadline", "max_iterations")
