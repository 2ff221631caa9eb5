"""A plan and its parts: actions with preconditions, waves, validation, audit, approvals."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from reconciler.core.model.base import ActionType, Frozen, ResourceKey, Risk

__all__ = [
    "Precondition", "Action", "Wave", "BlockedChange", "PlanValidation", "PlanAudit",
    "Degradation", "Plan", "Approval",
]


class Precondition(Frozen):
    """What must hold just before an action runs, checked against a fresh observation.

    ``absent``: the resource does not exist; ``matches``: it exists and its spec still hashes
    to ``spec_hash`` (so a plan made against an older fleet is refused, not applied late).
    """

    check: Literal["absent", "matches", "present"]
    key: ResourceKey
    spec_hash: str | None = None


class Action(Frozen):
    """One step of a plan: data that can be printed, hashed, approved and replayed."""

    id: str
    type: ActionType
    target: ResourceKey
    params: dict[str, Any] = Field(default_factory=dict)
    preconditions: tuple[Precondition, ...] = ()
    depends_on: tuple[str, ...] = ()
    estimated_duration_s: float = 1.0
    risk: Risk = "low"
    reversible: bool = True
    inverse: Action | None = None
    idempotency_token: str
    wave: int = 0


class Wave(Frozen):
    """Actions that may run in parallel, after every action of the waves before."""

    index: int
    actions: tuple[Action, ...]


class BlockedChange(Frozen):
    """A change the planner refused to plan, and why (protected, not fully observed, ...)."""

    key: ResourceKey
    change: ActionType
    reason: str


class PlanValidation(Frozen):
    ok: bool = True
    errors: tuple[str, ...] = ()
    needs_approval: bool = False
    approval_reasons: tuple[str, ...] = ()


class PlanAudit(Frozen):
    """Who/what/when of a plan, stored with it so any applied change can be traced back."""

    created_at: datetime
    target: str
    correlation_id: str
    desired_version: str
    snapshot_captured_at: datetime | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    blocked: tuple[BlockedChange, ...] = ()
    estimated_duration_s: float = 0.0
    max_risk: Risk = "low"


class Degradation(Frozen):
    """What a snapshot observed under load changes in the cycle (core.fidelity.degraded):
    no reasons, no change. ``max_parallel`` None: the policy's."""

    reasons: tuple[str, ...] = ()
    max_parallel: int | None = None
    allow_deletions: bool = True
    poke_factor: float = 1.0

    @property
    def degraded(self) -> bool:
        return bool(self.reasons)


class Plan(Frozen):
    """An ordered, validated, hashable sequence of waves. ``rollback_points`` are wave indexes:
    point ``p`` is the fleet as it was before wave ``p`` ran (core.rollback)."""

    target: str
    correlation_id: str
    desired_version: str
    waves: tuple[Wave, ...]
    rollback_points: tuple[int, ...]
    validation: PlanValidation
    audit: PlanAudit
    hash: str
    degradation: Degradation = Field(default_factory=Degradation)

    @property
    def actions(self) -> tuple[Action, ...]:
        return tuple(a for w in self.waves for a in w.actions)

    @property
    def is_empty(self) -> bool:
        return not any(w.actions for w in self.waves)


class Approval(Frozen):
    """Who approved which plan (by hash), when, through which surface (cli, api, airflow), and
    the one cycle that used it: an approval is spent by the cycle that applies it."""

    target: str
    plan_hash: str
    actor: str
    surface: str
    at: datetime
    used_by: str | None = None
