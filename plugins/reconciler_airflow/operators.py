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

    def __init__(self, *, target: str, batch: dict[str, Any], wait_s: float = 900,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target, self.batch, self.wait_s = target, batch, wait_s

    def execute(self, context: Any) -> dict[str, int]:
        step = self._step()
        status = step.wave_status(self.batch["plan_ref"], self.batch["wave"])
        if status == "wait" and _in_process_test():
            # dag.test() / `airflow dags test` run tasks one at a time in this process and a
            # deferral's trigger inline: a batch deferred there for an earlier wave would block
            # the very task it waits for. Reschedule instead, so the earlier wave runs first.
            raise AirflowRescheduleException(
                reschedule_date=datetime.now(UTC) + timedelta(seconds=1))
        if status == "wait":
            self.defer(
                trigger=WaveReadyTrigger(self.target, step.correlation_id, self.batch["plan_ref"],
                                         self.batch["wave"], timeout_s=self.wait_s),
                method_name="resume", timeout=timedelta(seconds=self.wait_s + 60))
        return self.resume(context, {"status": status})

    def resume(self, context: Any, event: dict[str, Any]) -> dict[str, int]:
        if event.get("status") == "abort":
            raise AirflowSkipException("this pass was stood down: a batch failed (see rollback) "
                                       "or the approved plan went stale (see approve)")
        if event.get("status") != "ready":
            raise TimeoutError(f"wave {self.batch['wave'] + 1} never became ready")
        from reconciler.orchestration.pipeline import BatchRefused

        try:
            counts: dict[str, int] = self._step().actuate(self.batch)
        except BatchRefused as exc:  # no lease, no approval, past the deadline: no retry helps
            raise AirflowFailException(str(exc)) from exc
        return counts

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
        chosen = list(event.get("chosen_options") or [])
        user = event.get("responded_by_user") or {}
        decision = {"approved": self.APPROVE in chosen, "timed_out": bool(event.get("timedout")),
                    "by": (user.get("name") or user.get("id")) if isinstance(user, dict) else None}
        if decision["approved"] and not self._assignee(user):
            # Airflow's API refuses non-assignees unless every user is an admin
            # (simple_auth_manager_all_admins): the target's approvers still decide
            self.log.warning("approval by %s refused: not an approver of %s", decision["by"],
                             self.target)
            decision.update(approved=False, refused=True)
            event = {**event, "chosen_options": [self.REJECT]}  # skip actuate, as a rejection
        if decision["approved"]:
            decision["stale"] = self._still_valid(context)
            if not decision["stale"]:
                self._record_approval(context, decision)
        context["ti"].xcom_push(key="decision", value=decision)
        self._step().approval(self.pass_no, "stale" if decision.get("stale") else
                              "approved" if decision["approved"] else
                              "timed_out" if decision["timed_out"] else "rejected",
                              decision.get("stale"))
        self._audit(context, decision)
        return super().execute_complete(context, event)

    def _assignee(self, user: Any) -> bool:
        """Whether the responder is one of the task's assigned users (anyone, when none)."""
        if not self.assigned_users:
            return True
        uid = str(user.get("id")) if isinstance(user, dict) else None
        return uid in {str(u["id"]) for u in self.assigned_users}

    def _record_approval(self, context: Any, decision: dict[str, Any]) -> None:
        """The store's approval of this plan hash is what lets ``actuate`` act (core.guard):
        marking this task successful by hand records none, so nothing beyond policy runs."""
        from reconciler_airflow.tasks import correlation_id

        summary = context["ti"].xcom_pull(task_ids=f"pass_{self.pass_no}.plan", key="summary")
        step = ActuateOperator._open(self.target, correlation_id(self.target))
        step.approve(summary["hash"], f"airflow:{decision['by'] or 'unknown'}")

    def _still_valid(self, context: Any) -> list[str]:
        """An approval may come long after the plan: re-check it against a fresh observation
        and, if the fleet moved on, stand the batches down instead of applying it late."""
        from reconciler_airflow.tasks import correlation_id

        summary = context["ti"].xcom_pull(task_ids=f"pass_{self.pass_no}.plan", key="summary")
        step = ActuateOperator._open(self.target, correlation_id(self.target))
        stale: list[str] = step.revalidate(summary["plan_ref"])
        if stale:
            self.log.warning("approved plan %s is stale, nothing applied: %s",
                             summary["hash"][:12], stale)
            step.abort(summary["hash"], "the approved plan went stale")
        return stale

    def _audit(self, context: Any, decision: dict[str, Any]) -> None:
        from reconciler_airflow.tasks import correlation_id

        cid = correlation_id(self.target)
        summary = context["ti"].xcom_pull(task_ids=f"pass_{self.pass_no}.plan", key="summary")
        step = ActuateOperator._open(self.target, cid)
        step.target.store.record_operator(
            self.target, f"airflow:{decision['by'] or 'unknown'}",
            "plan_stale" if decision.get("stale") else
            "approval_refused" if decision.get("refused") else
            "plan_approved" if decision["approved"] else "plan_rejected",
            {"plan_hash": (summary or {}).get("hash"), "timed_out": decision["timed_out"],
             "stale": decision.get("stale", [])}, cid)
