"""The actuation steps of a cycle under an orchestrator: approve, run one batch of one wave
under the actuation guard, wait for a wave's turn, stand down, roll back the failed wave."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from reconciler.core.actuate import Actuator
from reconciler.core.errors import PlanRejected
from reconciler.core.guard import ActuationGuard, Mandate
from reconciler.core.model import Approval, Plan
from reconciler.core.rollback import restore_point, to_undo
from reconciler.orchestration.runtime import SystemClock
from reconciler.orchestration.taskgraph import Batch, BatchResult, PlanSummary, RolledBack
from reconciler.output.sinks import AuditSink, FanOutSink

if TYPE_CHECKING:
    from reconciler.core.ports import EventSink
    from reconciler.orchestration.runtime import Target
    from reconciler.output.artifacts import ArtifactStore

__all__ = ["ActuationSteps", "BatchFailed", "BatchRefused", "batches_for", "final_results",
           "MAX_MAPPED"]

MAX_MAPPED = 1000  # stays under Airflow's max_map_length (1024)


class ActuationSteps:
    """The part of ``pipeline.Step`` that touches the fleet (mixed into it)."""

    target: Target
    correlation_id: str
    events: EventSink

    if TYPE_CHECKING:
        @property
        def name(self) -> str: ...
        @property
        def policy(self) -> Any: ...
        @property
        def artifacts(self) -> ArtifactStore: ...

    def approve(self, plan_hash: str, actor: str, surface: str = "airflow") -> None:
        """Record a human's approval of this exact plan: the guard lets it run, nothing else."""
        self.target.store.record_approval(Approval(target=self.name, plan_hash=plan_hash,
                                                   actor=actor, surface=surface,
                                                   at=SystemClock().now()))

    def abort(self, plan_hash: str, reason: str) -> None:
        """Tell the pass's waiting batches to stand down (see wave_status)."""
        self.artifacts.put(self._abort_name(plan_hash), {"reason": reason})

    def load_plan(self, ref: str) -> Plan:
        return Plan.model_validate(self.artifacts.get(ref))

    # -- actuate ----------------------------------------------------------------------------

    def actuate(self, batch: Batch) -> BatchResult:
        """Run one batch of one wave; record every result; fail loudly if an action failed."""
        plan = self.load_plan(batch.plan_ref)
        wave = plan.waves[batch.wave]
        actions = wave.actions[batch.start:batch.end]
        sliced = wave.model_copy(update={"actions": actions})
        one_wave = plan.model_copy(update={"waves": (sliced,)})
        actuator = self._actuator(self._guard(plan, batch))
        result = actuator.run(one_wave)  # each result is recorded as its action ends
        counts = BatchResult(succeeded=result.count("succeeded"), failed=result.count("failed"),
                             skipped=result.count("skipped"))
        where = f"wave {wave.index + 1} batch {batch.batch}"
        refused = [r.error for r in result.results if (r.error or "").startswith("refused:")]
        if refused:
            raise BatchRefused([f"{where}: {refused[0]}"])
        if result.error:
            raise BatchFailed(f"{where}: {result.error}")
        return counts

    def _guard(self, plan: Plan, mandate: Batch | PlanSummary) -> ActuationGuard:
        """The guard for this plan under the mandate a batch (or the rollback) was given."""
        provider = self.target.provider
        return ActuationGuard(self.target.store, SystemClock(), self.name, plan, Mandate(
            holder=self.correlation_id, fence=mandate.fence or -1, plan_hash=mandate.hash,
            deadline_at=mandate.deadline_at or SystemClock().now(),
            rollback_grace_s=self.policy.rollback_grace_seconds),
            provider if hasattr(provider, "read") else None)

    def wave_status(self, plan_ref: str, wave: int) -> str:
        """``ready`` when every action of the earlier waves succeeded, ``abort`` once the pass
        is rolling back, else ``wait``. Batches of one wave run in parallel; waves in order."""
        plan = self.load_plan(plan_ref)
        if self._aborted(plan.hash):
            return "abort"
        earlier = {a.id for w in plan.waves[:wave] for a in w.actions}
        if not earlier:
            return "ready"
        rows = self.target.store.audit_rows(target=self.name, kind="action",
                                            correlation_id=self.correlation_id, limit=100_000)
        done = {r["payload"]["action_id"] for r in rows
                if r["payload"]["state"] == "succeeded" and not r["payload"].get("rollback")}
        return "ready" if earlier <= done else "wait"

    def _abort_name(self, plan_hash: str) -> str:
        return f"{self.correlation_id}/abort-{plan_hash}.json"

    def _aborted(self, plan_hash: str) -> bool:
        try:
            self.artifacts.get(self.artifacts.ref(self._abort_name(plan_hash)))
        except Exception:  # no marker (a missing file or S3 key)
            return False
        return True

    def rollback(self, summary: PlanSummary) -> RolledBack:
        """Undo back to the latest rollback point the plan names at or before the failed wave
        (core.rollback), newest first (all batches), after telling the batches still waiting
        for their wave to stand down. ``summary`` is the failed pass's plan summary (its ref
        and the mandate its batches ran under)."""
        plan = self.load_plan(summary.plan_ref)
        self.abort(plan.hash, "a batch failed")
        rows = self.target.store.audit_rows(target=self.name, kind="action",
                                            correlation_id=self.correlation_id, limit=100_000)
        final = final_results(rows, {a.id for a in plan.actions})
        failed_waves = sorted({r["wave"] for r in final.values() if r["state"] == "failed"})
        if not failed_waves:  # a failed attempt that a retry then fixed is no failure
            return RolledBack()
        failed = failed_waves[0]
        point = restore_point(plan, failed)
        done = {aid: r["finished_at"] for aid, r in final.items() if r["state"] == "succeeded"}
        undo = self._actuator(self._guard(plan, summary)).rollback_actions(
            failed, to_undo(plan, point, failed, done), "a batch of this wave failed",
            point=point)
        return RolledBack(rolled_back=sum(1 for r in undo if r.state == "succeeded"),
                          failed=sum(1 for r in undo if r.state == "failed"), wave=failed,
                          point=point)

    def _actuator(self, guard: ActuationGuard) -> Actuator:
        """One batch's executor. Under Airflow the pool's slots (max_parallel) are the
        concurrency limit, so a batch applies its actions one at a time; a failed wave is
        undone by the pass's rollback task, across batches, not inside one."""
        policy = self.policy.model_copy(update={"on_failure": "continue", "max_parallel": 1})
        # action events also go to the audit trail (Step.emit audits the cycle-level ones)
        events = FanOutSink([self.events, AuditSink(self.target.store, actor="airflow")])
        return Actuator(applier=self.target.provider, policy=policy, events=events,
                        clock=SystemClock(), target=self.name,
                        correlation_id=self.correlation_id, ledger=self.target.store,
                        guard=guard, results_log=self.target.store)


