"""One cycle cut into resumable steps for an orchestrator: JSON in, JSON out, state in the store.

Each step is what one Airflow task runs (the DAG only wires them). Steps re-observe rather than
trust what an earlier task saw (level-triggered), pass artifacts by reference, and are safe to
re-run: a retried step converges to the same state with no duplicate action.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from reconciler.actuation import (
    ActuationSteps,
    BatchFailed,
    BatchRefused,
    batches_for,
    final_results,
)
from reconciler.artifacts import ArtifactStore, open_artifacts
from reconciler.config import reconciler_home
from reconciler.core import breaker as brk
from reconciler.core.compare import compare
from reconciler.core.convergence import count_cycle, in_window, judge_pass, within_tolerance
from reconciler.core.errors import PlanRejected
from reconciler.core.gate import GateVerdict
from reconciler.core.inflight import settled_creates
from reconciler.core.model import (
    ActionResult,
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
from reconciler.core.plan import PlanContext, check_preconditions, make_plan
from reconciler.core.ports import EventSink
from reconciler.core.sense import SenseOptions, remembered_counts, sense
from reconciler.metrics import Metrics
from reconciler.outcomes import CycleFacts, cycle_status, last
from reconciler.runtime import SystemClock, Target, load_target
from reconciler.sinks import default_sink

__all__ = ["Step", "CycleFacts", "BatchFailed", "BatchRefused", "batches_for", "cycle_status"]



@dataclass
class Step(ActuationSteps):
    """The steps of one cycle of one target (one Airflow run = one correlation id)."""

    target: Target
    correlation_id: str
    events: EventSink
    metrics: Metrics = field(default_factory=Metrics.from_settings, repr=False)

    @classmethod
    def open(cls, target: str, correlation_id: str, events: EventSink | None = None) -> Step:
        # default: structured log + StatsD metrics + the events webhook (reconciler.sinks)
        return cls(load_target(target), correlation_id, events or default_sink())

    @property
    def artifacts(self) -> ArtifactStore:
        where = self.target.config.artifacts or str(reconciler_home() / "artifacts" / self.name)
        return open_artifacts(where)

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def policy(self) -> Any:
        return self.target.config.policy

    # -- sense / validate / compare -----------------------------------------------------

    def sense(self, label: str, kinds: list[str] | None = None,
              remember: bool = True) -> dict[str, Any]:
        """Capture a snapshot as an artifact. ``remember`` (not for dry runs) keeps each kind's
        listing size for the next cycle to doubt a sudden empty listing against."""
        store, policy = self.target.store, self.policy
        pending = store.pending_creates(self.name)
        options = SenseOptions(deadline_s=policy.sense_deadline_seconds,
                               last_counts=store.listing_counts(self.name, self.correlation_id),
                               doubt_empty_from=policy.doubt_empty_from,
                               pending=pending, pending_ttl_s=policy.create_pending_seconds)
        snap = sense(self.target.provider, kinds or list(self.target.kinds()), target=self.name,
                     correlation_id=self.correlation_id, clock=SystemClock(), options=options)
        if remember:
            store.save_listing_counts(self.name, self.correlation_id, remembered_counts(snap))
            store.end_creates(self.name,
                              settled_creates(pending, snap, policy.create_pending_seconds))
        ref = self.artifacts.put(f"{self.correlation_id}/{label}.json",
                                 snap.model_dump(mode="json"))
        self.metrics.snapshot(self.name, snap)
        return {"ref": ref, "completeness": snap.completeness, "fidelity": snap.fidelity,
                "count": len(snap.resources), "latency_s": snap.latency_s,
                "in_flight": len(snap.in_flight),
                "kinds": {k: {"completeness": s.completeness, "errors": list(s.errors[:3])}
                          for k, s in snap.kinds.items()},
                "complete_enough": snap.completeness >= self.policy.completeness_threshold}

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

    def validate(self, snapshot_ref: str, gate: Any) -> dict[str, Any]:
        desired = self.desired()  # raises InvalidDesiredState: fail before any action
        verdict: GateVerdict = gate.check(self.snapshot(snapshot_ref), desired)
        return {"passed": verdict.passed, "failures": list(verdict.failures),
                "suite": verdict.suite, "desired_version": desired.version,
                "resources": len(desired.resources)}

    def compare(self, snapshot_ref: str, kinds: list[str] | None = None,
                label: str = "diff") -> dict[str, Any]:
        desired, _, diff, drift = self._diff(snapshot_ref, kinds)
        ref = self.artifacts.put(f"{self.correlation_id}/{label}.json",
                                 diff.model_dump(mode="json"))
        self.metrics.drift(self.name, drift)
        if drift.drifted:
            self.emit("drift_detected", {"urgency": drift.urgency, "magnitude": drift.magnitude})
        if diff.suppressed:
            self.emit("oscillation_detected", {"fields": list(diff.suppressed),
                                                "hint": "add them to ignore_fields"})
        return {"drift": drift.model_dump(mode="json"), "diff_ref": ref,
                "desired_version": desired.version, "suppressed": list(diff.suppressed),
                "counts": {"add": len(diff.additions), "modify": len(diff.modifications),
                           "delete": len(diff.deletions), "conflicts": len(diff.conflicts),
                           "in_flight": len(diff.in_flight)}}

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
        from reconciler.kinds import rules_for

        return rules_for(list(self.target.kinds()))

    # -- route ----------------------------------------------------------------------------

    def route(self, drift: dict[str, Any], dry_run: bool = False,
              reset_breaker: bool = False) -> dict[str, str]:
        """Where the cycle goes: ``record`` (in sync), ``report`` (look, don't touch),
        ``plan`` or ``page`` (act; page first when critical)."""
        d = Drift.model_validate(drift)
        store = self.target.store
        if reset_breaker:
            store.update_breaker(self.name, brk.reset)
            store.record_operator(self.name, "airflow", "breaker_reset", {},
                                  self.correlation_id)
        breaker = store.load_breaker(self.name)
        if within_tolerance(d, self.policy.tolerance):
            return {"route": "record", "reason": "in_sync"}
        if dry_run:
            return {"route": "report", "reason": "reported"}
        if not brk.allows_actuation(breaker):
            return {"route": "report", "reason": "breaker_open"}
        # the same order as the CLI's cycle: drift it would not act on anyway is "reported",
        # whatever the window; only drift it would act on is held back by a closed window
        if d.urgency not in self.policy.auto_apply:
            return {"route": "report", "reason": "reported"}
        if not in_window(SystemClock().now(), self.policy.windows):
            return {"route": "report", "reason": "window_closed"}
        return {"route": "page" if d.urgency == "critical" else "plan", "reason": d.urgency}

    # -- plan -------------------------------------------------------------------------------

    def plan(self, snapshot_ref: str, pass_no: int, gate_passed: bool = True,
             kinds: list[str] | None = None,
             deadline_at: datetime | None = None) -> dict[str, Any]:
        """Plan from the latest snapshot, take the target's lease, cut waves into batches.
        Each batch carries the mandate the actuation guard checks: the lease's fencing token,
        the plan's hash and the cycle's deadline (``deadline_at``, default: from now)."""
        store = self.target.store
        if not store.acquire_lease(self.name, self.correlation_id,
                                   self.policy.cycle_deadline_seconds + 60):
            self.note("busy", "another cycle holds this target's lease (a CLI apply or a run)")
            raise PlanRejected(["another cycle holds this target's lease"])
        fence = store.lease_fence(self.name, self.correlation_id)
        deadline_at = deadline_at or SystemClock().now() + timedelta(
            seconds=self.policy.cycle_deadline_seconds)
        plan = self._make_plan(snapshot_ref, kinds, gate_passed=gate_passed, estimates=True)
        if not plan.validation.ok:
            self.note("failed", "plan rejected: " + "; ".join(plan.validation.errors))
            raise PlanRejected(list(plan.validation.errors))
        self.target.store.record_plan(plan, actor="airflow")
        ref = self.artifacts.put(f"{self.correlation_id}/plan-{pass_no}.json",
                                 plan.model_dump(mode="json"))
        summary = {"plan_ref": ref, "hash": plan.hash,
                   "needs_approval": plan.validation.needs_approval,
                   "approval_reasons": list(plan.validation.approval_reasons),
                   "counts": plan.audit.counts, "max_risk": plan.audit.max_risk,
                   "waves": len(plan.waves), "fence": fence,
                   "deadline_at": deadline_at.isoformat()}
        mandate = {"fence": fence, "deadline_at": summary["deadline_at"]}
        return {"summary": summary,
                "batches": [{**b, **mandate}
                            for b in batches_for(plan, ref, self.policy.batch_size)]}

    def preview(self, snapshot_ref: str, kinds: list[str] | None = None) -> dict[str, Any]:
        """A plan for reading only (low urgency, dry run, open breaker): no lease, no actions."""
        plan = self._make_plan(snapshot_ref, kinds, gate_passed=True, estimates=False)
        ref = self.artifacts.put(f"{self.correlation_id}/preview.json",
                                 plan.model_dump(mode="json"))
        return {"plan_ref": ref, "hash": plan.hash, "counts": plan.audit.counts,
                "needs_approval": plan.validation.needs_approval,
                "errors": list(plan.validation.errors)}

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
        fresh = self.snapshot(self.sense("revalidate", kinds or None)["ref"])
        return check_preconditions(plan, fresh)

    def note(self, status: str, reason: str) -> None:
        """Why this cycle stops early (busy, a rejected plan), for ``record`` to report: a task
        that fails leaves no XCom, and the outcome must say what happened, not guess."""
        self.artifacts.put(f"{self.correlation_id}/stop.json",
                           {"status": status, "reason": reason})

    def _note(self) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.artifacts.get(
                self.artifacts.ref(f"{self.correlation_id}/stop.json"))
        except Exception:  # no note (a missing file or S3 key): nothing stopped it early
            return None
        return found

    # -- verify / continue ------------------------------------------------------------------

    def verify(self, pass_no: int, within_since: float | None, now: float) -> dict[str, Any]:
        """Re-sense and judge one pass. ``settled`` once within tolerance for settle_seconds."""
        sensed = self.sense(f"verify-{pass_no}")
        result = self.compare(sensed["ref"], label=f"diff-verify-{pass_no}")  # keep the first
        # a create AWS has not listed yet is neither missing nor done: keep waiting for it
        waiting = result["counts"]["in_flight"]
        within = not waiting and within_tolerance(Drift.model_validate(result["drift"]),
                                                  self.policy.tolerance)
        since = (within_since if within_since is not None else now) if within else None
        settled = within and now - (since or now) >= self.policy.settle_seconds
        return {"snapshot_ref": sensed["ref"], "drift": result["drift"], "within": within,
                "within_since": since, "settled": settled, "pass": pass_no,
                "in_flight": waiting, "only_conflicts": _only_conflicts(result["counts"])}

    def should_continue(self, drifts: list[dict[str, Any]], pass_no: int,
                        elapsed_s: float) -> dict[str, Any]:
        """Before pass ``pass_no`` (>= 2): go on only while drift falls and bounds allow."""
        history = [Drift.model_validate(d) for d in drifts]
        verdict = judge_pass(history, policy=self.policy, actuation_ok=True,
                             past_deadline=elapsed_s >= self.policy.cycle_deadline_seconds,
                             iteration=pass_no - 1)
        return {"continue": not verdict.done, "status": verdict.status, "reason": verdict.reason}

    # -- record -------------------------------------------------------------------------------

    def record(self, facts: CycleFacts) -> dict[str, Any]:
        """Write the outcome, history and breaker; release the lease. Runs whatever happened."""
        store = self.target.store
        rows = store.audit_rows(target=self.name, kind="action",
                                correlation_id=self.correlation_id, limit=100_000)
        # each action's last result: an attempt an Airflow retry then fixed is not a failure
        forward = list(final_results(rows).values())
        final = last(facts.verifies) or {}
        facts.note = facts.note or self._note()
        status, error = cycle_status(facts, forward)
        first = Drift.model_validate(facts.initial_drift or {})
        outcome = Outcome(
            target=self.name, correlation_id=self.correlation_id, status=status,
            converged=status in ("converged", "in_sync"), started_at=facts.started_at,
            finished_at=SystemClock().now(), iterations=sum(1 for v in facts.verifies if v),
            actions_succeeded=sum(1 for r in forward if r["state"] == "succeeded"),
            actions_failed=sum(1 for r in forward if r["state"] == "failed"),
            actions_skipped=sum(1 for r in forward if r["state"] == "skipped"),
            initial_drift=first,
            final_drift=Drift.model_validate(final.get("drift") or facts.initial_drift or {}),
            desired_version=facts.desired_version, plan_hashes=tuple(facts.plan_hashes),
            error=error, dry_run=facts.dry_run, trigger=facts.trigger,
            interval_start=facts.interval_start, changed_fields=self._changed(forward),
            flapping=tuple(sorted(set(facts.flapping))),
            requeue_after_s=None if status in ("converged", "in_sync") else 60.0,
        )
        if status != "invalid_input":  # bad input leaves the history untouched (validate says why)
            store.record_cycle(outcome)
        if facts.acted:
            self._breaker_after(outcome)
        store.release_lease(self.name, self.correlation_id)
        self.metrics.cycle(outcome, store.load_breaker(self.name))
        if status == "converged":
            self.emit("converged", {"iterations": outcome.iterations})
        self.emit("cycle_finished", {"status": status})
        return outcome.model_dump(mode="json")

    def _breaker_after(self, outcome: Outcome) -> None:
        if count_cycle(self.target.store, outcome, self.policy.breaker_failures,
                       SystemClock().now()):
            self.emit("breaker_opened", {"reason": outcome.error})

    def _changed(self, forward: list[dict[str, Any]]) -> tuple[str, ...]:
        """Fields this cycle's updates set (from each pass's plan and the recorded results)."""
        results = [ActionResult.model_validate(r) for r in forward]
        changed: set[str] = set()
        for n in range(1, self.policy.max_iterations + 1):
            try:
                plan = self.load_plan(self.artifacts.ref(f"{self.correlation_id}/plan-{n}.json"))
            except Exception:  # no such pass (a missing file or S3 key)
                break
            changed.update(changed_fields(plan.actions, results))
        return tuple(sorted(changed))

    # -- events -------------------------------------------------------------------------------

    def emit(self, kind: EventType, detail: dict[str, Any]) -> None:
        event = Event(type=kind, target=self.name, correlation_id=self.correlation_id,
                      at=SystemClock().now(), detail=detail)
        self.events.emit(event)
        self.target.store.record_event(event, actor="airflow")


def _only_conflicts(counts: dict[str, int]) -> int:
    """How many conflicts are left when nothing else is (0 otherwise): a blocked cycle."""
    rest = sum(counts.get(k, 0) for k in ("add", "modify", "delete", "in_flight"))
    return 0 if rest else counts.get("conflicts", 0)
