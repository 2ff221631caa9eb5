"""Airflow task callables: thin calls into ``reconciler.orchestration.pipeline``; errors mapped
at this edge."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from airflow.sdk import Asset, AssetAlias, PokeReturnValue, get_current_context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from pydantic import BaseModel

from reconciler.orchestration import taskgraph as tg
from reconciler.orchestration.taskgraph import (
    Compared,
    PassDecision,
    PlanSummary,
    Preview,
    Sensed,
    Validated,
    Verification,
    XComJson,
)

__all__ = [
    "correlation_id", "sense", "validate", "compare", "route", "report", "page", "plan",
    "rollback", "verify", "record", "converged_alias", "target_asset", "read_xcom",
]

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)


def correlation_id(target: str) -> str:
    """One id per run, shared by every task and retry of it (from the Airflow run id)."""
    from reconciler.orchestration.runtime import correlation_id_for_run

    return correlation_id_for_run(target, get_current_context()["run_id"])


def _step(target: str) -> Any:
    from reconciler.orchestration.pipeline import Step
    from reconciler_airflow import digestkey, stats

    digestkey.install()
    stats.install()
    return Step.open(target, correlation_id(target))


def read_xcom(model: type[M], value: Any, what: str) -> M:
    """An XCom validated back into the value it holds, first thing in a task: a malformed or
    hand-edited one fails the task at once (no retry fixes it), before any provider call."""
    try:
        return tg.from_xcom(model, value, what)
    except tg.MalformedXCom as exc:
        raise AirflowFailException(str(exc)) from exc


def _pulled(model: type[M], task_id: str, key: str = "return_value") -> M | None:
    """Another task's XCom, validated; ``None`` when that task left none (it skipped)."""
    value = get_current_context()["ti"].xcom_pull(task_ids=task_id, key=key)
    return None if value is None else read_xcom(model, value, task_id)


def _needed(model: type[M], task_id: str) -> M:
    """Another task's XCom, validated; that task must have left one."""
    return read_xcom(model, get_current_context()["ti"].xcom_pull(task_ids=task_id), task_id)


def _fail_on_bad_input(fn: Callable[[], Any]) -> Any:
    """Bad desired state or config is not worth retrying: fail the task at once, say where."""
    from reconciler.core.errors import InvalidConfig, InvalidDesiredState, PlanRejected

    try:
        return fn()
    except (InvalidDesiredState, InvalidConfig, PlanRejected) as exc:
        raise AirflowFailException(str(exc)) from exc


RUN_PARAMS: dict[str, Any] = {"dry_run": False, "only_kinds": None, "reset_breaker": False,
                              "desired_version": None}


def _params() -> dict[str, Any]:
    """This run's conf over the defaults. Not ``context["params"]``: Airflow stores a run's
    conf on the DAG's shared Param objects, so in a long-lived process one run's ``dry_run``
    would stick to the next runs."""
    conf = get_current_context()["dag_run"].conf or {}
    return {k: conf.get(k, default) for k, default in RUN_PARAMS.items()}


def _since_run_start() -> float:
    started = get_current_context()["dag_run"].start_date or datetime.now(UTC)
    return (datetime.now(UTC) - started).total_seconds()


def _begin(step: Any) -> Any:
    """The cycle's state, begun by its first task (core.cycle.CycleState)."""
    ctx = get_current_context()
    params = _params()
    return step.begin(started_at=ctx["dag_run"].start_date or datetime.now(UTC),
                      dry_run=bool(params.get("dry_run")),
                      only_kinds=params.get("only_kinds") or None,
                      trigger=str(ctx["dag_run"].run_type).split(".")[-1].lower(),
                      interval_start=ctx.get("logical_date"))


def sense(target: str) -> PokeReturnValue:
    """Re-poke while completeness is below the threshold; at the sense deadline, go on with what
    was seen (deletions of incomplete kinds are then impossible) and say so."""
    step = _step(target)
    _begin(step)
    params = _params()
    seen: Sensed = step.sense("sense", params.get("only_kinds") or None,
                              remember=not params.get("dry_run"))
    if seen.complete_enough:
        return PokeReturnValue(is_done=True, xcom_value=seen.model_dump(mode="json"))
    _pace_pokes(seen.poke_factor)
    if _since_run_start() >= step.policy.sense_deadline_seconds:
        log.warning("sense deadline reached with completeness %.2f: going on; no deletions for "
                    "incomplete kinds: %s", seen.completeness, seen.kinds)
        went_on = seen.model_copy(update={"incomplete": True})
        return PokeReturnValue(is_done=True, xcom_value=went_on.model_dump(mode="json"))
    return PokeReturnValue(is_done=False)


