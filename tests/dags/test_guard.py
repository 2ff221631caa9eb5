"""The actuation guard on the Airflow path: ``actuate`` acts only under its mandate, whatever
the DAG's wiring let through (an approval marked successful by hand, a lease another cycle
took, a plan artifact changed after planning, a deadline passed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.dags import support


def planned(target: str = "gated") -> tuple[Any, Any]:
    """A seeded fleet with a stray (a deletion past the blast radius), sensed and planned."""

    sim = support.seed(target)
    sim.put("sim.Node", "stray", {"pool": "default"})
    step = support.step(target, "guard")
    sensed = step.sense("sense")
    result = step.plan(sensed.ref, 1)
    assert result.summary.needs_approval
    return step, result


def refused_events(step: Any) -> list[dict[str, Any]]:
    rows = step.target.store.audit_rows(target=step.name, kind="event",
                                        correlation_id=step.correlation_id)
    return [r["payload"] for r in rows if r["payload"]["type"] == "action_refused"]


def stray_kept() -> bool:
    return support.fleet("gated").get("sim.Node", "stray") is not None


def test_a_plan_needing_approval_runs_only_once_its_hash_is_approved():
    from reconciler.orchestration.pipeline import BatchRefused

    step, result = planned()
    batch = result.batches[0]
    with pytest.raises(BatchRefused, match="needs approval"):
        step.actuate(batch)  # "approve" marked successful by hand: no approval recorded
    assert stray_kept() and refused_events(step)
    step.approve("some-other-plan", "airflow:mallory")
    with pytest.raises(BatchRefused):
        step.actuate(batch)
    step.approve(result.summary.hash, "airflow:alice")
    step.actuate(batch)
    assert not stray_kept()
    step.target.store.release_lease(step.name, step.correlation_id)


def test_a_cycle_that_lost_its_lease_is_refused():
    from reconciler.orchestration.pipeline import BatchRefused

    step, result = planned()
    step.approve(result.summary.hash, "airflow:alice")
    store = step.target.store
    store.release_lease(step.name, step.correlation_id)
    assert store.acquire_lease(step.name, "cli-apply", 60)  # someone else took the target
    with pytest.raises(BatchRefused, match="lease"):
        step.actuate(result.batches[0])
    store.release_lease(step.name, "cli-apply")
    assert store.acquire_lease(step.name, step.correlation_id, 60)  # back, under a new fence
    with pytest.raises(BatchRefused, match="lease"):
        step.actuate(result.batches[0])
    assert stray_kept()
    store.release_lease(step.name, step.correlation_id)


def test_a_plan_changed_after_planning_is_refused():
    from reconciler.orchestration.pipeline import BatchRefused

    step, result = planned()
    step.approve(result.summary.hash, "airflow:alice")
    path = step.artifacts.ref(f"{step.correlation_id}/plan-1.json")
    plan = step.artifacts.get(path)
    plan["waves"][0]["actions"][0]["params"] = {"spec": {"pool": "evil"}}
    step.artifacts.put(f"{step.correlation_id}/plan-1.json", plan)
    with pytest.raises(BatchRefused, match="hashes to"):
        step.actuate(result.batches[0])
    assert stray_kept()
    step.target.store.release_lease(step.name, step.correlation_id)


def test_past_the_cycle_deadline_nothing_new_starts():
    from reconciler.orchestration.pipeline import BatchRefused

    step, result = planned()
    step.approve(result.summary.hash, "airflow:alice")
    late = result.batches[0].model_copy(
        update={"deadline_at": datetime.now(UTC) - timedelta(seconds=1)})
    with pytest.raises(BatchRefused, match="deadline"):
        step.actuate(late)
    assert stray_kept()
    detail = refused_events(step)[-1]["detail"]
    assert "deadline" in detail["reason"] and detail["plan_hash"] == result.summary.hash
    json.dumps(detail)  # audited as plain JSON
    step.target.store.release_lease(step.name, step.correlation_id)


def test_a_batch_that_waited_refuses_an_update_someone_made_stale():
    """Planned: node-a1 from c5.large back to its desired m5.large. Before the batch runs,
    someone sets a third type by hand: the update is refused (stale plan), their change kept."""
    from reconciler.orchestration.pipeline import BatchRefused

    sim = support.seed("sim")
    spec = dict(sim.get("sim.Node", "node-a1").spec)
    drifted = sim.get("sim.Node", "node-a1")
    sim.put("sim.Node", "node-a1", {**spec, "instance_type": "c5.large"},
            protected=drifted.protected)  # drift: the plan sets it back to m5.large
    step = support.step("sim", "guard")
    result = step.plan(step.sense("sense").ref, 1)
    sim.put("sim.Node", "node-a1", {**spec, "instance_type": "c5.9xlarge"},
            protected=drifted.protected)  # meanwhile, by hand
    batch = next(b for b in result.batches
                 if any(a["id"] == "update:sim.Node/node-a1" for w in
                        step.load_plan(b.plan_ref).model_dump()["waves"]
                        for a in w["actions"][b.start:b.end]))
    with pytest.raises(BatchRefused, match="stale plan.*instance_type changed"):
        step.actuate(batch)
    assert sim.get("sim.Node", "node-a1").spec["instance_type"] == "c5.9xlarge"
    step.target.store.release_lease(step.name, step.correlation_id)
