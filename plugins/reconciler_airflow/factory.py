"""DAG factory: one ``reconcile__<target>`` DAG per target. Wiring only: no I/O besides the
targets config, no heavy imports; every task is a thin call into ``reconciler``."""

from __future__ import annotations

import functools
import hashlib
import re
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import (
    DAG,
    AsyncCallback,
    DeadlineAlert,
    DeadlineReference,
    Param,
    ParamsDict,
    TaskGroup,
    TriggerRule,
    get_parsing_context,
)

from reconciler.config import TargetConfig, config_path, load_config_lenient
from reconciler.core.errors import InvalidConfig
from reconciler.orchestration import taskgraph as tg
from reconciler_airflow import privilege, tasks
from reconciler_airflow.compat import dag_class
from reconciler_airflow.operators import ActuateOperator, PlanApproval
from reconciler_airflow.tasks import RUN_PARAMS

__all__ = ["build_all", "build_dag", "dag_id", "pool_name", "schedule_for",
           "ReconcilerConfigWarning"]

START = datetime(2026, 1, 1, tzinfo=UTC)
# DeadlineSafeDAG on Airflow releases whose ``dag.test()`` trips over deadline alerts; drop
# with compat.py when Airflow > 3.3.2 includes apache/airflow#73430
_DAG = dag_class()
_INTERVAL = re.compile(r"^(\d+)([smhd])$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class ReconcilerConfigWarning(UserWarning):
    """A target was left out because its configuration is invalid."""


def dag_id(target: str) -> str:
    return f"reconcile__{target}"


def pool_name(target: str) -> str:
    return f"reconciler__{target}"


def build_all(path: str | None = None) -> dict[str, DAG]:
    """Every valid target's DAG; an invalid target (or file) is a warning, never an import error.

    A task process parses this file only to find its own task: there (Airflow's parsing context
    names the DAG) only that DAG is built, so a task's start-up does not grow with the number
    of targets. The dag-processor has no parsing context and builds them all."""
    only = get_parsing_context().dag_id

    def wanted(name: str) -> bool:
        return only is None or dag_id(name) == only

    try:
        config, errors = load_config_lenient(config_path(path))
    except InvalidConfig as exc:
        warnings.warn(f"reconciler: no DAGs built, the targets config is invalid:\n{exc}",
                      ReconcilerConfigWarning, stacklevel=2)
        return {}
    for name, error in sorted(errors.items()):
        if wanted(name):
            warnings.warn(f"reconciler: target {name!r} skipped: {error}",
                          ReconcilerConfigWarning, stacklevel=2)
    return {dag_id(name): build_dag(cfg) for name, cfg in sorted(config.targets.items())
            if wanted(name)}


def _jitter(target: str, modulo: int) -> int:
    """A stable per-target offset so many targets on one schedule do not all fire at once."""
    return int(hashlib.sha256(target.encode()).hexdigest(), 16) % max(1, modulo)


def schedule_for(target: str, schedule: str | None) -> tuple[Any, datetime]:
    """(schedule, start_date): ``*/N`` minutes get a hashed minute offset, intervals a start
    offset (like Jenkins' ``H``); an explicit minute is left as the user wrote it."""
    if schedule is None:
        return None, START
    interval = _INTERVAL.match(schedule)
    if interval:
        delta = timedelta(**{_UNIT[interval[2]]: int(interval[1])})
        offset = timedelta(seconds=_jitter(target, int(delta.total_seconds())))
        return delta, START + offset
    fields = schedule.split()
    step = re.fullmatch(r"\*/(\d+)", fields[0]) if len(fields) == 5 else None
    if step:
        n = int(step[1])
        fields[0] = f"{_jitter(target, n)}-59/{n}"
        return " ".join(fields), START
    return schedule, START


def _default_args(cfg: TargetConfig) -> dict[str, Any]:
    a = cfg.airflow
    # no task may outlive the cycle (plus the rollback's grace): each is bounded by it
    bound = timedelta(seconds=cfg.policy.cycle_deadline_seconds
                      + cfg.policy.rollback_grace_seconds)
    return {"owner": "reconciler", "retries": a.retries,
            "retry_delay": timedelta(seconds=a.retry_delay_seconds),
            "retry_exponential_backoff": True, "max_retry_delay": timedelta(minutes=5),
            "execution_timeout": bound}


def _params() -> dict[str, Param]:
    return {
        "dry_run": Param(RUN_PARAMS["dry_run"], type="boolean",
                         description="plan and report; change nothing"),
        "only_kinds": Param(RUN_PARAMS["only_kinds"], type=["null", "array"],
                            items={"type": "string"}, description="reconcile only these kinds"),
        "reset_breaker": Param(RUN_PARAMS["reset_breaker"], type="boolean",
                               description="reset an open circuit breaker before this cycle"),
        "desired_version": Param(RUN_PARAMS["desired_version"], type=["null", "string"],
                                 description="refuse to run unless the source holds this version"),
    }


@functools.cache
def _params_checked_once() -> None:
    ParamsDict(_params()).validate()


def _checked_params() -> ParamsDict:
    _params_checked_once()
    return ParamsDict(_params())


def _deadline(cfg: TargetConfig) -> DeadlineAlert | None:
    if not cfg.alerts.deadline:
        return None
    seconds = cfg.policy.cycle_deadline_seconds
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=timedelta(seconds=seconds),
        callback=AsyncCallback("reconciler_airflow.alerts.deadline_missed",
                               kwargs={"target": cfg.name, "webhook": cfg.alerts.webhook,
                                       "deadline_s": seconds, "env": list(cfg.env),
                                       "channels": cfg.alerts.channels}))


