"""The Airflow driver's steps: a sense under load slows the sensors and its plan deletes
nothing and runs narrower; rollback returns to the rollback point the plan names."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.dags import support
from tests.dags.test_rollback import result_row, two_waves


def _with(step: Any, **policy: Any) -> None:
    new = step.policy.model_copy(update=policy)
    step.target = dataclasses.replace(
        step.target, config=step.target.config.model_copy(update={"policy": new}))


def test_a_sense_under_load_slows_the_sensors_and_its_plan_deletes_nothing():
    from tests.unit.test_fidelity import Throttled

    sim = support.seed("sim")
    sim.put("sim.Node", "node-extra", {"pool": "default"})  # managed, not desired: a deletion
    sim.delete("sim.Workload", "payments")
    step = support.step("sim", "fidelity")
    quiet = step.sense("sense")
    assert quiet.poke_factor == 1.0 and quiet.fidelity == "full"
    step.target = dataclasses.replace(step.target, provider=Throttled(step.target.provider))
    sensed = step.sense("sense")
    assert sensed.fidelity == "degraded" and sensed.poke_factor == 3.0
    step.compare(sensed.ref)
    try:
        result = step.plan(sensed.ref, 1)
        plan = step.load_plan(result.summary.plan_ref)
        assert result.summary.counts["delete"] == 0
        assert [b.reason.split(":")[0] for b in plan.audit.blocked] == ["observation degraded"]
        assert plan.degradation.max_parallel == 2 and result.batches
        assert step.must_state().fidelity == "degraded" and step.must_state().degraded
    finally:
        step.target.store.release_lease(step.name, step.correlation_id)
        sim.delete("sim.Node", "node-extra")


def test_rollback_plan_undoes_the_earlier_waves_too_and_the_audit_names_the_point():
    step, result, _ = two_waves()
    step.target.store.release_lease(step.name, step.correlation_id)
    _with(step, rollback="plan")
    summary = step.plan(step.sense("sense").ref, 1).summary
    plan = step.load_plan(summary.plan_ref)
    assert plan.rollback_points == (0,)
    payments, checkout = plan.waves[0].actions[0], plan.waves[1].actions[0]
    t0 = datetime.now(UTC)
    step.target.store.record_results(step.name, step.correlation_id, [
        result_row(payments, "succeeded", 1, t0),
        result_row(checkout, "failed", 3, t0 + timedelta(seconds=1)),
    ])
    support.fleet("sim").put("sim.Workload", "payments", {"replicas": 2})  # what wave 1 made
    try:
        undone = step.rollback(summary)
        assert (undone.wave, undone.point, undone.rolled_back) == (1, 0, 1)
        assert support.fleet("sim").get("sim.Workload", "payments") is None
        rows = step.target.store.audit_rows(target=step.name, kind="event",
                                            correlation_id=step.correlation_id, limit=100)
        started = [r["payload"] for r in rows if r["payload"]["type"] == "rollback_initiated"]
        assert started[0]["detail"]["point"] == 0 and started[0]["detail"]["waves"] == [0, 1]
    finally:
        step.target.store.release_lease(step.name, step.correlation_id)
