"""Real Airflow: api-server, scheduler, dag-processor and triggerer as separate processes.

Run alone with ``pytest -m system``. Deadline alerts need the real scheduler + triggerer
(``dag.test()`` on 3.3.2 cannot run DAGs with ``deadline=``), and so does backfill.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.webhook import Webhook

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from airflow_stack import AirflowStack  # noqa: E402

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

TARGETS = {
    # name: (schedule, policy extras, deadline alert)
    "live": ('"0 0 1 1 *"', "", True),
    "late": ('"0 0 1 1 *"', ", cycle_deadline_seconds: 6, sense_deadline_seconds: 5", True),
    "yearly": ('"0 0 1 1 *"', "", False),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("system")
    state = root / "reconciler"
    state.mkdir()
    lines = ["targets:"]
    for name, (schedule, extra, deadline) in TARGETS.items():
        desired = root / "desired" / name
        desired.mkdir(parents=True)
        for f in (ROOT / "include" / "desired" / "demo").glob("*.yaml"):
            (desired / f.name).write_text(f.read_text())
        lines.append(textwrap.indent(textwrap.dedent(f"""\
            {name}:
              provider: {{type: simulated, options: {{state: "{state}/{name}-sim.db"}}}}
              desired: desired/{name}
              schedule: {schedule}
              policy: {{max_parallel: 4, max_delete_fraction: 0.5{extra}}}
              alerts: {{deadline: {str(deadline).lower()}}}
              airflow: {{retries: 2, retry_delay_seconds: 1}}
            """), "  "))
    config = root / "targets.yaml"
    config.write_text("\n".join(lines) + "\n")
    hook = Webhook()
    env = {"RECONCILER_CONFIG": str(config), "RECONCILER_HOME": str(state),
           "RECONCILER_STORE_URL": f"sqlite:///{state}/state.db",
           "RECONCILER_WEBHOOK_URL": hook.url}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # this process reads the same store and fleets
    stack = AirflowStack(root / "airflow", extra_env=env, parallelism=6)
    stack.prepare()
    stack.start()
    try:
        stack.wait_healthy()
        for name in TARGETS:
            stack.wait_dag(f"reconcile__{name}")
        for name in TARGETS:  # a new DAG gets one scheduled run at once; let it finish
            stack.wait_idle(f"reconcile__{name}")
        hook.bodies.clear()
        yield stack, hook, state
    finally:
        stack.stop()
        hook.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _fleet(state: Path, name: str):
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