def run_bound(cfg: TargetConfig) -> timedelta:
    """The run's hard bound: the cycle deadline, the rollback's grace, and room for ``record``
    (every task is bounded by the deadline already, and verify ends at it; this is the
    backstop that keeps a stuck run from holding ``max_active_runs`` forever)."""
    p = cfg.policy
    return timedelta(seconds=p.cycle_deadline_seconds + p.rollback_grace_seconds + 300)


def build_dag(cfg: TargetConfig) -> DAG:
    schedule, start = schedule_for(cfg.name, cfg.schedule)
    deadline = _deadline(cfg)
    with _DAG(
        dag_id=dag_id(cfg.name), schedule=schedule, start_date=start, catchup=False,
        max_active_runs=1, tags=["reconciler", *cfg.tags], default_args=_default_args(cfg),
        doc_md=_doc(cfg), dagrun_timeout=run_bound(cfg),
        **({"deadline": deadline} if deadline else {}),
    ) as dag:
        _wire(cfg)
    # Set after wiring: every task built while the DAG has params deep-copies them (a third
    # of parse time); at run time Airflow merges dag.params into each task's params anyway.
    # ``update`` skips re-checking the defaults against their JSON schemas for every DAG
    # (jsonschema's meta-schema check, ~2 ms each): they are checked once, in _checked_params.
    dag.params.update(_checked_params())
    return dag


def _wire(cfg: TargetConfig) -> None:
    name, policy = cfg.name, cfg.policy
    sense = PythonSensor(task_id=tg.SENSE, python_callable=tasks.sense, op_args=[name],
                         mode="reschedule",
                         poke_interval=min(30.0, max(1.0, policy.sense_deadline_seconds / 10)),
                         timeout=policy.sense_deadline_seconds * 2 + 60)
    validate = _call(tg.VALIDATE, tasks.validate, name, sense.output)
    compare = _call(tg.COMPARE, tasks.compare, name, sense.output, validate.output)
    route = BranchPythonOperator(task_id=tg.ROUTE, python_callable=tasks.route,
                                 op_args=[name, compare.output])
    report = _call(tg.REPORT, tasks.report, name, sense.output)
    page = _call(tg.PAGE, tasks.page, name, compare.output)
    route >> [report, page]
    previous: Any = route
    actuates: list[Any] = []
    for pass_no in range(1, policy.max_iterations + 1):
        with TaskGroup(group_id=tg.pass_group(pass_no)):
            previous, actuate = _pass(cfg, pass_no, previous, validate)
        actuates.append(actuate)
    # One rollback for every pass: a failed batch stops the run, so at most one pass fails.
    rollback = _call(tg.ROLLBACK, tasks.rollback, name, policy.max_iterations,
                     trigger_rule=TriggerRule.ONE_FAILED)
    actuates >> rollback
    # the asset event goes out through an alias, only when the cycle converged
    record = _call(tg.RECORD, tasks.record, name, policy.max_iterations,
                   trigger_rule=TriggerRule.ALL_DONE, outlets=[tasks.converged_alias(name)])
    [route, previous, report, page, rollback] >> record


