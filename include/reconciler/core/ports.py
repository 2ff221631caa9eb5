"""The engine's only doors to the world: tiny Protocols passed in by the caller."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from reconciler.core.breaker import BreakerState
from reconciler.core.gate import GateVerdict
from reconciler.core.model import (
    Action,
    ActionResult,
    Approval,
    DesiredState,
    Event,
    Observation,
    ObservedResource,
    OperationResult,
    Outcome,
    PendingCreate,
    Plan,
    ResourceKey,
    Snapshot,
)

if TYPE_CHECKING:
    from reconciler.core.cycle import CycleState

__all__ = [
    "Clock",
    "Observer",
    "Applier",
    "Reader",
    "Provider",
    "EventSink",
    "SnapshotGate",
    "GateVerdict",
    "CycleHistory",
    "AuditLog",
    "ResultLog",
    "BreakerStore",
    "Leases",
    "Approvals",
    "GuardStore",
    "CreateLedger",
    "CycleStates",
    "Store",
    "BreakerState",
]


class Clock(Protocol):
    def now(self) -> datetime: ...
    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class Observer(Protocol):
    def observe(self, kind: str, timeout_s: float) -> Observation:
        """List every resource of ``kind`` this target owns; report what could not be read."""
        ...


class Applier(Protocol):
    def apply(self, action: Action) -> OperationResult:
        """Read, compare, then create/update/delete; 'already gone' is success.

        Raises TemporaryError (retry) or PermanentError (stop).
        """
        ...


class Reader(Protocol):
    def read(self, action: Action) -> ObservedResource | None:
        """The resource ``action`` is about, as it is now (None: absent). Raises LookupError
        when its kind cannot be read one by one, TemporaryError when a read should be retried.
        """
        ...


class Provider(Observer, Applier, Protocol):
    def kinds(self) -> frozenset[str]: ...


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


class SnapshotGate(Protocol):
    def check(self, snapshot: Snapshot, desired: DesiredState) -> GateVerdict: ...


class CycleHistory(Protocol):
    def record_cycle(self, outcome: Outcome) -> None: ...
    def recent_cycles(self, target: str, limit: int = 20) -> Sequence[Outcome]: ...


class ResultLog(Protocol):
    def record_results(
        self, target: str, correlation_id: str, results: Sequence[ActionResult]
    ) -> None: ...


class AuditLog(Protocol):
    def record_plan(self, plan: Plan, actor: str = "reconciler") -> None: ...
    def record_results(
        self, target: str, correlation_id: str, results: Sequence[ActionResult]
    ) -> None: ...
    def record_event(self, event: Event, actor: str = "reconciler") -> None: ...
    def record_operator(
        self,
        target: str,
        actor: str,
        what: str,
        detail: Mapping[str, object] | None = None,
        correlation_id: str = "",
    ) -> None:
        """A human's action (breaker reset, approval, manual trigger), with who did it."""
        ...
    def duration_estimates(self, target: str) -> dict[tuple[str, str], float]: ...


class BreakerStore(Protocol):
    def load_breaker(self, target: str) -> BreakerState: ...
    def save_breaker(self, state: BreakerState) -> None: ...
    def update_breaker(
        self, target: str, fn: Callable[[BreakerState], BreakerState]
    ) -> BreakerState:
        """Read, change and write in one transaction so concurrent workers lose no update."""
        ...


class Leases(Protocol):
    def acquire_lease(self, target: str, holder: str, ttl_s: float) -> bool:
        """Take, renew (same holder) or take over an expired lease; False if someone holds it.

        Each change of holder increments the target's fencing token (see ``lease_fence``).
        """
        ...
    def release_lease(self, target: str, holder: str) -> None: ...
    def lease_fence(self, target: str, holder: str) -> int | None:
        """The fencing token of ``holder``'s live lease on ``target``; None if not held."""
        ...


class Approvals(Protocol):
    def record_approval(self, approval: Approval) -> None: ...
    def claim_approval(self, target: str, plan_hash: str, cycle: str) -> Approval | None:
        """The approval of ``plan_hash`` if unused or already used by ``cycle`` (marking it
        used by ``cycle``, atomically); None if there is none or another cycle spent it."""
        ...


class GuardStore(Protocol):
    """What the actuation guard reads and writes (core.guard)."""

    def lease_fence(self, target: str, holder: str) -> int | None: ...
    def claim_approval(self, target: str, plan_hash: str, cycle: str) -> Approval | None: ...
    def record_event(self, event: Event, actor: str = "reconciler") -> None: ...


class ListingMemory(Protocol):
    """Per kind, how many resources a target's listings returned, kept across cycles."""

    def listing_counts(self, target: str, correlation_id: str) -> dict[str, int]:
        """What the latest cycle other than ``correlation_id`` remembered, by kind."""
        ...
    def save_listing_counts(
        self, target: str, correlation_id: str, counts: Mapping[str, int]
    ) -> None: ...


class CreateLedger(Protocol):
    """Creates in flight, by target and resource (see core.inflight)."""

    def pending_creates(self, target: str) -> dict[ResourceKey, PendingCreate]: ...
    def begin_create(self, target: str, pending: PendingCreate) -> PendingCreate:
        """Record ``pending`` unless its resource has a record already; return the one kept.

        Atomic: two workers beginning the same create get the same record (the same token).
        """
        ...
    def end_creates(self, target: str, keys: Sequence[ResourceKey]) -> None: ...


class CycleStates(Protocol):
    """A running cycle's state by correlation id (each Airflow task loads and saves it), and
    each of its forward actions' final result."""

    def save_cycle_state(self, state: CycleState) -> None: ...
    def load_cycle_state(self, target: str, correlation_id: str) -> CycleState | None: ...
    def final_results(self, target: str, correlation_id: str) -> Sequence[ActionResult]: ...


class Store(CycleHistory, AuditLog, BreakerStore, Leases, Approvals, ListingMemory, CreateLedger,
            CycleStates, Protocol):
    """Everything a cycle persists, composed from the small ports above."""
