"""One reconciliation cycle: sense → compare → plan → actuate → verify, within its bounds."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import cast

from reconciler.core import breaker as brk
from reconciler.core.actuate import Actuator
from reconciler.core.compare import compare
from reconciler.core.convergence import count_cycle, in_window, judge_pass, within_tolerance
from reconciler.core.guard import ActuationGuard, Mandate
from reconciler.core.inflight import in_flight_note, settled_creates
from reconciler.core.kinds import KindRegistry
from reconciler.core.model import (
    ActionState,
    ActuationResult,
    Approval,
    CycleStatus,
    DesiredState,
    Diff,
    Drift,
    Event,
    EventType,
    Outcome,
    Plan,
    Snapshot,
)
from reconciler.core.oscillation import changed_fields, flapping
from reconciler.core.plan import PlanContext, make_plan, only_conflicts
from reconciler.core.policy import Policy
from reconciler.core.ports import Clock, EventSink, Provider, Reader, SnapshotGate, Store
from reconciler.core.sense import SenseOptions, remembered_counts, sense

__all__ = ["CycleRequest", "CycleDeps", "CycleReport", "run_cycle", "summary"]


@dataclass(frozen=True)
class CycleRequest:
    """What to reconcile and how; plain data (built from the targets config and run conf)."""

    target: str
    desired: DesiredState
    policy: Policy
    kinds: tuple[str, ...]
    correlation_id: str
    dry_run: bool = False
    # the hash of the one plan the caller approves, or True: whatever plan this cycle makes (a
    # program's explicit choice; the CLI never passes it). Recorded in the store as an approval.
    approve: bool | str = False
    only_kinds: tuple[str, ...] | None = None
    reset_breaker: bool = False
    manual: bool = False  # a human asked for this apply: act on any urgency, not just auto_apply
    actor: str = "reconciler"


@dataclass(frozen=True)
class CycleDeps:
    provider: Provider
    store: Store
    events: EventSink
    clock: Clock
    gate: SnapshotGate
    rules: KindRegistry
    rng: random.Random = field(default_factory=random.Random)


@dataclass
class CycleReport:
    """The outcome plus what a human wants to read: first diff, plans, action results."""

    outcome: Outcome
    diff: Diff | None = None
    plans: list[Plan] = field(default_factory=list)
    actuations: list[ActuationResult] = field(default_factory=list)
    snapshot: Snapshot | None = None


def run_cycle(req: CycleRequest, deps: CycleDeps) -> CycleReport:
    """Run one bounded, idempotent cycle and persist its outcome, audit and breaker state."""
    return _Cycle(req, deps).run()


class _Cycle:
    def __init__(self, req: CycleRequest, deps: CycleDeps) -> None:
        self.req, self.deps = req, deps
        self.clock = deps.clock
        self.started = self.clock.now()
        self.deadline = self.clock.monotonic() + req.policy.cycle_deadline_seconds
        self.plans: list[Plan] = []
        self.actuations: list[ActuationResult] = []
        self.first: tuple[Diff, Snapshot] | None = None
        self.drifts: list[Drift] = []
        self.changed: set[str] = set()
        self.flapping: set[str] = set()
        self.suppress = self._fights()
        self.last_counts = deps.store.listing_counts(req.target, req.correlation_id)
        self.iterations = 0
        self.fence = 0

    def run(self) -> CycleReport:
        store = self.deps.store
        if self.req.reset_breaker:
            self._reset_breaker()
        breaker = store.load_breaker(self.req.target)
        acting = not self.req.dry_run and brk.allows_actuation(breaker)
        if acting and not store.acquire_lease(self.req.target, self.req.correlation_id,
                                              self.req.policy.cycle_deadline_seconds + 60):
            return self._finish("busy", error="another cycle holds this target's lease",
                                record=False)
        self.fence = store.lease_fence(self.req.target, self.req.correlation_id) or 0
        try:
            status, error = self._reconcile(acting, breaker)
        finally:
            if acting:
                store.release_lease(self.req.target, self.req.correlation_id)
        return self._finish(status, error=error, acted=acting)

    def _reconcile(self, acting: bool, breaker: brk.BreakerState) -> tuple[CycleStatus, str | None]:
        snap = self._sense_listed(None)
        diff, drift = self._compare(snap)
        self.first = (diff, snap)
        if within_tolerance(drift, self.req.policy.tolerance):
            return self._settle(snap, drift, first=True)
        self._emit("drift_detected", {"urgency": drift.urgency, "magnitude": drift.magnitude,
                                      "drifted": drift.drifted})
        if not acting or not self._auto_applies(drift):
            return self._report_only(diff, snap, breaker)
        if not in_window(self.clock.now(), self.req.policy.windows):
            self._plan(diff, snap)
            return "window_closed", "outside the target's maintenance windows"
        return self._passes(diff, snap)

    def _passes(self, diff: Diff, snap: Snapshot) -> tuple[CycleStatus, str | None]:
        for iteration in range(1, self.req.policy.max_iterations + 1):
            self.iterations = iteration
            plan = self._plan(diff, snap)
            refusal = self._refusal(plan)
            if refusal:
                return refusal
            result = self._actuate(plan)
            snap = self._sense_listed(snap)
            diff, drift = self._compare(snap)
            verdict = judge_pass(self.drifts, policy=self.req.policy, actuation_ok=result.ok,
                                 past_deadline=self._past_deadline(), iteration=iteration)
            if verdict.status == "converged":
                return self._settle(snap, drift, first=False)
            if verdict.done:
                return verdict.status or "failed", result.error or verdict.reason or None
        return "max_iterations", None  # unreachable: judge_pass stops at the bound

    def _refusal(self, plan: Plan) -> tuple[CycleStatus, str | None] | None:
        if not plan.validation.ok:
            return "failed", "plan rejected: " + "; ".join(plan.validation.errors)
        approved = self.req.approve is True or self.req.approve == plan.hash
        if plan.validation.needs_approval and not approved:
            return "needs_approval", "; ".join(plan.validation.approval_reasons)
        if plan.validation.needs_approval:
            self._approve(plan)
        if only_conflicts(plan):  # blocked, reported and left alone: not a failed cycle
            names = ", ".join(str(b.key) for b in plan.audit.blocked[:5])
            return "blocked", f"{len(plan.audit.blocked)} conflict(s): {names}"
        if plan.is_empty:
            reasons = sorted({b.reason for b in plan.audit.blocked})
            return "failed", "drift remains but every change is blocked: " + "; ".join(reasons)
        return None

    def _approve(self, plan: Plan) -> None:
        """Record the caller's approval of this exact plan: in the approvals the guard checks,
        and in the audit trail with who gave it (as an Airflow approval is)."""
        surface = "cli" if self.req.manual else "api"
        store = self.deps.store
        store.record_approval(Approval(target=self.req.target, plan_hash=plan.hash,
                                       actor=self.req.actor, surface=surface,
                                       at=self.clock.now()))
        store.record_operator(self.req.target, self.req.actor, "plan_approved",
                              {"plan_hash": plan.hash, "surface": surface},
                              self.req.correlation_id)

    def _settle(self, snap: Snapshot, drift: Drift, first: bool) -> tuple[CycleStatus, str | None]:
        """Converged only if it stays within tolerance for the settling period."""
        if snap.in_flight:  # waited for them until the deadline (_sense_listed)
            return ("reported" if self.req.dry_run else "deadline"), in_flight_note(snap.in_flight)
        settle = self.req.policy.settle_seconds
        if settle > 0:
            if self.clock.monotonic() + settle > self.deadline:
                return "deadline", "no time left to confirm stability"
            self.clock.sleep(settle)
            snap = self._sense(snap)
            _, drift = self._compare(snap)
            if not within_tolerance(drift, self.req.policy.tolerance):
                return "failed", "drift came back within the settling period"
        if not first:
            self._emit("converged", {"iterations": self.iterations, "magnitude": drift.magnitude})
        return ("in_sync" if first else "converged"), None

    def _report_only(
        self, diff: Diff, snap: Snapshot, breaker: brk.BreakerState
    ) -> tuple[CycleStatus, str | None]:
        self._plan(diff, snap)
        if not self.req.dry_run and not brk.allows_actuation(breaker):
            return "breaker_open", f"circuit breaker open since {breaker.opened_at}: reset it"
        return "reported", None

    def _auto_applies(self, drift: Drift) -> bool:
        return self.req.manual or drift.urgency in self.req.policy.auto_apply

    def _sense_listed(self, previous: Snapshot | None) -> Snapshot:
        """Sense; while creates are in flight (made, not listed yet: AWS is eventually
        consistent), sense again with growing pauses, until listed or the cycle deadline."""
        snap = self._sense(previous)
        pause = self.req.policy.in_flight_poll_seconds
        for _ in range(100):  # bounded twice: polls and the deadline
            if not snap.in_flight or self.req.dry_run:
                break
            left = self.deadline - self.clock.monotonic()
            if left <= pause:
                break
            self.clock.sleep(pause)
            pause = min(pause * 1.5, 30.0)
            snap = self._sense(snap)
        return snap

    def _sense(self, previous: Snapshot | None) -> Snapshot:
        policy, store = self.req.policy, self.deps.store
        pending = store.pending_creates(self.req.target)
        options = SenseOptions(deadline_s=min(policy.sense_deadline_seconds,
                                              max(0.001, self.deadline - self.clock.monotonic())),
                               last_counts=self.last_counts,
                               doubt_empty_from=policy.doubt_empty_from,
                               pending=pending, pending_ttl_s=policy.create_pending_seconds)
        snap = sense(self.deps.provider, self._kinds(), target=self.req.target,
                     correlation_id=self.req.correlation_id, clock=self.clock,
                     options=options, previous=previous)
        if not self.req.dry_run:  # a dry run records nothing, not even what it saw
            store.save_listing_counts(self.req.target, self.req.correlation_id,
                                      remembered_counts(snap))
            store.end_creates(self.req.target,
                              settled_creates(pending, snap, policy.create_pending_seconds))
        return snap

    def _kinds(self) -> tuple[str, ...]:
        if self.req.only_kinds is None:
            return self.req.kinds
        return tuple(k for k in self.req.kinds if k in self.req.only_kinds)

    def _compare(self, snap: Snapshot) -> tuple[Diff, Drift]:
        diff, drift = compare(self.req.desired.resources, snap, rules=self.deps.rules,
                              policy=self.req.policy, kinds=self._kinds(), suppress=self.suppress)
        self.drifts.append(drift)
        self.flapping.update(diff.suppressed)
        return diff, drift

    def _fights(self) -> frozenset[str]:
        """Fields another controller keeps reverting (set by us in each of the last cycles)."""
        n = self.req.policy.flap_cycles
        if not n:
            return frozenset()
        recent = self.deps.store.recent_cycles(self.req.target, n)
        return flapping([(*o.changed_fields, *o.flapping) for o in recent], n)

    def _plan(self, diff: Diff, snap: Snapshot) -> Plan:
        gate = self.deps.gate.check(snap, self.req.desired)
        ctx = PlanContext(
            target=self.req.target, correlation_id=self.req.correlation_id,
            desired_version=self.req.desired.version, policy=self.req.policy,
            rules=self.deps.rules, now=self.clock.now(),
            estimates=self.deps.store.duration_estimates(self.req.target),
            allow_deletions=gate.passed,
        )
        plan = make_plan(diff, snap, ctx)
        self.plans.append(plan)
        if not self.req.dry_run:
            self.deps.store.record_plan(plan, actor=self.req.actor)
        return plan

    def _actuate(self, plan: Plan) -> ActuationResult:
        # action events go to the audit trail too, as they do under Airflow
        events = _Audited(self.deps.events, self.deps.store, self.req.actor)
        actuator = Actuator(applier=self.deps.provider, policy=self.req.policy,
                            events=events, clock=self.clock, target=self.req.target,
                            correlation_id=self.req.correlation_id, rng=self.deps.rng,
                            deadline=self.deadline, ledger=self.deps.store,
                            guard=self._guard(plan), results_log=self.deps.store)
        result = actuator.run(plan)
        self.actuations.append(result)
        self.changed.update(changed_fields(plan.actions, result.results))
        return result

    def _guard(self, plan: Plan) -> ActuationGuard:
        deadline_at = self.started + timedelta(seconds=self.req.policy.cycle_deadline_seconds)
        mandate = Mandate(holder=self.req.correlation_id, fence=self.fence, plan_hash=plan.hash,
                          deadline_at=deadline_at,
                          rollback_grace_s=self.req.policy.rollback_grace_seconds)
        # a provider that can read one resource gets each update checked on a fresh read
        reader = cast(Reader, self.deps.provider) if hasattr(self.deps.provider, "read") else None
        return ActuationGuard(self.deps.store, self.clock, self.req.target, plan, mandate,
                              reader)

    def _past_deadline(self) -> bool:
        return self.clock.monotonic() >= self.deadline

    def _reset_breaker(self) -> None:
        after = self.deps.store.update_breaker(self.req.target, brk.reset)
        self.deps.store.record_operator(self.req.target, self.req.actor, "breaker_reset",
                                        {"state": after.state}, self.req.correlation_id)

    def _finish(self, status: CycleStatus, *, error: str | None = None, record: bool = True,
                acted: bool = False) -> CycleReport:
        outcome = self._outcome(status, error)
        if self.flapping:
            self._emit("oscillation_detected", {"fields": sorted(self.flapping),
                                                "hint": "add them to ignore_fields"})
        if record and not self.req.dry_run:
            self.deps.store.record_cycle(outcome)
        if acted:
            self._update_breaker(outcome)
        diff, snap = self.first or (None, None)
        return CycleReport(outcome=outcome, diff=diff, plans=self.plans,
                           actuations=self.actuations, snapshot=snap)

    def _update_breaker(self, outcome: Outcome) -> None:
        if count_cycle(self.deps.store, outcome, self.req.policy.breaker_failures,
                       self.clock.now()):
            self._emit("breaker_opened", {"reason": outcome.error})

    def _outcome(self, status: CycleStatus, error: str | None = None) -> Outcome:
        def count(state: ActionState) -> int:
            return sum(r.count(state) for r in self.actuations)

        first = self.drifts[0] if self.drifts else Drift()
        last = self.drifts[-1] if self.drifts else Drift()
        return Outcome(
            target=self.req.target, correlation_id=self.req.correlation_id, status=status,
            converged=status in ("converged", "in_sync"), started_at=self.started,
            finished_at=self.clock.now(), iterations=self.iterations,
            actions_succeeded=count("succeeded"), actions_failed=count("failed"),
            actions_skipped=count("skipped"), initial_drift=first, final_drift=last,
            desired_version=self.req.desired.version,
            plan_hashes=tuple(p.hash for p in self.plans),
            error=error, requeue_after_s=None if status in ("converged", "in_sync") else 60.0,
            dry_run=self.req.dry_run, trigger="cli" if self.req.manual else "manual",
            changed_fields=tuple(sorted(self.changed)), flapping=tuple(sorted(self.flapping)),
        )

    def _emit(self, kind: EventType, detail: dict[str, object]) -> None:
        event = Event(type=kind, target=self.req.target, correlation_id=self.req.correlation_id,
                      at=self.clock.now(), detail=detail)
        self.deps.events.emit(event)
        if not self.req.dry_run:
            self.deps.store.record_event(event, actor=self.req.actor)


@dataclass(frozen=True)
class _Audited:
    """An event sink that also writes each event to the store's audit trail."""

    sink: EventSink
    store: Store
    actor: str

    def emit(self, event: Event) -> None:
        self.sink.emit(event)
        self.store.record_event(event, actor=self.actor)


def summary(report: CycleReport) -> dict[str, object]:
    """A small JSON-safe digest (for XCom, logs and ``--json``)."""
    out = report.outcome.model_dump(mode="json")
    out["plans"] = [{"hash": p.hash, "counts": p.audit.counts} for p in report.plans]
    return out

