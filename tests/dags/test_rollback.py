"""The Airflow path's rollback undoes the wave whose actions *finally* failed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.dags import support


def two_waves() -> tuple[Any, Any, Any]:
    """payments (wave 1) and checkout (wave 2, depends on payments) both missing, planned."""

    sim = support.seed("sim")
    sim.delete("sim.Workload", "payments")
    sim.delete("sim.Workload", "checkout")
    step = support.step("sim", "rollback")
    result = step.plan(step.sense("sense").ref, 1)
    plan = step.load_plan(result.summary.plan_ref)
    assert [[a.target.name for a in w.actions] for w in plan.waves] == [["payments"],
                                                                          ["checkout"]]
    return step, result, plan


def result_row(action: Any, state: str, attempts: int, at: datetime) -> Any:
    from reconciler.core.model import ActionResult

    return ActionResult(action_id=action.id, key=action.target, type=action.type, state=state,
                        attempts=attempts, started_at=at, finished_at=at, wave=action.wave)


def test_a_failure_a_retry_fixed_is_not_what_rollback_undoes():
    step, result, plan = two_waves()
    payments, checkout = plan.waves[0].actions[0], plan.waves[1].actions[0]
    t0 = datetime.now(UTC)
    step.target.store.record_results(step.name, step.correlation_id, [
        result_row(payments, "failed", 1, t0),  # an Airflow retry then fixed it
        result_row(payments, "succeeded", 2, t0 + timedelta(seconds=1)),
        result_row(checkout, "failed", 3, t0 + timedelta(seconds=2)),
    ])
    support.fleet("sim").put("sim.Workload", "payments", {"replicas": 2})  # what wave 1 made
    undone = step.rollback(result.summary)
    assert undone.wave == 1 and undone.rolled_back == 0
    assert support.fleet("sim").get("sim.Workload", "payments") is not None
    step.target.store.release_lease(step.name, step.correlation_id)



def test_every_step_of_a_cycle_uses_the_desired_version_validate_checked():
    from reconciler.core.gate import BasicGate
    from tests.dags.conftest import HOME

    support.seed("sim")
    step = support.step("sim", "version")
    sensed = step.sense("sense")
    checked = step.validate(sensed.ref, BasicGate()).desired_version
    nodes = HOME / "desired" / "sim" / "nodes.yaml"
    before = nodes.read_text()
    try:
        nodes.write_text(before.replace("node-b2", "node-z9"))  # a push lands mid-cycle
        assert step.compare(sensed.ref).desired_version == checked
        planned = step.plan(sensed.ref, 1)
        assert step.load_plan(planned.summary.plan_ref).desired_version == checked
        assert planned.summary.counts["create"] == 0  # node-z9 waits for the next cycle
        later = support.step("sim", "version")
        assert later.desired().version != checked
    finally:
        nodes.write_text(before)
        step.target.store.release_lease(step.name, step.correlation_id)


def test_route_decides_like_the_cli_cycle_low_urgency_in_a_closed_window_is_reported():
    """The same drift and policy give the same status from both drivers."""
    import dataclasses

    from reconciler.core.model import Drift
    from reconciler.core.policy import Window
    from tests.builders import node, want
    from tests.loop_support import Rig

    closed = Window(days=(), start_hour=0, end_hour=1)  # never open
    step = support.step("sim", "route")
    policy = step.policy.model_copy(update={"windows": (closed,), "auto_apply": ("high",)})
    step.target = dataclasses.replace(
        step.target, config=step.target.config.model_copy(update={"policy": policy}))
    low = Drift(urgency="low", magnitude=1, fraction=0.1, drifted=1, total=10)
    high = low.model_copy(update={"urgency": "high", "magnitude": 3})
    assert step.route(low).status == "reported"
    assert step.route(high).status == "window_closed"
    rig = Rig.make()
    rig.provider.put("sim.Node", "n1", node(labels={"x": "y"}))  # a cosmetic (low) change
    cli = rig.cycle([want("sim.Node/n1", node())], policy)
    assert cli.outcome.initial_drift.urgency == "low" and cli.outcome.status == "reported"