def _call(task_id: str, fn: Any, *args: Any, **kwargs: Any) -> PythonOperator:
    """A task (its id from ``taskgraph``). Classic operators, not ``@task``: a decorated task
    costs the dag-processor about twice as much to build (signature inspection per call)."""
    return PythonOperator(task_id=task_id, python_callable=fn, op_args=list(args), **kwargs)


def _pass(cfg: TargetConfig, pass_no: int, previous: Any, validate: Any) -> tuple[Any, Any]:
    """plan → approve (pass 1 only; it skips itself unless the plan needs a human) → actuate
    (mapped, waves in order) → verify. ``plan`` skips the whole pass unless the previous pass
    asks for more; a later pass whose plan would need approval ends the cycle instead (see
    :func:`tasks.plan`), so a human approves one plan per cycle, never one they did not see."""
    name, policy = cfg.name, cfg.policy
    plan = _call(tg.PLAN, tasks.plan, name, pass_no, validate.output)
    previous >> plan
    actuate = ActuateOperator.partial(
        task_id=tg.ACTUATE, target=name, pool=pool_name(name),
        map_index_template="{{ task.batch['label'] }}", wait_s=policy.cycle_deadline_seconds,
        execution_timeout=timedelta(seconds=policy.cycle_deadline_seconds),
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
    ).expand(batch=plan.output)
    if pass_no == 1:
        approve = PlanApproval(
            target=name, pass_no=pass_no, task_id=tg.APPROVE,
            subject=f"Approve the reconcile plan for {name}",
            body=_approval_body(pass_no), defaults="Reject",
            response_timeout=timedelta(seconds=policy.cycle_deadline_seconds),
            notifiers=_approval_notifiers(cfg, pass_no),
            assigned_users=privilege.assignees(cfg.airflow.approvers, name))
        plan >> approve >> actuate
    # not downstream of approve: a rejection skips approve's direct downstream (actuate),
    # and verify still observes and reports the unapproved drift
    verify = PythonSensor(task_id=tg.VERIFY, python_callable=tasks.verify,
                          op_args=[name, pass_no], mode="reschedule",
                          poke_interval=max(1.0, min(60.0, policy.settle_seconds / 3 or 1.0)),
                          timeout=policy.cycle_deadline_seconds,
                          trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    [plan, actuate] >> verify
    return verify, actuate


def _approval_notifiers(cfg: TargetConfig, pass_no: int) -> list[Any]:
    """Chat and email channels hear of a plan waiting for a human (PagerDuty does not: a
    waiting approval is not an incident); nothing to build when none is configured."""
    channels = {**cfg.alerts.channels, "pagerduty_conn_id": None}
    if not any(channels.values()):
        return []
    from reconciler_airflow.notify import ApprovalNotifier

    return [ApprovalNotifier(target=cfg.name, pass_no=pass_no, channels=channels)]


def _approval_body(pass_no: int) -> str:
    plan = f"ti.xcom_pull(task_ids='{tg.plan_task(pass_no)}', key='{tg.SUMMARY_KEY}')"
    return (
        "### Plan {{ " + plan + "['hash'][:12] }}\n\n"
        "Counts: `{{ " + plan + "['counts'] }}`, max risk **{{ " + plan + "['max_risk'] }}**\n\n"
        "Why approval is needed: {{ " + plan + "['approval_reasons'] | join('; ') }}\n\n"
        "Plan artifact: `{{ " + plan + "['plan_ref'] }}`. Reject (or let it time out) and "
        "nothing is applied."
    )


def _doc(cfg: TargetConfig) -> str:
    p = cfg.policy
    return (f"Reconciles target **{cfg.name}** ({cfg.provider.type}) against `{cfg.desired}`.\n\n"
            f"sense → validate → compare → route → up to {p.max_iterations} passes of "
            f"plan → (approve, pass 1) → waves → verify; then rollback on failure and record. "
            f"Pool `{pool_name(cfg.name)}` ({p.max_parallel} slots); "
            f"cycle deadline {p.cycle_deadline_seconds:g}s.\n\n"
            "Manual runs take `dry_run`, `only_kinds`, `reset_breaker`, `desired_version`.")
