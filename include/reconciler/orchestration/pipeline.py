"""The Airflow driver of the one cycle (``core.cycle``): each step is what one task runs,
loading the cycle's state by correlation id and saving what it learnt (the DAG only wires them).

Steps re-observe rather than trust what an earlier task saw (level-triggered), pass artifacts by
reference, and are safe to re-run: a retried step converges to the same state with no duplicate
action. Every decision (route, stops, status, outcome, what is recorded) is ``core.cycle``'s,
the same the CLI's driver (``core.loop``) takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from reconciler.core import breaker as brk
from reconciler.core.compare import compare
from reconciler.core.convergence import judge_pass, within_tolerance
from reconciler.core.cycle import (
    CycleState,
    Route,
    Stop,
    Verified,
    approval_stop,
    conclude,
    decide_route,
    drift_detail,
    emit,
    finish,
    observed,
    plan_stop,
)
from reconciler.core.errors import PlanRejected
from reconciler.core.gate import GateVerdict
from reconciler.core.inflight import settled_creates
from reconciler.core.model import DesiredState, Diff, Drift, EventType, Outcome, Plan, Snapshot
from reconciler.core.oscillation import changed_fields, flapping
from reconciler.core.plan import PlanContext, check_preconditions, make_plan
from reconciler.core.ports import EventSink
from reconciler.core.sense import SenseOptions, remembered_counts, sense
from reconciler.orchestration.actuation import (
    ActuationSteps,
    BatchFailed,
    BatchRefused,
    batches_for,
)
from reconciler.orchestration.cyclestate import CycleStateSteps
from reconciler.orchestration.runtime import SystemClock, Target, load_target
from reconciler.orchestration.taskgraph import (
    Compared,
    PassDecision,
    Planned,
    PlanSummary,
    Preview,
    Sensed,
    Validated,
    Verification,
)
from reconciler.output.artifacts import ArtifactStore, artifact_location, open_artifacts
from reconciler.output.metrics import Metrics
from reconciler.output.sinks import default_sink

__all__ = ["Step", "BatchFailed", "BatchRefused", "batches_for"]


@dataclass
class Step(CycleStateSteps, ActuationSteps):
    """The steps of one cycle of one target (one Airflow run = one correlation id)."""

    target: Target
    correlation_id: str
    events: EventSink
    metrics: Metrics = field(default_factory=Metrics.from_settings, repr=False)

    @classmethod
    def open(cls, target: str, correlation_id: str, events: EventSink | None = None) -> Step:
        # default: structured log + StatsD metrics + the events webhook (reconciler.output.sinks)
        return cls(load_target(target), correlation_id, events or default_sink())

    @property
    def artifacts(self) -> ArtifactStore:
        return open_artifacts(artifact_location(self.target.config.artifacts, self.name))

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def policy(self) -> Any:
        return self.target.config.policy

    # -- sense / validate / compare -----------------------------------------------------

    def sense(self, label: str, kinds: list[str] | None = None,
              remember: bool = True) -> Sensed:
        """Capture a snapshot as an artifact. ``remember`` (not for dry runs) keeps each kind's
        listing size for the next cycle to doubt a sudden empty listing against."""
        store, policy = self.target.store, self.policy
        pending = store.pending_creates(self.name)
        options = SenseOptions(deadline_s=policy.sense_deadline_seconds,
                               last_counts=store.listing_counts(self.name, self.correlation_id),
                               doubt_empty_from=policy.doubt_empty_from,
                               pending=pending, pending_ttl_s=policy.create_pending_seconds,
                               fidelity=policy.fidelity)
        snap = sense(self.target.provider, kinds or list(self.target.kinds()), target=self.name,
                     correlation_id=self.correlation_id, clock=SystemClock(), options=options)
        if remember:
            store.save_listing_counts(self.name, self.correlation_id, remembered_counts(snap))
            store.end_creates(self.name,
                              settled_creates(pending, snap, policy.create_pending_seconds))
        ref = self.artifacts.put(f"{self.correlation_id}/{label}.json",
                                 snap.model_dump(mode="json"))
        self.metrics.snapshot(self.name, snap)
        return Sensed.of(snap, ref, policy)

    def desired(self) -> DesiredState:
        """The desired state of this cycle: read from the source once (by ``validate``) and
        kept as an artifact, so every later step and pass uses the version validate checked,
        even if the source changes meanwhile (the next cycle picks the change up)."""
        name = f"{self.correlation_id}/desired.json"
        try:
            return DesiredState.model_validate(self.artifacts.get(self.artifacts.ref(name)))
        except Exception:  # not kept yet (a missing file or S3 key): this is the first read
            pass
        desired = self.target.load_desired()
        self.artifacts.put(name, desired.model_dump(mode="json"))
        return desired

    def snapshot(self, ref: str) -> Snapshot:
        return Snapshot.model_validate(self.artifacts.get(ref))

    def validate(self, snapshot_ref: str, gate: Any) -> Validated:
        try:
            desired = self.desired()  # raises InvalidDesiredState: fail before any action
        except Exception as exc:
            self.update(invalid=str(exc))
            raise
        verdict: GateVerdict = gate.check(self.snapshot(snapshot_ref), desired)
        self.update(desired_version=desired.version, gate_passed=verdict.passed)
        return Validated.of(verdict, desired.version, len(desired.resources))

    def compare(self, snapshot_ref: str, kinds: list[str] | None = None,
                label: str = "diff") -> Compared:
        """The cycle's first compare (``label`` "diff"): its drift, events and state; a later
        one (verify's) only observes."""
        desired, snap, diff, drift = self._diff(snapshot_ref, kinds)
        ref = self.artifacts.put(f"{self.correlation_id}/{label}.json",
                                 diff.model_dump(mode="json"))
        self.metrics.drift(self.name, drift)
        if label == "diff":
            self.metrics.coverage(self.name, diff)
            state = self.update(initial_drift=drift, diff_ref=ref, snapshot_ref=snapshot_ref,
                                desired_version=desired.version,
                                flapping=tuple(sorted(diff.suppressed)),
                                **observed(snap, self.policy))
            if drift.drifted:
                self.emit("drift_detected", drift_detail(drift), state)
            if diff.suppressed:
                self.emit("oscillation_detected", {"fields": sorted(diff.suppressed),
                                                    "hint": "add them to ignore_fields"}, state)
        return Compared.of(diff, drift, ref, desired.version)

    def _diff(self, snapshot_ref: str, kinds: list[str] | None
              ) -> tuple[DesiredState, Snapshot, Diff, Drift]:
        desired = self.desired()
        snap = self.snapshot(snapshot_ref)
        diff, drift = compare(desired.resources, snap, rules=self.rules(), policy=self.policy,
                              kinds=kinds, suppress=self._fights())
        return desired, snap, diff, drift

    def _fights(self) -> frozenset[str]:
        """Fields another controller keeps reverting (core.oscillation), from recent cycles."""
        n = self.policy.flap_cycles
        if not n:
            return frozenset()
        recent = self.target.store.recent_cycles(self.name, n)
        return flapping([(*o.changed_fields, *o.flapping) for o in recent], n)

    def rules(self) -> Any:
        from reconciler.catalogue import rules_for

        return rules_for(list(self.target.kinds()))

    # -- route ----------------------------------------------------------------------------

    def route(self, drift: Drift, dry_run: bool = False,
              reset_breaker: bool = False, actor: str = "airflow") -> Route:
        """Where the cycle goes (core.cycle.decide_route, the CLI's own decision)."""
        store = self.target.store
        if reset_breaker and not dry_run:
            after = store.update_breaker(self.name, brk.reset)
            store.record_operator(self.name, actor, "breaker_reset", {"state": after.state},
                                  self.correlation_id)
        route = decide_route(drift, self.policy,
                             breaker=store.load_breaker(self.name), dry_run=dry_run,
                             manual=False, now=SystemClock().now())
        self.update(route=route)
        return route

    # -- plan -------------------------------------------------------------------------------

    def plan(self, snapshot_ref: str, pass_no: int, gate_passed: bool = True,
             kinds: list[str] | None = None,
             deadline_at: datetime | None = None) -> Planned:
        """Plan from the latest snapshot, take the target's lease, cut waves into batches.
        Each batch carries the mandate the actuation guard checks: the lease's fencing token,
        the plan's hash and the cycle's deadline (``deadline_at``, default: from now).
        No batches when the plan ends the cycle before acting (core.cycle.plan_stop)."""
        store = self.target.store
        if not store.acquire_lease(self.name, self.correlation_id,
                                   self.policy.cycle_deadline_seconds + 60):
            self.halt(Stop(status="busy", reason="another cycle holds this target's lease"))
            raise PlanRejected(["another cycle holds this target's lease"])
        fence = store.lease_fence(self.name, self.correlation_id)
        deadline_at = deadline_at or SystemClock().now() + timedelta(
            seconds=self.policy.cycle_deadline_seconds)
        plan = self._make_plan(snapshot_ref, kinds, gate_passed=gate_passed, estimates=True)
        stop = plan_stop(plan)
        if stop and stop.status == "failed" and not plan.validation.ok:
            self.halt(stop)
            raise PlanRejected(list(plan.validation.errors))
        self.target.store.record_plan(plan, actor="airflow")
        ref = self.artifacts.put(f"{self.correlation_id}/plan-{pass_no}.json",
                                 plan.model_dump(mode="json"))
        state = self.must_state()
        record = state.pass_(pass_no).model_copy(update={
            "plan_hash": plan.hash, "needs_approval": plan.validation.needs_approval})
        self.save(state.with_pass(record).model_copy(update={"fence": fence or 0,
                                                            "halt": stop or state.halt}))
        summary = PlanSummary.of(plan, ref, fence=fence, deadline_at=deadline_at,
                                 stop=stop is not None)
        mandate = {"fence": fence, "deadline_at": deadline_at}
        batches = () if stop else batches_for(plan, ref, self.policy.batch_size)
        return Planned(summary=summary,
                       batches=tuple(b.model_copy(update=mandate) for b in batches))

    def later_pass_needs_approval(self, pass_no: int, plan_ref: str) -> str:
        """Only pass 1 asks a human: a later pass's plan beyond policy ends the cycle."""
        stop = approval_stop(self.load_plan(plan_ref), pass_no)
        self.end_pass(pass_no, stop)
        return stop.reason or ""

    def end_pass(self, pass_no: int, stop: Stop) -> None:
        """Pass ``pass_no`` ends the cycle before acting (no progress, bounds, approval)."""
        state = self.must_state()
        self.save(state.with_pass(state.pass_(pass_no).model_copy(update={"stop": stop})))

    def approval(self, pass_no: int, approval: str, stale: list[str] | None = None) -> None:
        """What became of the human approval pass ``pass_no``'s plan asked for."""
        state = self.must_state()
        record = state.pass_(pass_no).model_copy(update={"approval": approval,
                                                          "stale": tuple(stale or ())})
        self.save(state.with_pass(record))

    def preview(self, snapshot_ref: str, kinds: list[str] | None = None) -> Preview:
        """A plan for reading only (low urgency, dry run, open breaker): no lease, no actions."""
        plan = self._make_plan(snapshot_ref, kinds, gate_passed=True, estimates=False)
        ref = self.artifacts.put(f"{self.correlation_id}/preview.json",
                                 plan.model_dump(mode="json"))
        return Preview(plan_ref=ref, hash=plan.hash, counts=plan.audit.counts,
                       needs_approval=plan.validation.needs_approval,
                       errors=tuple(plan.validation.errors))

    def _make_plan(self, snapshot_ref: str, kinds: list[str] | None, *, gate_passed: bool,
                   estimates: bool) -> Plan:
        desired, snap, diff, _ = self._diff(snapshot_ref, kinds)
        ctx = PlanContext(target=self.name, correlation_id=self.correlation_id,
                          desired_version=desired.version, policy=self.policy,
                          rules=self.rules(), now=SystemClock().now(),
                          estimates=self.target.store.duration_estimates(self.name)
                          if estimates else {},
                          allow_deletions=gate_passed)
        return make_plan(diff, snap, ctx)

    def revalidate(self, plan_ref: str) -> list[str]:
        """Preconditions of an approved plan that a fresh observation no longer meets."""
        plan = self.load_plan(plan_ref)
        kinds = sorted({a.target.kind for a in plan.actions})
        fresh = self.snapshot(self.sense("revalidate", kinds or None).ref)
        return check_preconditions(plan, fresh)

    # -- verify / continue ------------------------------------------------------------------

    def verify(self, pass_no: int, within_since: float | None, now: float) -> Verification:
        """Re-sense and judge one pass. ``settled`` once within tolerance for settle_seconds."""
        sensed = self.sense(f"verify-{pass_no}")
        result = self.compare(sensed.ref, label=f"diff-verify-{pass_no}")  # keep the first
        # a create AWS has not listed yet is neither missing nor done: keep waiting for it
        waiting = result.counts.in_flight
        within = not waiting and within_tolerance(result.drift, self.policy.tolerance)
        since = (within_since if within_since is not None else now) if within else None
        settled = within and now - (since or now) >= self.policy.settle_seconds
        check = Verified(drift=result.drift, within=within, settled=settled, in_flight=waiting,
                         conflicts_only=() if result.counts.to_act_on else result.conflicts,
                         snapshot_ref=sensed.ref)
        return Verification(pass_no=pass_no, check=check, within_since=since,
                            poke_factor=sensed.poke_factor)

    def verified(self, result: Verification) -> None:
        """Keep a pass's final verify (and the fields its updates set) in the state."""
        pass_no, state = result.pass_no, self.must_state()
        record = state.pass_(pass_no)
        changed: tuple[str, ...] = ()
        try:
            plan = self.load_plan(self.artifacts.ref(f"{self.correlation_id}/plan-{pass_no}.json"))
            forward = self.target.store.final_results(self.name, self.correlation_id)
            changed = changed_fields(plan.actions, forward)
        except Exception:  # no plan for this pass (a missing file or S3 key)
            pass
        self.save(state.with_pass(record.model_copy(update={"verified": result.check,
                                                            "changed": changed})))

    def should_continue(self, drifts: list[Drift], pass_no: int,
                        elapsed_s: float) -> PassDecision:
        """Before pass ``pass_no`` (>= 2): go on only while drift falls and bounds allow."""
        verdict = judge_pass(drifts, policy=self.policy, actuation_ok=True,
                             past_deadline=elapsed_s >= self.policy.cycle_deadline_seconds,
                             iteration=pass_no - 1)
        if verdict.done and verdict.status and verdict.status != "converged":
            self.end_pass(pass_no - 1, Stop(status=verdict.status, reason=verdict.reason or None))
        return PassDecision(proceed=not verdict.done, status=verdict.status,
                            reason=verdict.reason or "")

    # -- record -------------------------------------------------------------------------------

    def record(self, failed_tasks: list[str] | None = None) -> Outcome:
        """Write the outcome, history and breaker; release the lease (core.cycle.finish).
        Runs whatever happened; ``failed_tasks`` name tasks of the run that failed, for a
        cycle that ends without a more telling reason."""
        state, store = self.must_state(), self.target.store
        forward = store.final_results(self.name, self.correlation_id)
        if failed_tasks and conclude(state, forward).status == "max_iterations" and not any(
                p.stop for p in state.passes):  # nothing more telling: say which task failed
            state = self.save(state.model_copy(update={"halt": Stop(
                status="failed", reason="task(s) failed: " + ", ".join(sorted(failed_tasks)))}))
        outcome = finish(state, forward,
                         policy=self.policy, store=store, events=self.events,
                         now=SystemClock().now())
        self.metrics.cycle(outcome, store.load_breaker(self.name))
        return outcome

    # -- events -------------------------------------------------------------------------------

    def emit(self, kind: EventType, detail: dict[str, Any],
             state: CycleState | None = None) -> None:
        state = state or self.must_state()
        emit(state, kind, detail, events=self.events, store=self.target.store,
             at=SystemClock().now())
