"""One reconciliation cycle: sense → compare → plan → actuate → verify, within its bounds."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import cast

from reconciler.core import breaker as brk
from reconciler.core.actuate import Actuator
from reconciler.core.compare import compare
from reconciler.core.convergence import judge_pass, within_tolerance
from reconciler.core.cycle import (
    CycleState,
    PassRecord,
    Stop,
    Verified,
    approval_stop,
    decide_route,
    drift_detail,
    emit,
    finish,
    observed,
    plan_stop,
)
from reconciler.core.fidelity import degraded, poke_interval
from reconciler.core.guard import ActuationGuard, Mandate
from reconciler.core.inflight import in_flight_note, settled_creates
from reconciler.core.kinds import KindRegistry
from reconciler.core.model import (
    ActuationResult,
    Approval,
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
from reconciler.core.plan import PlanContext, make_plan
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
    # the hash of the plan a human confirmed at a terminal: a first plan with another hash
    # (the fleet or the desired state moved while they read it) applies nothing
    confirmed: str | None = None
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
    """The CLI's driver of the one cycle (``core.cycle``): every step in this process, the
    snapshots in memory. The decisions (route, stops, status, outcome, what is recorded) are
    ``core.cycle``'s, the same the Airflow driver takes."""

    def __init__(self, req: CycleRequest, deps: CycleDeps) -> None:
        self.req, self.deps = req, deps
        self.clock = deps.clock
        started = self.clock.now()
        self.deadline = self.clock.monotonic() + req.policy.cycle_deadline_seconds
        self.state = CycleState(
            target=req.target, correlation_id=req.correlation_id, started_at=started,
            deadline_at=started + timedelta(seconds=req.policy.cycle_deadline_seconds),
            dry_run=req.dry_run, manual=req.manual, actor=req.actor,
            trigger="cli" if req.manual else "manual", only_kinds=req.only_kinds,
            desired_version=req.desired.version)
        self.plans: list[Plan] = []
        self.actuations: list[ActuationResult] = []
        self.first: tuple[Diff, Snapshot] | None = None
        self.drifts: list[Drift] = []
        self.suppress = self._fights()
        self.last_counts = deps.store.listing_counts(req.target, req.correlation_id)

    def run(self) -> CycleReport:
        store = self.deps.store
        if self.req.reset_breaker:
            self._reset_breaker()
        breaker = store.load_breaker(self.req.target)
        self._reconcile(breaker)
        outcome = finish(self.state, store.final_results(self.req.target, self.req.correlation_id),
                         policy=self.req.policy, store=store, events=self.deps.events,
                         now=self.clock.now())
        diff, snap = self.first or (None, None)
        return CycleReport(outcome=outcome, diff=diff, plans=self.plans,
                           actuations=self.actuations, snapshot=snap)

    def _update(self, **changes: object) -> None:
        self.state = self.state.model_copy(update=changes)
        self._save()

    def _save(self) -> None:
        if not self.req.dry_run:  # a dry run records nothing (core.cycle)
            self.deps.store.save_cycle_state(self.state)

    def _reconcile(self, breaker: brk.BreakerState) -> None:
        snap = self._sense_listed(None)
        diff, drift = self._compare(snap)
        self.first = (diff, snap)
        self._update(initial_drift=drift, flapping=tuple(sorted(diff.suppressed)),
                     **observed(snap, self.req.policy))
        if drift.drifted:
            self._emit("drift_detected", drift_detail(drift))
        if diff.suppressed:
            self._emit("oscillation_detected", {"fields": sorted(diff.suppressed),
                                                "hint": "add them to ignore_fields"})
        route = decide_route(drift, self.req.policy, breaker=breaker, dry_run=self.req.dry_run,
                             manual=self.req.manual, now=self.clock.now())
        self._update(route=route)
        if route.route == "record":
            self._settle(snap, first=True)
        elif route.route == "report":
            self._plan(diff, snap, preview=True)
        elif self._lease():
            self._passes(diff, snap)

    def _lease(self) -> bool:
        store, target, cid = self.deps.store, self.req.target, self.req.correlation_id
        if not store.acquire_lease(target, cid, self.req.policy.cycle_deadline_seconds + 60):
            self._update(halt=Stop(status="busy",
                                   reason="another cycle holds this target's lease"))
            return False
        self._update(fence=store.lease_fence(target, cid) or 0)
        return True

    def _passes(self, diff: Diff, snap: Snapshot) -> None:
        for iteration in range(1, self.req.policy.max_iterations + 1):
            plan = self._plan(diff, snap)
            record = PassRecord(number=iteration, plan_hash=plan.hash,
                                needs_approval=plan.validation.needs_approval)
            self.state = self.state.with_pass(record)
            halt = plan_stop(plan) or self._unconfirmed(plan, iteration) or \
                self._unapproved(plan, iteration)
            if halt:
                self._update(halt=halt)
                return
            if plan.validation.needs_approval:
                self._approve(plan)
                record = record.model_copy(update={"approval": "approved"})
            result = self._actuate(plan)
            snap = self._sense_listed(snap)
            diff, drift = self._compare(snap)
            verdict = judge_pass(self.drifts, policy=self.req.policy, actuation_ok=result.ok,
                                 past_deadline=self._past_deadline(), iteration=iteration)
            within = verdict.status == "converged"
            settled = within and self._settle(snap, first=False)
            forward = self.deps.store.final_results(self.req.target, self.req.correlation_id)
            record = record.model_copy(update={
                "changed": changed_fields(plan.actions, forward),
                "verified": Verified(drift=self.drifts[-1], within=within, settled=settled,
                                     in_flight=len(snap.in_flight),
                                     deadline=verdict.status == "deadline"),
                "stop": None if within or not verdict.done else Stop(
                    status=verdict.status or "failed", reason=result.error or verdict.reason
                    or None)})
            self.state = self.state.with_pass(record)
            self._save()
            if within or verdict.done:
                return

    def _unconfirmed(self, plan: Plan, iteration: int) -> Stop | None:
        confirmed = self.req.confirmed
        if iteration == 1 and confirmed and plan.hash != confirmed:
            return Stop(status="reported", reason=(
                f"the plan changed since it was confirmed ({confirmed[:12]} -> "
                f"{plan.hash[:12]}): nothing applied; run apply again to see the new plan"))
        return None

    def _unapproved(self, plan: Plan, iteration: int) -> Stop | None:
        approved = self.req.approve is True or self.req.approve == plan.hash
        if plan.validation.needs_approval and not approved:
            return approval_stop(plan, iteration)
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

    def _settle(self, snap: Snapshot, first: bool) -> bool:
        """Whether it stays within tolerance for the settling period (``halt`` says why not)."""
        if snap.in_flight:  # waited for them until the deadline (_sense_listed)
            self._update(halt=Stop(status="reported" if self.req.dry_run else "deadline",
                                   reason=in_flight_note(snap.in_flight)))
            return False
        settle = self.req.policy.settle_seconds
        if settle > 0:
            if self.clock.monotonic() + settle > self.deadline:
                self._update(halt=Stop(status="deadline",
                                       reason="no time left to confirm stability"))
                return False
            self.clock.sleep(settle)
            snap = self._sense(snap)
            _, drift = self._compare(snap)
            if not within_tolerance(drift, self.req.policy.tolerance):
                self._update(halt=Stop(status="failed",
                                       reason="drift came back within the settling period"))
                return False
        return True

    def _sense_listed(self, previous: Snapshot | None) -> Snapshot:
        """Sense; while creates are in flight (made, not listed yet: AWS is eventually
        consistent), sense again with growing pauses, until listed or the cycle deadline."""
        snap = self._sense(previous)
        base = self.req.policy.in_flight_poll_seconds
        for _ in range(100):  # bounded twice: polls and the deadline
            if not snap.in_flight or self.req.dry_run:
                break
            # polls less often while the provider is under load (core.fidelity)
            pause = poke_interval(base, degraded(snap, self.req.policy).poke_factor)
            left = self.deadline - self.clock.monotonic()
            if left <= pause:
                break
            self.clock.sleep(pause)
            base = min(base * 1.5, 30.0)
            snap = self._sense(snap)
        return snap

    def _sense(self, previous: Snapshot | None) -> Snapshot:
        policy, store = self.req.policy, self.deps.store
        pending = store.pending_creates(self.req.target)
        options = SenseOptions(deadline_s=min(policy.sense_deadline_seconds,
                                              max(0.001, self.deadline - self.clock.monotonic())),
                               last_counts=self.last_counts,
                               doubt_empty_from=policy.doubt_empty_from,
                               pending=pending, pending_ttl_s=policy.create_pending_seconds,
                               fidelity=policy.fidelity)
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
        return diff, drift

    def _fights(self) -> frozenset[str]:
        """Fields another controller keeps reverting (set by us in each of the last cycles)."""
        n = self.req.policy.flap_cycles
        if not n:
            return frozenset()
        recent = self.deps.store.recent_cycles(self.req.target, n)
        return flapping([(*o.changed_fields, *o.flapping) for o in recent], n)

    def _plan(self, diff: Diff, snap: Snapshot, preview: bool = False) -> Plan:
        gate = self.deps.gate.check(snap, self.req.desired)
        self.state = self.state.model_copy(update={"gate_passed": gate.passed})
        ctx = PlanContext(
            target=self.req.target, correlation_id=self.req.correlation_id,
            desired_version=self.req.desired.version, policy=self.req.policy,
            rules=self.deps.rules, now=self.clock.now(),
            estimates={} if preview else self.deps.store.duration_estimates(self.req.target),
            allow_deletions=gate.passed,
        )
        plan = make_plan(diff, snap, ctx)
        self.plans.append(plan)
        if not preview:  # a preview (report only) is a look, as under Airflow
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
        return result

    def _guard(self, plan: Plan) -> ActuationGuard:
        mandate = Mandate(holder=self.req.correlation_id, fence=self.state.fence,
                          plan_hash=plan.hash, deadline_at=self.state.deadline_at,
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

    def _emit(self, kind: EventType, detail: dict[str, object]) -> None:
        emit(self.state, kind, detail, events=self.deps.events, store=self.deps.store,
             at=self.clock.now())


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