def final_results(rows: list[dict[str, Any]],
                   ids: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """Each forward action's last recorded result (rows come newest first)."""
    final: dict[str, dict[str, Any]] = {}
    for row in rows:
        result = row["payload"]
        if not result.get("rollback") and (ids is None or result["action_id"] in ids):
            final.setdefault(result["action_id"], result)
    return final


class BatchFailed(Exception):
    """A batch had a failed action (after its own retries): let the orchestrator retry it."""


class BatchRefused(PlanRejected):
    """The actuation guard refused a batch (no lease, no approval, deadline): no retry helps."""


def batches_for(plan: Plan, ref: str, batch_size: int) -> list[Batch]:
    """Cut every wave into batches, in wave order; a batch references a slice of the plan
    artifact, so a 10,000-action plan is a few hundred small XCom entries (<= MAX_MAPPED).

    A batch applies its actions one at a time, so a wave's batches are the most actions that
    can run at once. A degraded plan (core.fidelity) cuts each wave into at most its
    ``degradation.max_parallel`` batches: fewer actions at once, whatever the pool's slots."""
    total = sum(len(w.actions) for w in plan.waves)
    size = max(batch_size, math.ceil(total / max(1, MAX_MAPPED - len(plan.waves))))
    cap = plan.degradation.max_parallel
    out: list[Batch] = []
    for wave in plan.waves:
        n = len(wave.actions)
        wave_size = size if cap is None else max(size, math.ceil(n / max(1, cap)))
        out += [Batch(plan_ref=ref, hash=plan.hash, wave=wave.index, batch=b, start=start,
                      end=min(n, start + wave_size), label=f"wave {wave.index + 1} batch {b + 1}")
                for b, start in enumerate(range(0, n, wave_size))]
    return out