def _pace_pokes(factor: float) -> None:
    """Poke less often while the provider is under load (core.fidelity): the sensor's next
    reschedule uses its ``poke_interval``, which each try gets afresh from the DAG, so this
    slows the next poke only; the DAG's own interval is kept as the base."""
    from reconciler.core.fidelity import poke_interval

    task = get_current_context()["task"]
    base = getattr(task, "_reconciler_base_poke", None) or float(task.poke_interval)
    object.__setattr__(task, "_reconciler_base_poke", base)
    task.poke_interval = poke_interval(base, factor)


def validate(target: str, sensed: XComJson) -> XComJson:
    from reconciler.orchestration.quality import GxGate

    seen = read_xcom(Sensed, sensed, tg.SENSE)
    step = _step(target)
    pinned = _params().get("desired_version")
    result: Validated = _fail_on_bad_input(lambda: step.validate(seen.ref, GxGate(step.policy)))
    if pinned and pinned != result.desired_version:
        raise AirflowFailException(f"desired_version {pinned} requested, but the source now "
                                   f"holds {result.desired_version}")
    if not result.passed:
        log.warning("quality gate failed (deletions will be blocked): %s", result.failures)
    return result.model_dump(mode="json")


def compare(target: str, sensed: XComJson, validated: XComJson) -> XComJson:
    seen = read_xcom(Sensed, sensed, tg.SENSE)
    read_xcom(Validated, validated, tg.VALIDATE)
    kinds = _params().get("only_kinds") or None
    result: Compared = _fail_on_bad_input(lambda: _step(target).compare(seen.ref, kinds))
    return result.model_dump(mode="json")


def route(target: str, compared: XComJson) -> list[str]:
    from reconciler_airflow.privilege import reset_actor

    drift = read_xcom(Compared, compared, tg.COMPARE).drift
    params, step = _params(), _step(target)
    dry_run = bool(params.get("dry_run"))
    actor = reset_actor(step, get_current_context()["dag_run"],
                        bool(params.get("reset_breaker")) and not dry_run)
    decision = step.route(drift, dry_run=dry_run, reset_breaker=actor is not None,
                          actor=actor or "airflow")
    get_current_context()["ti"].xcom_push(key=tg.DECISION_KEY,
                                          value=decision.model_dump(mode="json"))
    return {"record": [tg.RECORD], "report": [tg.REPORT], "plan": [tg.plan_task(1)],
            "page": [tg.PAGE, tg.plan_task(1)]}[decision.route]


def report(target: str, sensed: XComJson) -> XComJson:
    seen = read_xcom(Sensed, sensed, tg.SENSE)
    return _step(target).preview(seen.ref).model_dump(mode="json")


def page(target: str, compared: XComJson) -> int:
    from reconciler_airflow.alerts import page_critical

    found = read_xcom(Compared, compared, tg.COMPARE)
    where = _step(target).target
    return page_critical(target, correlation_id(target), found.model_dump(mode="json"),
                         env=where.config.env, alerts=where.config.alerts, store=where.store)


def _keep_going(target: str, pass_no: int) -> PassDecision:
    """Pass 1 runs once routed here; later passes only while the previous pass did not settle,
    the drift keeps falling and the deadline and iteration bound allow."""
    if pass_no == 1:
        return PassDecision(proceed=True)
    verified = [_pulled(Verification, tg.verify_task(i)) for i in range(1, pass_no)]
    last = verified[-1]
    if last is None or last.check.settled:
        return PassDecision(proceed=False, reason="previous pass settled")
    initial = _needed(Compared, tg.COMPARE)
    drifts = [initial.drift, *[v.check.drift for v in verified if v]]
    decision: PassDecision = _step(target).should_continue(drifts, pass_no, _since_run_start())
    return decision


def _snapshot_ref(pass_no: int) -> str:
    """The freshest snapshot a pass plans from: sense's, or the previous pass's verify's."""
    if pass_no == 1:
        return _needed(Sensed, tg.SENSE).ref
    return _needed(Verification, tg.verify_task(pass_no - 1)).check.snapshot_ref


def plan(target: str, pass_no: int, validated: XComJson) -> list[XComJson]:
    """Plan from the freshest snapshot; return the batches to map over (every wave, in order)."""
    gate = read_xcom(Validated, validated, tg.VALIDATE)
    ti = get_current_context()["ti"]
    decision = _keep_going(target, pass_no)
    ti.xcom_push(key=tg.DECISION_KEY, value=decision.model_dump(mode="json"))
    if not decision.proceed:
        raise AirflowSkipException(f"pass {pass_no} not needed: {decision.reason}")
    ref = _snapshot_ref(pass_no)
    kinds = _params().get("only_kinds") or None
    step = _step(target)
    started = get_current_context()["dag_run"].start_date or datetime.now(UTC)
    deadline_at = started + timedelta(seconds=step.policy.cycle_deadline_seconds)
    result = _fail_on_bad_input(
        lambda: step.plan(ref, pass_no, gate.passed, kinds, deadline_at))
    summary: PlanSummary = result.summary
    if summary.stop:  # nothing to act on (blocked by conflicts): the cycle ends here
        raise AirflowSkipException(f"pass {pass_no}: nothing to apply")
    if pass_no > 1 and summary.needs_approval:
        # only pass 1 asks a human; what a later pass found is this cycle's news, the next asks
        raise AirflowSkipException(step.later_pass_needs_approval(pass_no, summary.plan_ref))
    ti.xcom_push(key=tg.SUMMARY_KEY, value=summary.model_dump(mode="json"))
    return [b.model_dump(mode="json") for b in result.batches]


