"""Frozen pydantic models shared by every stage of a cycle, with lossless JSON round-trip."""

from __future__ import annotations

from reconciler.core.model.base import (
    URGENCY_RANK,
    ActionState,
    ActionType,
    Fidelity,
    Frozen,
    OperationResult,
    ResourceKey,
    Risk,
    SlaTier,
    Urgency,
    canonical_json,
    content_hash,
)
from reconciler.core.model.diff import Diff, Drift, FieldChange, KindCoverage, Modification
from reconciler.core.model.fleet import (
    DesiredResource,
    DesiredState,
    KindStatus,
    Observation,
    ObservedResource,
    Snapshot,
)
from reconciler.core.model.plans import (
    Action,
    Approval,
    BlockedChange,
    Degradation,
    Plan,
    PlanAudit,
    PlanValidation,
    Precondition,
    Wave,
)
from reconciler.core.model.records import (
    ActionResult,
    ActuationResult,
    CycleStatus,
    Event,
    EventType,
    Outcome,
    PendingCreate,
)

__all__ = [
    "Frozen", "Urgency", "URGENCY_RANK", "SlaTier", "Fidelity", "ActionType", "Risk",
    "ActionState", "OperationResult", "ResourceKey", "DesiredResource", "DesiredState",
    "ObservedResource", "Observation", "KindStatus", "Snapshot", "FieldChange", "Modification",
    "KindCoverage", "Diff", "Drift", "Precondition", "Action", "Wave", "BlockedChange",
    "PlanValidation", "PlanAudit", "Degradation", "Plan", "Approval", "PendingCreate",
    "ActionResult", "Event",
    "EventType", "ActuationResult", "CycleStatus", "Outcome", "canonical_json", "content_hash",
]
