"""Real Airflow: api-server, scheduler, dag-processor and triggerer as separate processes.

Run alone with ``pytest -m system``. Deadline alerts need the real scheduler + triggerer
(``dag.test()`` on 3.3.2 cannot run DAGs with ``deadline=``), and so does backfill.
"""

from __future__ import annotations

import time

import pytest

from tests.system.world import SimTarget, airflow_world

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

TARGETS = {
    "live": SimTarget(deadline_alert=True),
    "late": SimTarget(policy="max_parallel: 4, max_delete_fraction: 0.5, "
                              "cycle_deadline_seconds: 6, sense_deadline_seconds: 5",
                      deadline_alert=True),
    "yearly": SimTarget(),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with airflow_world(tmp_path_factory.mktemp("system"), TARGETS) as w:
        yield w.stack, w.hook, w.state


def _fleet(state, name: str):
    from reconciler.desired import load_desired
    from reconciler.providers.simulated import SimulatedProvider, seed_demo

    sim = SimulatedProvider(state / f"{name}-sim.db")
    seed_demo(sim, load_desired(state.parent / "desired" / name))
    return sim


def _cycles(name: str):
    from reconciler.store import open_store

    return open_store().recent_cycles(name, 50)


def test_a_run_triggered_through_the_rest_api_converges_the_fleet(world):
    stack, _, state = world
    sim = _fleet(state, "live")
    sim.delete("sim.Node", "node-a2")
    run = stack.trigger("reconcile__live")
    assert stack.wait_run("reconcile__live", run) == "success"
    outcome = _cycles("live")[0]
    assert outcome.status == "converged" and outcome.trigger == "manual"
    assert sim.get("sim.Node", "node-a2") is not None
    states = {(t["task_id"], t["map_index"]): t["state"]
              for t in stack.task_instances("reconcile__live", run)}
    assert states[("pass_1.actuate", 0)] == "success"
    assert states[("pass_1.approve", -1)] == "skipped"


def test_a_cycle_that_overruns_its_deadline_fires_the_alert(world):
    stack, hook, state = world
    _fleet(state, "late")
    run = stack.trigger("reconcile__late")
    stack.wait_run("reconcile__late", run)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        alerts = [b for b in hook.bodies if b.get("event") == "deadline_missed"]
        if alerts:
            break
        time.sleep(1)
    assert alerts, f"no deadline alert reached the webhook\n{stack.tail()}"
    assert alerts[0]["target"] == "late" and alerts[0]["dag_id"] == "reconcile__late"


def test_a_backfill_over_three_intervals_actuates_once(world):
    stack, _, state = world
    sim = _fleet(state, "yearly")
    sim.delete("sim.Node", "node-b1")
    before = sim.stats.apply_calls
    stack.request("POST", "/api/v2/backfills", {
        "dag_id": "reconcile__yearly", "from_date": "2023-01-01T00:00:00Z",
        "to_date": "2025-06-01T00:00:00Z", "max_active_runs": 1, "reprocess_behavior": "none",
        "run_backwards": False, "dag_run_conf": {}})
    deadline = time.monotonic() + 600
    runs: list[dict] = []
    while time.monotonic() < deadline:
        runs = stack.request("GET", "/api/v2/dags/reconcile__yearly/dagRuns?limit=50")["dag_runs"]
        backfill = [r for r in runs if r["run_type"] == "backfill"]
        if len(backfill) == 3 and all(r["state"] in ("success", "failed") for r in backfill):
            break
        time.sleep(2)
    assert [r["state"] for r in backfill] == ["success"] * 3, f"{runs}\n{stack.tail()}"
    cycles = [c for c in _cycles("yearly") if c.trigger == "backfill"]
    assert len(cycles) == 3
    acted = [c for c in cycles if c.actions_succeeded]
    assert len(acted) == 1 and acted[0].actions_succeeded == 1
    assert sorted(c.status for c in cycles) == ["converged", "in_sync", "in_sync"]
    assert sim.get("sim.Node", "node-b1") is not None
    assert sim.stats.apply_calls == before  # this process's counter: the workers applied it
