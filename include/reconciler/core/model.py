"""Frozen pydantic models shared by every stage of a cycle, with lossless JSON round-trip."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Frozen", "Urgency", "URGENCY_RANK", "SlaTier", "Fidelity", "ActionType", "Risk",
    "ActionState", "OperationResult", "ResourceKey", "DesiredResource", "DesiredState",
    "ObservedResource", "Observation", "KindStatus", "Snapshot", "FieldChange", "Modification",
    "KindCoverage", "Diff", "Drift", "Precondition", "Action", "Wave", "BlockedChange",
    "PlanValidation", "PlanAudit", "Degradation", "Plan", "Approval", "PendingCreate",
    "ActionResult", "Event",
    "EventType", "ActuationResult", "CycleStatus", "Outcome", "canonical_json", "content_hash",
]

Urgency = Literal["none", "low", "high", "critical"]
URGENCY_RANK: dict[str, int] = {"none": 0, "low": 1, "high": 2, "critical": 3}
SlaTier = Literal["critical", "standard", "best_effort"]
Fidelity = Literal["full", "degraded", "stale"]
ActionType = Literal["create", "update", "delete"]
Risk = Literal["low", "medium", "high"]
ActionState = Literal["pending", "running", "succeeded", "failed", "skipped"]
OperationResult = Literal["unchanged", "created", "updated", "deleted"]


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the input of every hash we compute."""
    return _CANONICAL.encode(value)  # one shared encoder: json.dumps(**kw) builds one per call


def content_hash(value: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ResourceKey(Frozen):
    """Identity of a resource within a target: its kind and a name unique for that kind."""

    kind: str = Field(min_length=1)
    name: str = Field(min_length=1)

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> ResourceKey:
        kind, sep, name = text.partition("/")
        if not sep:
            raise ValueError(f"expected 'kind/name', got {text!r}")
        return cls(kind=kind, name=name)


class DesiredResource(Frozen):
    """One resource as the user declared it, with where it was declared."""

    key: ResourceKey
    spec: dict[str, Any]
    depends_on: tuple[ResourceKey, ...] = ()
    sla: SlaTier = "standard"
    protected: bool = False
    ignore_fields: tuple[str, ...] = ()
    tolerance: dict[str, float] = Field(default_factory=dict)
    source_file: str | None = None
    source_line: int | None = None


class DesiredState(Frozen):
    """The declared fleet of one target at one version."""

    resources: tuple[DesiredResource, ...]
    version: str
    source_uri: str
    loaded_at: datetime


class ObservedResource(Frozen):
    """One resource as the provider reported it."""

    key: ResourceKey
    spec: dict[str, Any]
    managed: bool = True
    protected: bool = False
    provider_id: str | None = None
    # unmanaged here but owned by this other target: not "unmanaged" in coverage (core.compare)
    foreign_owner: str | None = None


class Observation(Frozen):
    """What a provider returns for one kind: resources plus how much of the listing it got."""

    kind: str
    resources: tuple[ObservedResource, ...]
    completeness: float = Field(ge=0.0, le=1.0)
    errors: tuple[str, ...] = ()
    # load while listing (core.fidelity): throttling errors, retried calls, seconds per page
    throttled: int = Field(default=0, ge=0)
    retries: int = Field(default=0, ge=0)
    page_latency_s: float = Field(default=0.0, ge=0.0)  # mean; 0 when not measured


class KindStatus(Frozen):
    """How well one kind was observed in a snapshot."""

    kind: str
    count: int
    completeness: float = Field(ge=0.0, le=1.0)
    fidelity: Fidelity
    latency_s: float
    errors: tuple[str, ...] = ()
    stale_age_s: float | None = None
    doubted_empty: bool = False  # listed empty while the last cycle listed many: not believed
    throttled: int = 0  # the load facts of its listing (Observation), kept for core.fidelity
    retries: int = 0
    page_latency_s: float = 0.0

    @property
    def complete(self) -> bool:
        return self.completeness >= 1.0 and self.fidelity != "stale"


class Snapshot(Frozen):
    """The observed fleet at one moment, with per-kind completeness and fidelity."""

    target: str
    correlation_id: str
    captured_at: datetime
    latency_s: float
    resources: tuple[ObservedResource, ...]
    kinds: dict[str, KindStatus]
    in_flight: tuple[ResourceKey, ...] = ()  # created, not listed yet (core.inflight)

    @property
    def fidelity(self) -> Fidelity:
        levels: tuple[Fidelity, ...] = ("full", "degraded", "stale")
        worst = max((levels.index(k.fidelity) for k in self.kinds.values()), default=0)
        return levels[worst]

    @property
    def completeness(self) -> float:
        return min((k.completeness for k in self.kinds.values()), default=1.0)

    def is_complete(self, kind: str) -> bool:
        status = self.kinds.get(kind)
        return status is not None and status.complete


class FieldChange(Frozen):
    path: str
    before: Any = None
    after: Any = None


class Modification(Frozen):
    key: ResourceKey
    changes: tuple[FieldChange, ...]
    desired: DesiredResource
    observed: ObservedResource


class KindCoverage(Frozen):
    """How much of one kind in the target's scope the target owns: resources no target owns
    are ``unmanaged``, those matching ``policy.unmanaged_ignore`` are ``ignored`` (not counted)."""

    managed: int = Field(default=0, ge=0)
    unmanaged: int = Field(default=0, ge=0)
    ignored: int = Field(default=0, ge=0)

    @property
    def seen(self) -> int:
        return self.managed + self.unmanaged

    @property
    def fraction(self) -> float:
        """managed / (managed + unmanaged); 1.0 when the kind holds neither."""
        return self.managed / self.seen if self.seen else 1.0


class Diff(Frozen):
    """Desired versus observed, keyed: what to add, change and remove, and what already matches."""

    additions: tuple[DesiredResource, ...] = ()
    modifications: tuple[Modification, ...] = ()
    deletions: tuple[ObservedResource, ...] = ()
    unchanged: int = 0
    conflicts: tuple[ResourceKey, ...] = ()
    suppressed: tuple[str, ...] = ()  # "kind/name:path" left alone: another controller fights it
    protected_orphans: tuple[ResourceKey, ...] = ()  # not desired, but protected: kept, reported
    in_flight: tuple[ResourceKey, ...] = ()  # created, not listed yet: neither missing nor done
    # owned by no target, not desired, not ignored: reported, never acted on. Sorted, capped at
    # core.compare.UNMANAGED_LISTED; ``coverage`` counts them all.
    unmanaged: tuple[ResourceKey, ...] = ()
    coverage: dict[str, KindCoverage] = Field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not (self.additions or self.modifications or self.deletions)


class Drift(Frozen):
    """How far the fleet is from the desired state, and how urgently it needs fixing."""

    magnitude: float = 0.0
    fraction: float = 0.0
    urgency: Urgency = "none"
    by_urgency: dict[str, int] = Field(default_factory=dict)
    drifted: int = 0
    total: int = 0


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
