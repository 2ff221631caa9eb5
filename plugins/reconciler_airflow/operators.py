"""The mapped actuation operator: one batch of one wave; later waves defer until their turn."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import (
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSkipException,
)

from reconciler.orchestration import taskgraph as tg
from reconciler.orchestration.taskgraph import ApprovalDecision, Batch, PlanSummary, XComJson
from reconciler_airflow.links import CycleLink
from reconciler_airflow.triggers import WaveReadyTrigger

__all__ = ["ActuateOperator", "PlanApproval"]


class ActuateOperator(BaseOperator):
    """Apply one batch of a plan wave. Mapped over every batch of a pass, in wave order.

    A batch of wave N runs once all of waves 1..N-1 succeeded; until then it defers to
    :class:`WaveReadyTrigger` (no worker or pool slot held, so earlier waves always get one).
    A failed action fails the task, Airflow retries it (done actions come back "unchanged"),
    and the pass's ``rollback`` task undoes the failed wave and tells waiting batches to skip.
    """

    ui_color = "#f0e4d0"
    operator_extra_links = (CycleLink(),)

    def __init__(self, *, target: str, batch: XComJson, wait_s: float = 900,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # kept as the XCom's JSON (map_index_template renders its label); read by _batch()
        self.target, self.batch, self.wait_s = target, batch, wait_s

    def _batch(self) -> Batch:
        """This task's batch, validated first: a hand-edited XCom fails the task, unretried,
        before any provider call."""
        from reconciler_airflow.tasks import read_xcom

        return read_xcom(Batch, self.batch, f"{self.task_id} batch")

    def execute(self, context: Any) -> XComJson:
        batch = self._batch()
        step = self._step()
        status = step.wave_status(batch.plan_ref, batch.wave)
        if status == "wait" and _in_process_test():
            # dag.test() / `airflow dags test` run tasks one at a time in this process and a
            # deferral's trigger inline: a batch deferred there for an earlier wave would block
            # the very task it waits for. Reschedule instead, so the earlier wave runs first.
            raise AirflowRescheduleException(
                reschedule_date=datetime.now(UTC) + timedelta(seconds=1))
        if status == "wait":
            self.defer(
                trigger=WaveReadyTrigger(self.target, step.correlation_id, batch.plan_ref,
                                         batch.wave, timeout_s=self.wait_s),
                method_name="resume", timeout=timedelta(seconds=self.wait_s + 60))
        return self.resume(context, {"status": status})

    def resume(self, context: Any, event: dict[str, Any]) -> XComJson:
        batch = self._batch()
        if event.get("status") == "abort":
            raise AirflowSkipException("this pass was stood down: a batch failed (see rollback) "
                                       "or the approved plan went stale (see approve)")
        if event.get("status") != "ready":
            raise TimeoutError(f"wave {batch.wave + 1} never became ready")
        from reconciler.orchestration.pipeline import BatchRefused

        try:
            counts = self._step().actuate(batch)
        except BatchRefused as exc:  # no lease, no approval, past the deadline: no retry helps
            raise AirflowFailException(str(exc)) from exc
        return dict(counts.model_dump(mode="json"))

    def _step(self) -> Any:
        from reconciler_airflow.tasks import correlation_id

        return self._open(self.target, correlation_id(self.target))

    @staticmethod
    def _open(target: str, cid: str) -> Any:
        from reconciler.orchestration.pipeline import Step
        from reconciler_airflow import digestkey, stats

        digestkey.install()
        stats.install()
        return Step.open(target, cid)


def _in_process_test() -> bool:
    """Whether tasks run in-process, one at a time (dag.test(), ``airflow dags test``)."""
    try:
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms
    except ImportError:  # another Airflow layout: a real supervisor, defer as usual
        return False
    return isinstance(getattr(task_runner, "SUPERVISOR_COMMS", None), InProcessSupervisorComms)


class PlanApproval(ApprovalOperator):
    """Airflow's approval step, plus a record of the decision: an XCom ``decision`` for the
    cycle's outcome and an audit row naming who approved or rejected which plan."""

    def __init__(self, *, target: str, pass_no: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target, self.pass_no = target, pass_no

    def execute(self, context: Any) -> Any:
        # from the cycle's state, not an XCom: a missing XCom must not read as "no approval
        # needed" (the guard would refuse the batches anyway: no approval of this plan hash)
        state = self._step().must_state()
        if not state.pass_(self.pass_no).needs_approval:
            raise AirflowSkipException("within the blast-radius policy: no approval needed")
        return super().execute(context)

    def _step(self) -> Any:
        from reconciler_airflow.tasks import correlation_id

        return ActuateOperator._open(self.target, correlation_id(self.target))

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        summary = self._summary(context)
        chosen = list(event.get("chosen_options") or [])
        user = event.get("responded_by_user") or {}
        by = (user.get("name") or user.get("id")) if isinstance(user, dict) else None
        decision = ApprovalDecision(approved=self.APPROVE in chosen,
                                    timed_out=bool(event.get("timedout")),
                                    by=str(by) if by is not None else None)
        if decision.approved and not self._assignee(user):
            # Airflow's API refuses non-assignees unless every user is an admin
            # (simple_auth_manager_all_admins): the target's approvers still decide
            self.log.warning("approval by %s refused: not an approver of %s", decision.by,
                             self.target)
            decision = decision.model_copy(update={"approved": False, "refused": True})
            event = {**event, "chosen_options": [self.REJECT]}  # skip actuate, as a rejection
        if decision.approved:
            decision = decision.model_copy(update={"stale": self._still_valid(summary)})
            if not decision.stale:
                self._record_approval(summary, decision)
        context["ti"].xcom_push(key=tg.DECISION_KEY, value=decision.model_dump(mode="json"))
        self._step().approval(self.pass_no, "stale" if decision.stale else
                              "approved" if decision.approved else
                              "timed_out" if decision.timed_out else "rejected",
                              list(decision.stale))
        self._audit(summary, decision)
        return super().execute_complete(context, event)

    def _summary(self, context: Any) -> PlanSummary:
        """The plan this approval answers for, validated first: a decision on a malformed or
        missing summary must not record an approval of anything."""
        from reconciler_airflow.tasks import read_xcom

        task = tg.plan_task(self.pass_no)
        return read_xcom(PlanSummary, context["ti"].xcom_pull(task_ids=task, key=tg.SUMMARY_KEY),
                     task)

    def _assignee(self, user: Any) -> bool:
        """Whether the responder is one of the task's assigned users (anyone, when none)."""
        if not self.assigned_users:
            return True
        uid = str(user.get("id")) if isinstance(user, dict) else None
        return uid in {str(u["id"]) for u in self.assigned_users}

    def _record_approval(self, summary: PlanSummary, decision: ApprovalDecision) -> None:
        """The store's approval of this plan hash is what lets ``actuate`` act (core.guard):
        marking this task successful by hand records none, so nothing beyond policy runs."""
        self._step().approve(summary.hash, decision.actor)

    def _still_valid(self, summary: PlanSummary) -> list[str]:
        """An approval may come long after the plan: re-check it against a fresh observation
        and, if the fleet moved on, stand the batches down instead of applying it late."""
        step = self._step()
        stale: list[str] = step.revalidate(summary.plan_ref)
        if stale:
            self.log.warning("approved plan %s is stale, nothing applied: %s",
                             summary.hash[:12], stale)
            step.abort(summary.hash, "the approved plan went stale")
        return stale

    def _audit(self, summary: PlanSummary, decision: ApprovalDecision) -> None:
        step = self._step()
        step.target.store.record_operator(
            self.target, decision.actor,
            "plan_stale" if decision.stale else
            "approval_refused" if decision.refused else
            "plan_approved" if decision.approved else "plan_rejected",
            {"plan_hash": summary.hash, "timed_out": decision.timed_out,
             "stale": list(decision.stale)}, step.correlation_id)
