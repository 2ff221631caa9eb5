"""In-memory fakes of the ports, for tests, dry runs and benchmarks (no I/O, time is data)."""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from reconciler.core.breaker import BreakerState
from reconciler.core.cycle import CycleState
from reconciler.core.model import (
    ActionResult,
    Approval,
    Event,
    Outcome,
    PendingCreate,
    Plan,
    ResourceKey,
)
from reconciler.core.sense import ListingCount

__all__ = ["FakeClock", "MemoryStore", "RecordingSink"]


class FakeClock:
    """A clock that only moves when slept on: ``sleeps`` records every requested delay."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now + timedelta(seconds=self._mono)

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._mono += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._mono += seconds


class RecordingSink:
    """Keeps every event, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def types(self) -> list[str]:
        return [e.type for e in self.events]


class MemoryStore:
    """The Store port in memory (same semantics as the SQL store, minus durability)."""

    def __init__(self) -> None:
        self.cycles: dict[tuple[str, str], Outcome] = {}
        self.plans: list[Plan] = []
        self.results: list[ActionResult] = []
        self.events: list[Event] = []
        self.operator: list[dict[str, object]] = []
        self.breakers: dict[str, BreakerState] = {}
        self.leases: dict[str, tuple[str, float]] = {}
        self.lease_clock = 0.0
        self.listings: dict[tuple[str, str], ListingCount] = {}
        self.pending: dict[tuple[str, ResourceKey], PendingCreate] = {}
        self.fences: dict[str, int] = {}
        self.approvals: dict[tuple[str, str], Approval] = {}
        self.cycle_states: dict[tuple[str, str], CycleState] = {}
        self.results_by: dict[tuple[str, str], list[ActionResult]] = {}
        self._lock = threading.Lock()

    def record_cycle(self, outcome: Outcome) -> None:
        self.cycles[(outcome.target, outcome.correlation_id)] = outcome

    def recent_cycles(self, target: str, limit: int = 20) -> Sequence[Outcome]:
        """Newest first; ties on ``started_at`` go by insertion order, as the SQL store's id."""
        mine = [(o.started_at, i, o) for i, ((t, _), o) in enumerate(self.cycles.items())
                if t == target]
        return [o for *_, o in sorted(mine, key=lambda x: (x[0], x[1]), reverse=True)][:limit]

    def record_plan(self, plan: Plan, actor: str = "reconciler") -> None:
        self.plans.append(plan)

    def listing_counts(self, target: str, correlation_id: str) -> dict[str, int]:
        seen = {kind: c.seen_by(correlation_id) for (t, kind), c in self.listings.items()
                if t == target}
        return {kind: n for kind, n in seen.items() if n is not None}

    def save_listing_counts(
        self, target: str, correlation_id: str, counts: Mapping[str, int]
    ) -> None:
        for kind, n in counts.items():
            old = self.listings.get((target, kind))
            self.listings[(target, kind)] = (ListingCount(n, correlation_id) if old is None
                                             else old.saved(correlation_id, n))

    def record_results(
        self, target: str, correlation_id: str, results: Sequence[ActionResult]
    ) -> None:
        with self._lock:
            self.results.extend(results)
            self.results_by.setdefault((target, correlation_id), []).extend(results)

    def final_results(self, target: str, correlation_id: str) -> Sequence[ActionResult]:
        final: dict[str, ActionResult] = {}
        for r in self.results_by.get((target, correlation_id), []):
            if not r.rollback:
                final[r.action_id] = r  # recorded in order: the last one wins
        return list(final.values())

    def save_cycle_state(self, state: CycleState) -> None:
        self.cycle_states[(state.target, state.correlation_id)] = state

    def load_cycle_state(self, target: str, correlation_id: str) -> CycleState | None:
        return self.cycle_states.get((target, correlation_id))

    def record_event(self, event: Event, actor: str = "reconciler") -> None:
        self.events.append(event)

    def record_operator(
        self,
        target: str,
        actor: str,
        what: str,
        detail: Mapping[str, object] | None = None,
        correlation_id: str = "",
    ) -> None:
        self.operator.append({"target": target, "actor": actor, "what": what,
                              "detail": dict(detail or {}), "correlation_id": correlation_id})

    def duration_estimates(self, target: str) -> dict[tuple[str, str], float]:
        samples: dict[tuple[str, str], list[float]] = {}
        for r in self.results:
            if r.state == "succeeded" and not r.rollback:
                samples.setdefault((r.key.kind, r.type), []).append(r.duration_s)
        return {k: statistics.median(v) for k, v in samples.items()}

    def load_breaker(self, target: str) -> BreakerState:
        return self.breakers.get(target, BreakerState(target=target))

    def save_breaker(self, state: BreakerState) -> None:
        self.breakers[state.target] = state

    def update_breaker(
        self, target: str, fn: Callable[[BreakerState], BreakerState]
    ) -> BreakerState:
        with self._lock:
            self.breakers[target] = fn(self.load_breaker(target))
            return self.breakers[target]

    def acquire_lease(self, target: str, holder: str, ttl_s: float) -> bool:
        with self._lock:
            current = self.leases.get(target)
            if current and current[0] != holder and current[1] > self.lease_clock:
                return False
            if not current or current[0] != holder:
                self.fences[target] = self.fences.get(target, 0) + 1
            self.leases[target] = (holder, self.lease_clock + ttl_s)
            return True

    def lease_fence(self, target: str, holder: str) -> int | None:
        with self._lock:
            current = self.leases.get(target)
            if current and current[0] == holder and current[1] > self.lease_clock:
                return self.fences[target]
            return None

    def record_approval(self, approval: Approval) -> None:
        self.approvals[(approval.target, approval.plan_hash)] = approval

    def claim_approval(self, target: str, plan_hash: str, cycle: str) -> Approval | None:
        with self._lock:
            found = self.approvals.get((target, plan_hash))
            if found is None or found.used_by not in (None, cycle):
                return None
            self.approvals[(target, plan_hash)] = found.model_copy(update={"used_by": cycle})
            return self.approvals[(target, plan_hash)]

    def release_lease(self, target: str, holder: str) -> None:
        with self._lock:
            if self.leases.get(target, ("",))[0] == holder:
                del self.leases[target]

    def pending_creates(self, target: str) -> dict[ResourceKey, PendingCreate]:
        with self._lock:
            return {k: p for (t, k), p in self.pending.items() if t == target}

    def begin_create(self, target: str, pending: PendingCreate) -> PendingCreate:
        with self._lock:
            return self.pending.setdefault((target, pending.key), pending)

    def end_creates(self, target: str, keys: Sequence[ResourceKey]) -> None:
        with self._lock:
            for key in keys:
                self.pending.pop((target, key), None)
