"""One cycle, two drivers: the same scenario through the CLI's driver (``core.loop``, every step
in one process) and Airflow's (``dag.test()``, one step per task) ends with the same outcome
status and reason, the same audit rows and the same history row."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from reconciler.orchestration import taskgraph as tg
from tests.dags import support

TARGET = "sim"
OPENED = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
OUTCOME_FIELDS = ("status", "error", "converged", "iterations", "actions_succeeded",
                  "actions_failed", "actions_skipped", "initial_drift", "final_drift",
                  "desired_version", "changed_fields", "flapping", "dry_run")


def _nothing(sim: Any) -> None:
    pass


def _node_gone(sim: Any) -> None:
    sim.delete("sim.Node", "node-a2")


def _name_taken(sim: Any) -> None:
    """node-a2 is someone else's: a conflict, blocked (and a workload to fix meanwhile)."""
    spec = dict(sim.get("sim.Node", "node-a2").spec)
    sim.delete("sim.Node", "node-a2")
    sim.put("sim.Node", "node-a2", spec, managed=False)
    sim.delete("sim.Node", "node-b1")


def _breaker_open(sim: Any) -> None:
    from reconciler.core.breaker import BreakerState

    sim.delete("sim.Node", "node-a2")
    support.store().save_breaker(BreakerState(target=TARGET, state="open",
                                              consecutive_failures=3,
                                              opened_at=OPENED, reason="test"))


SCENARIOS: dict[str, tuple[Callable[[Any], None], dict[str, Any], str]] = {
    "in_sync": (_nothing, {}, "in_sync"),
    "converges": (_node_gone, {}, "converged"),
    "dry_run": (_node_gone, {"dry_run": True}, "reported"),
    "blocked": (_name_taken, {}, "blocked"),
    "breaker_open": (_breaker_open, {}, "breaker_open"),
}


def _audit(cid: str) -> Counter[tuple[str, ...]]:
    """The cycle's audit rows, by what they say (not by who or when)."""
    rows = support.store().audit_rows(target=TARGET, correlation_id=cid, limit=10_000)
    out: Counter[tuple[str, ...]] = Counter()
    for row in rows:
        p = row["payload"]
        if row["kind"] == "event":
            out[("event", p["type"], p.get("action_id") or "")] += 1
        elif row["kind"] == "action":
            out[("action", p["type"], str(p["key"]), p["state"])] += 1
        elif row["kind"] == "operator" and p["what"] != "airflow_run":
            out[("operator", p["what"])] += 1
        elif row["kind"] == "plan":
            out[("plan",)] += 1
    return out


def _history(cid: str) -> dict[str, Any] | None:
    found = [o for o in support.store().recent_cycles(TARGET, 10_000)
             if o.correlation_id == cid]
    return {f: getattr(found[0], f) for f in OUTCOME_FIELDS} if found else None


def _reset() -> Any:
    from reconciler.core.breaker import BreakerState

    support.store().save_breaker(BreakerState(target=TARGET))
    return support.seed(TARGET)


def _cli(conf: dict[str, Any]) -> tuple[dict[str, Any], str]:
    from reconciler.core.loop import run_cycle
    from reconciler.orchestration.runtime import load_target
    from reconciler.testing import RecordingSink

    target = load_target(TARGET)
    report = run_cycle(target.request(target.load_desired(), dry_run=bool(conf.get("dry_run")),
                                      actor="airflow"),
                       target.deps(RecordingSink()))
    outcome = report.outcome
    return {f: getattr(outcome, f) for f in OUTCOME_FIELDS}, outcome.correlation_id


def _airflow(dagbag: Any, conf: dict[str, Any]) -> tuple[dict[str, Any], str]:
    from reconciler.core.model import Outcome
    from reconciler.orchestration.runtime import correlation_id_for_run

    dr, _ = support.run(dagbag, TARGET, conf)
    cid = correlation_id_for_run(TARGET, dr.run_id)
    record = next(ti for ti in dr.get_task_instances() if ti.task_id == "record")
    outcome = Outcome.model_validate(record.xcom_pull(task_ids=tg.RECORD))
    return {f: getattr(outcome, f) for f in OUTCOME_FIELDS}, cid


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_both_drivers_end_a_cycle_alike(dagbag, scenario):
    setup, conf, status = SCENARIOS[scenario]
    setup(_reset())
    cli, cli_cid = _cli(conf)
    cli_fleet = support.fleet(TARGET).resources()
    setup(_reset())
    airflow, airflow_cid = _airflow(dagbag, conf)
    airflow_fleet = support.fleet(TARGET).resources()
    _reset()
    assert cli["status"] == status, cli
    assert airflow == cli
    assert _audit(airflow_cid) == _audit(cli_cid)
    assert _history(airflow_cid) == _history(cli_cid)
    assert (_history(cli_cid) is None) == (scenario == "dry_run")  # a dry run records nothing
    assert {(str(r.key), r.managed) for r in airflow_fleet} == \
        {(str(r.key), r.managed) for r in cli_fleet}
