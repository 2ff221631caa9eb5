"""What the real cycle's Airflow task processes sent out: StatsD metrics (Airflow's [metrics]
settings), events to the webhook with the cycle's correlation id, structured task-log lines."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]

CYCLE_METRICS = {
    "airflow.reconciler.web.snapshot.completeness", "airflow.reconciler.web.snapshot.resources",
    "airflow.reconciler.web.snapshot.latency", "airflow.reconciler.web.drift.magnitude",
    "airflow.reconciler.web.drift.urgency", "airflow.reconciler.web.drift.resources",
    "airflow.reconciler.web.actions.create.succeeded", "airflow.reconciler.web.cycle.duration",
    "airflow.reconciler.web.cycle.status.converged", "airflow.reconciler.web.breaker.open",
    "airflow.reconciler.web.breaker.failures", "airflow.reconciler.web.events.drift_detected",
    "airflow.reconciler.web.events.converged",
}


def test_task_processes_send_the_cycle_metrics_to_statsd(dashboard):
    names = dashboard.statsd.names()
    assert CYCLE_METRICS <= names, sorted(CYCLE_METRICS - names)
    magnitudes = dashboard.statsd.values("airflow.reconciler.web.drift.magnitude")
    assert magnitudes[0] == "3|g" and magnitudes[-1] == "0|g"  # found, then converged
    assert dashboard.statsd.values("airflow.reconciler.web.snapshot.completeness")[0] == "1|g"
    assert dashboard.statsd.values("airflow.reconciler.web.breaker.open")[0] == "0|g"


def test_every_event_reaches_the_webhook_with_the_correlation_id(dashboard):
    mine = [b for b in dashboard.hook.bodies if b["correlation_id"] == dashboard.correlation_id]
    types = [b["type"] for b in mine]
    for expected in ("drift_detected", "action_started", "action_completed", "converged",
                     "cycle_finished"):
        assert expected in types, types
    started = next(b for b in mine if b["type"] == "action_started")
    assert started["target"] == "web" and started["action_id"] == "create:sim.Node/node-a2"


def test_task_logs_carry_target_correlation_and_action_ids(dashboard):
    logs = dashboard.stack.home / "logs" / "dag_id=reconcile__web"
    lines = [json.loads(line) for f in logs.glob("run_id=*/task_id=pass_1.actuate/**/*.log")
             for line in f.read_text().splitlines() if line.startswith("{")]
    done = [entry for entry in lines if entry.get("event") == "action_completed"]
    assert done, "no action_completed line in the actuate task's log"
    assert done[0]["target_name"] == "web"
    assert done[0]["correlation_id"] == dashboard.correlation_id
    assert done[0]["action_id"] == "create:sim.Node/node-a2"
    assert done[0]["logger"] == "reconciler"