def rollback(target: str, max_iterations: int) -> XComJson:
    """Undo the failed wave of the pass that failed (the last pass that planned: a failed batch
    stops the run, so later passes never plan)."""
    summaries = [_pulled(PlanSummary, tg.plan_task(i), tg.SUMMARY_KEY)
                 for i in range(1, max_iterations + 1)]
    planned = [s for s in summaries if s]
    if not planned:
        raise AirflowSkipException("no pass planned anything: nothing to roll back")
    return _step(target).rollback(planned[-1]).model_dump(mode="json")


def verify(target: str, pass_no: int) -> PokeReturnValue:
    """Re-sense until within tolerance and stable for the settling period, or not within it."""
    step = _step(target)
    state_name = f"{step.correlation_id}/verify-{pass_no}-state.json"
    try:
        since = step.artifacts.get(step.artifacts.ref(state_name)).get("within_since")
    except Exception:  # first poke: no state yet (a missing file or S3 key)
        since = None
    result: Verification = step.verify(pass_no, since, time.time())
    step.artifacts.put(state_name, {"within_since": result.within_since})
    # creates the provider does not list yet (eventual consistency): poke again for them
    check = result.check
    done = check.settled or (not check.within and not check.in_flight)
    if not done and _since_run_start() >= step.policy.cycle_deadline_seconds:
        # say so, rather than time out
        done, result = True, result.model_copy(
            update={"check": check.model_copy(update={"deadline": True})})
    if done:
        step.verified(result)
    else:
        _pace_pokes(result.poke_factor)
    return PokeReturnValue(is_done=done,
                           xcom_value=result.model_dump(mode="json") if done else None)


def record(target: str, max_iterations: int) -> XComJson:
    ctx = get_current_context()
    step = _step(target)
    _begin(step)  # a run whose first task never ran still ends with an outcome
    from reconciler_airflow.ui.runlinks import record_run_link

    state = step.must_state()
    # the dashboard links a cycle (correlation id = hash of the run id) back to this run; a
    # dry run has no cycle page (it records nothing, core.cycle): its run is its record
    if not state.dry_run:
        record_run_link(step.target.store, target, step.correlation_id, ctx["dag_run"].dag_id,
                        ctx["run_id"], diff_ref=state.diff_ref or None,
                        preview_ref=_preview_ref())
    outcome = step.record(failed_tasks=_failed_tasks(ctx))
    if not state.dry_run:
        from reconciler_airflow.notify import after_record

        # breaker opened/closed; resolve a page once converged
        after_record(step.target, outcome.model_dump(mode="json"))
    if outcome.status in FAILING:
        # recorded first; now fail the run so the grid, deadline alerts and on-call see it
        raise AirflowFailException(f"cycle {outcome.status}: {outcome.error}")
    if outcome.converged:
        ctx["outlet_events"][converged_alias(target)].add(target_asset(target), extra={
            "status": outcome.status, "correlation_id": outcome.correlation_id,
            "desired_version": outcome.desired_version})
    return outcome.model_dump(mode="json")


def _preview_ref() -> str | None:
    """The dry-run preview's plan, when ``report`` ran (``record`` runs whatever happened: a
    missing report is no error here, but a malformed one is)."""
    found = _pulled(Preview, tg.REPORT)
    return found.plan_ref if found else None


def _failed_tasks(ctx: Any) -> list[str]:
    """The tasks of this run that failed (or failed upstream), for an outcome with no more
    telling reason (a crashed step, a sensor that timed out)."""
    try:
        states = ctx["ti"].get_task_states(dag_id=ctx["dag_run"].dag_id,
                                           run_ids=[ctx["run_id"]])
    except Exception:  # an Airflow without the call: the outcome says what else it knows
        log.warning("could not read this run's task states", exc_info=True)
        return []
    mine = states.get(ctx["run_id"], {})
    return sorted({task for task, state in mine.items()
                   if state in ("failed", "upstream_failed") and task != tg.RECORD})


FAILING = ("failed", "no_progress", "deadline", "max_iterations", "invalid_input")


def converged_alias(target: str) -> AssetAlias:
    """``record``'s outlet: it adds an event for :func:`target_asset` only when the cycle
    converged (a plain outlet would fire on every successful ``record``)."""
    return AssetAlias(name=f"reconciler__{target}__converged")


def target_asset(target: str) -> Asset:
    """The asset a target's converged cycles update (downstream DAGs can schedule on it)."""
    return Asset(name=f"reconciler__{target}", uri=f"reconciler://{target}")
