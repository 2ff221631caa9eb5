"""DAG factory: one ``reconcile__<target>`` DAG per target. Wiring only: no I/O besides the
targets config, no heavy imports; every task is a thin call into ``reconciler``."""

from __future__ import annotations

import hashlib
import re
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import (
    DAG,
    AsyncCallback,
    DeadlineAlert,
    DeadlineReference,
    Param,
    ParamsDict,
    TaskGroup,
    TriggerRule,
    task,
)

from reconciler.config import TargetConfig, config_path, load_config_lenient
from reconciler.core.errors import InvalidConfig
from reconciler_airflow import tasks
from reconciler_airflow.operators import ActuateOperator, PlanApproval
from reconciler_airflow.tasks import RUN_PARAMS

__all__ = ["build_all", "build_dag", "dag_id", "pool_name", "schedule_for",
           "ReconcilerConfigWarning"]

START = datetime(2026, 1, 1, tzinfo=UTC)
_INTERVAL = re.compile(r"^(\d+)([smhd])$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class ReconcilerConfigWarning(UserWarning):
    """A target was left out because its configuration is invalid."""


def dag_id(target: str) -> str:
    return f"reconcile__{target}"


def pool_name(target: str) -> str:
    return f"reconciler__{target}"


def build_all(path: str | None = None) -> dict[str, DAG]:
    """Every valid target's DAG; an invalid target (or file) is a warning, never an import error."""
    try:
        config, errors = load_config_lenient(config_path(path))
    except InvalidConfig as exc:
        warnings.warn(f"reconciler: no DAGs built, the targets config is invalid:\n{exc}",
                      ReconcilerConfigWarning, stacklevel=2)
        return {}
    for name, error in sorted(errors.items()):
        warnings.warn(f"reconciler: target {name!r} skipped: {error}", ReconcilerConfigWarning,
                      stacklevel=2)
    return {dag_id(name): build_dag(cfg) for name, cfg in sorted(config.targets.items())}


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
    return {"owner": "reconciler", "retries": a.retries,
            "retry_delay": timedelta(seconds=a.retry_delay_seconds),
            "retry_exponential_backoff": True, "max_retry_delay": timedelta(minutes=5)}


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


def _deadline(cfg: TargetConfig) -> DeadlineAlert | None:
    if not cfg.alerts.deadline:
        return None
    seconds = cfg.policy.cycle_deadline_seconds
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=timedelta(seconds=seconds),
        callback=AsyncCallback("reconciler_airflow.alerts.deadline_missed",
                               kwargs={"target": cfg.name, "webhook": cfg.alerts.webhook,
                                       "deadline_s": seconds}))


def build_dag(cfg: TargetConfig) -> DAG:
    schedule, start = schedule_for(cfg.name, cfg.schedule)
    deadline = _deadline(cfg)
    with DAG(
        dag_id=dag_id(cfg.name), schedule=schedule, start_date=start, catchup=False,
        max_active_runs=1, tags=["reconciler", *cfg.tags], default_args=_default_args(cfg),
        doc_md=_doc(cfg), dagrun_timeout=None, **({"deadline": deadline} if deadline else {}),
    ) as dag:
        _wire(cfg)
    # Set after wiring: every task built while the DAG has params deep-copies them (a third
    # of parse time); at run time Airflow merges dag.params into each task's params anyway.
    dag.params = ParamsDict(_params())
    return dag


def _wire(cfg: TargetConfig) -> None:
    name, policy = cfg.name, cfg.policy
    sense = task.sensor(tasks.sense, task_id="sense", mode="reschedule",
                        poke_interval=min(30.0, max(1.0, policy.sense_deadline_seconds / 10)),
                        timeout=policy.sense_deadline_seconds * 2 + 60)
    sensed = sense(name)
    validated = task(tasks.validate, task_id="validate")(name, sensed)
    compared = task(tasks.compare, task_id="compare")(name, sensed, validated)
    routed = task.branch(tasks.route, task_id="route")(name, compared)
    report = task(tasks.report, task_id="report")(name, sensed)
    paged = task(tasks.page, task_id="page")(name, compared)
    routed >> [report, paged]
    previous: Any = routed
    ends: list[Any] = [report, paged]
    for pass_no in range(1, policy.max_iterations + 1):
        with TaskGroup(group_id=f"pass_{pass_no}"):
            previous, rollback = _pass(cfg, pass_no, previous, validated)
        ends.append(rollback)
    recorded = task(tasks.record, task_id="record", trigger_rule=TriggerRule.ALL_DONE)(
        name, policy.max_iterations)
    [routed, previous, *ends] >> recorded
    task(tasks.publish, task_id="publish", outlets=[tasks.target_asset(name)])(name, recorded)


def _pass(cfg: TargetConfig, pass_no: int, previous: Any, validated: Any) -> tuple[Any, Any]:
    """plan → gate → (approve) → actuate (mapped, waves in order) → verify; rollback on failure.
    ``plan`` skips the whole pass unless the previous pass asks for more."""
    name, policy = cfg.name, cfg.policy
    planned = task(tasks.plan, task_id="plan")(name, pass_no, validated)
    previous >> planned
    gate = task.branch(tasks.approval_gate, task_id="gate")(pass_no)
    approve = PlanApproval(
        target=name, pass_no=pass_no, task_id="approve",
        subject=f"Approve the reconcile plan for {name} (pass {pass_no})",
        body=_approval_body(pass_no), defaults="Reject",
        response_timeout=timedelta(seconds=policy.cycle_deadline_seconds))
    actuate = ActuateOperator.partial(
        task_id="actuate", target=name, pool=pool_name(name),
        map_index_template="{{ task.batch['label'] }}", wait_s=policy.cycle_deadline_seconds,
        execution_timeout=timedelta(seconds=policy.cycle_deadline_seconds),
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
    ).expand(batch=planned)
    planned >> gate >> [approve, actuate]
    approve >> actuate
    rollback = task(tasks.rollback, task_id="rollback", trigger_rule=TriggerRule.ONE_FAILED)(
        name, pass_no)
    actuate >> rollback
    verify = task.sensor(tasks.verify, task_id="verify", mode="reschedule",
                         poke_interval=max(1.0, min(60.0, policy.settle_seconds / 3 or 1.0)),
                         timeout=policy.cycle_deadline_seconds,
                         trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)(name, pass_no)
    [gate, actuate] >> verify
    return verify, rollback


def _approval_body(pass_no: int) -> str:
    plan = f"ti.xcom_pull(task_ids='pass_{pass_no}.plan', key='summary')"
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
            f"plan → (approve) → waves → verify → record. Pool `{pool_name(cfg.name)}` "
            f"({p.max_parallel} slots); cycle deadline {p.cycle_deadline_seconds:g}s.\n\n"
            "Manual runs take `dry_run`, `only_kinds`, `reset_breaker`, `desired_version`.")
