"""One reconciliation cycle, defined once: the typed state its steps hand on, and every decision
taken from it — where the cycle goes, why it stopped, its outcome, what it records.

Two drivers run it: the CLI (``core.loop``, every step in one process) and Airflow
(``reconciler.orchestration.pipeline``, one step per task, loading and saving the state by
correlation id).
Neither decides a status, writes history, counts the breaker or emits a cycle event itself.

What a dry run records (decided here, once): **nothing that outlives it**. No history row, no
audit row, no listing sizes, no create attempts, no lease, no breaker count, no cycle state. It
is a look: what it saw goes to its own output (the CLI's text or ``--json``; under Airflow the
run's XComs, logs and artifacts) and to the event sinks (logs, metrics, webhooks), which carry
``dry_run`` in each outcome. Like ``terraform plan``, running it a thousand times changes nothing
a later cycle, the breaker or an auditor sees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from reconciler.core import breaker as brk
from reconciler.core.convergence import count_cycle, in_window, within_tolerance
from reconciler.core.fidelity import degraded
from reconciler.core.model import (
    ActionResult,
    CycleStatus,
    Drift,
    Event,
    EventType,
    Fidelity,
    Frozen,
    Outcome,
    Plan,
    Snapshot,
)
from reconciler.core.plan import only_conflicts
from reconciler.core.policy import Policy
from reconciler.core.ports import EventSink, Store

__all__ = [
    "Route", "Stop", "Verified", "PassRecord", "CycleState", "decide_route", "plan_stop",
    "approval_stop", "blocked_stop", "conclude", "make_outcome", "finish", "emit",
    "drift_detail", "observed",
]

RouteName = Literal["record", "report", "plan", "page"]
Approval = Literal["not_needed", "approved", "rejected", "timed_out", "stale"]


class Route(Frozen):
    """Where the cycle goes after compare: record (in sync), report (look, don't touch), plan
    or page (act; page first when the drift is critical). ``status`` is the cycle's status
    when it goes no further than this."""

    route: RouteName
    status: CycleStatus | None = None
    reason: str | None = None


class Stop(Frozen):
    """Why the cycle (or one pass of it) stopped where it did."""

    status: CycleStatus
    reason: str | None = None


class Verified(Frozen):
    """One pass's verify: the re-sensed drift and whether it settled."""

    drift: Drift
    within: bool
    settled: bool
    in_flight: int = 0
    conflicts_only: tuple[str, ...] = ()  # conflicts left when nothing else is: blocked
    deadline: bool = False
    snapshot_ref: str = ""


class PassRecord(Frozen):
    """One plan → (approve) → actuate → verify pass."""

    number: int
    plan_hash: str | None = None
    needs_approval: bool = False
    approval: Approval = "not_needed"
    stale: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()  # "kind/name:path" the pass's updates set
    verified: Verified | None = None
    stop: Stop | None = None  # the pass ended the cycle before acting (no progress, ...)


class CycleState(Frozen):
    """Everything one step of a cycle hands the next. Persisted by correlation id (Airflow
    loads and saves it around each task); snapshots, diffs and plans travel by reference."""

    target: str
    correlation_id: str
    started_at: datetime
    deadline_at: datetime
    dry_run: bool = False
    manual: bool = False  # a human asked for this apply: act on any urgency
    actor: str = "reconciler"
    trigger: str = "manual"  # cli | manual | scheduled | backfill | asset_triggered
    interval_start: datetime | None = None
    only_kinds: tuple[str, ...] | None = None
    desired_version: str = ""
    gate_passed: bool = True
    invalid: str | None = None  # bad input: the cycle stopped before compare, history untouched
    initial_drift: Drift | None = None
    snapshot_ref: str = ""  # the first snapshot
    diff_ref: str = ""  # the first diff
    flapping: tuple[str, ...] = ()
    fidelity: Fidelity = "full"  # the first snapshot's, and why it was degraded (core.fidelity)
    degraded: tuple[str, ...] = ()
    route: Route | None = None
    halt: Stop | None = None  # decisive early stop: busy, a rejected plan, nothing to do
    fence: int = 0  # the lease's fencing token while this cycle holds it
    passes: tuple[PassRecord, ...] = ()

    @property
    def acted(self) -> bool:
        """Whether this cycle took the lease to act (what the breaker counts)."""
        return not self.dry_run and any(p.plan_hash for p in self.passes)

    def with_pass(self, record: PassRecord) -> CycleState:
        """This state with pass ``record.number`` replaced (or added)."""
        others = [p for p in self.passes if p.number != record.number]
        return self.model_copy(update={"passes": tuple(sorted([*others, record],
                                                              key=lambda p: p.number))})

    def pass_(self, number: int) -> PassRecord:
        return next((p for p in self.passes if p.number == number), PassRecord(number=number))


def decide_route(drift: Drift, policy: Policy, *, breaker: brk.BreakerState, dry_run: bool,
                 manual: bool, now: datetime) -> Route:
    """Drift it would not act on anyway is ``reported`` whatever the window; only drift it
    would act on is held back by a closed window (then ``window_closed``)."""
    if within_tolerance(drift, policy.tolerance):
        return Route(route="record", status="in_sync")
    if dry_run:
        return Route(route="report", status="reported")
    if not brk.allows_actuation(breaker):
        return Route(route="report", status="breaker_open",
                     reason=f"circuit breaker open since {breaker.opened_at}: reset it")
    if not manual and drift.urgency not in policy.auto_apply:
        return Route(route="report", status="reported")
    if not in_window(now, policy.windows):
        return Route(route="report", status="window_closed",
                     reason="outside the target's maintenance windows")
    return Route(route="page" if drift.urgency == "critical" else "plan", reason=drift.urgency)


def blocked_stop(names: Sequence[str]) -> Stop:
    """Only conflicts are left: not a failure, reported and left alone."""
    shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
    return Stop(status="blocked", reason=(
        f"{len(names)} conflict(s) ({shown}): desired names held by resources this target does "
        "not own (set policy.adopt to take them over)"))


def plan_stop(plan: Plan) -> Stop | None:
    """Whether a plan ends the cycle before any action: rejected by validation, or nothing
    left to do but what is blocked. Approval is asked for after this (an empty plan needs none)."""
    if not plan.validation.ok:
        return Stop(status="failed", reason="plan rejected: " + "; ".join(plan.validation.errors))
    if only_conflicts(plan):  # blocked, reported and left alone: not a failed cycle
        return blocked_stop([str(b.key) for b in plan.audit.blocked])
    if plan.is_empty and plan.audit.blocked:
        reasons = sorted({b.reason for b in plan.audit.blocked})
        return Stop(status="failed",
                    reason="drift remains but every change is blocked: " + "; ".join(reasons))
    if plan.is_empty:
        return Stop(status="failed", reason="drift remains but the plan has no action for it")
    return None


def approval_stop(plan: Plan, pass_no: int = 1) -> Stop:
    """A plan beyond policy that nobody approved: nothing of it is applied. Only pass 1 asks a
    human; what a later pass found is this cycle's news, and the next cycle asks for it."""
    reasons = "; ".join(plan.validation.approval_reasons)
    if pass_no > 1:
        return Stop(status="needs_approval",
                    reason=f"pass {pass_no}'s plan needs approval ({reasons}): nothing applied, "
                           "the next cycle asks for it")
    return Stop(status="needs_approval", reason=f"needs approval ({reasons}): nothing applied")


def conclude(state: CycleState, forward: Sequence[ActionResult]) -> Stop:
    """The cycle's status from its state and each action's final result, most decisive first:
    bad input, an early stop, the route's, a failed action, an unapproved plan, the last
    verify, the last pass's stop."""
    early = _early_stop(state)
    if early:
        return early
    failed = [r for r in forward if r.state == "failed"]
    if failed:
        return Stop(status="failed", reason=f"{failed[0].action_id}: {failed[0].error}")
    return _unapproved(state) or _verified(state) or next(
        (p.stop for p in reversed(state.passes) if p.stop),
        Stop(status="max_iterations", reason="not converged within the passes of this cycle"))


def _early_stop(state: CycleState) -> Stop | None:
    if state.invalid:
        return Stop(status="invalid_input", reason=state.invalid)
    if state.halt:
        return state.halt
    if state.route and state.route.status:
        return Stop(status=state.route.status, reason=state.route.reason)
    return None


def _unapproved(state: CycleState) -> Stop | None:
    for record in state.passes:
        if record.stale:
            return Stop(status="needs_approval",
                        reason="the approved plan went stale: " + "; ".join(record.stale[:3]))
        if record.approval in ("rejected", "timed_out"):
            return Stop(status="needs_approval",
                        reason=f"plan {record.approval.replace('_', ' ')}; nothing applied")
    return None


def _verified(state: CycleState) -> Stop | None:
    verified = [p.verified for p in state.passes if p.verified]
    if not verified:
        return None
    last = verified[-1]
    if last.settled:
        return Stop(status="converged")
    if last.deadline:
        return Stop(status="deadline", reason="the cycle deadline passed before the fleet settled")
    if last.conflicts_only:
        return blocked_stop(last.conflicts_only)
    return None


def make_outcome(state: CycleState, forward: Sequence[ActionResult], *,
                 finished_at: datetime) -> Outcome:
    stop = conclude(state, forward)
    verified = [p.verified for p in state.passes if p.verified]
    first = state.initial_drift or Drift()
    return Outcome(
        target=state.target, correlation_id=state.correlation_id, status=stop.status,
        converged=stop.status in ("converged", "in_sync"), started_at=state.started_at,
        finished_at=finished_at, iterations=len(verified),
        actions_succeeded=sum(1 for r in forward if r.state == "succeeded"),
        actions_failed=sum(1 for r in forward if r.state == "failed"),
        actions_skipped=sum(1 for r in forward if r.state == "skipped"),
        initial_drift=first, final_drift=verified[-1].drift if verified else first,
        desired_version=state.desired_version,
        plan_hashes=tuple(p.plan_hash for p in state.passes if p.plan_hash),
        error=stop.reason, dry_run=state.dry_run, trigger=state.trigger,
        interval_start=state.interval_start,
        changed_fields=tuple(sorted({c for p in state.passes for c in p.changed})),
        flapping=state.flapping, fidelity=state.fidelity, degraded=state.degraded,
    )


def emit(state: CycleState, kind: EventType, detail: Mapping[str, object], *,
         events: EventSink, store: Store, at: datetime) -> None:
    """A cycle event: to the sinks always, to the audit trail unless this is a dry run."""
    event = Event(type=kind, target=state.target, correlation_id=state.correlation_id, at=at,
                  detail=dict(detail))
    events.emit(event)
    if not state.dry_run:
        store.record_event(event, actor=state.actor)


def finish(state: CycleState, forward: Sequence[ActionResult], *, policy: Policy, store: Store,
           events: EventSink, now: datetime) -> Outcome:
    """End the cycle: its outcome into the history, the breaker counted if it acted, the lease
    released, the cycle's last events out. Runs whatever happened before it."""
    outcome = make_outcome(state, forward, finished_at=now)
    # bad input leaves the history untouched (validate says why); a dry run records nothing
    if outcome.status != "invalid_input" and not state.dry_run:
        store.record_cycle(outcome)
    if state.acted and count_cycle(store, outcome, policy.breaker_failures, now):
        emit(state, "breaker_opened", {"reason": outcome.error}, events=events, store=store,
             at=now)
    if not state.dry_run:
        store.release_lease(state.target, state.correlation_id)
    if outcome.status == "converged":
        emit(state, "converged", {"iterations": outcome.iterations,
                                  "magnitude": outcome.final_drift.magnitude},
             events=events, store=store, at=now)
    emit(state, "cycle_finished", {"status": outcome.status, "error": outcome.error,
                                   "fidelity": outcome.fidelity,
                                   "degraded": list(outcome.degraded)},
         events=events, store=store, at=now)
    return outcome


def observed(snapshot: Snapshot, policy: Policy) -> dict[str, object]:
    """What the cycle state keeps of how its first snapshot was observed (shown with the
    outcome): its fidelity and why it counted as under load."""
    return {"fidelity": snapshot.fidelity, "degraded": degraded(snapshot, policy).reasons}


def drift_detail(drift: Drift) -> dict[str, object]:
    return {"urgency": drift.urgency, "magnitude": drift.magnitude,
            "drifted": drift.drifted}

