"""Under Airflow, a cycle's metrics go through Airflow's ``Stats``: whatever ``[metrics]``
configures (StatsD or OpenTelemetry) receives them, like Airflow's own. Each case runs the task
path (``Step`` as the DAG's tasks open it, after ``reconciler_airflow.stats.install()``) in a
fresh process, since Airflow reads ``[metrics]`` once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.support.otlp import OtlpReceiver
from tests.ui.support import ROOT, StatsdListener, seed_fleet, write_targets

pytestmark = pytest.mark.timeout(300)

EXPECTED = {
    "snapshot.completeness", "snapshot.resources", "snapshot.latency", "drift.magnitude",
    "drift.urgency", "drift.resources", "actions.create.succeeded", "cycle.duration",
    "cycle.status.converged", "breaker.open", "breaker.failures", "events.drift_detected",
    "events.action_completed", "events.cycle_finished",
}

_TASK_PATH = """
import json
from reconciler.output.metrics import Metrics
from reconciler_airflow import stats
from tests.ui.support import pipeline_cycle

stats.install()
backend = type(Metrics.from_settings().backend).__name__
result = pipeline_cycle("shop", "shop-stats-1")
print(json.dumps({"backend": backend, "status": result["outcome"]["status"]}))
"""


@pytest.fixture
def env(tmp_path):
    """A simulated target ``shop`` missing a node, and an environment with every metrics
    option off (each test turns one on)."""
    config = write_targets(tmp_path, ["shop"])
    seed_fleet(tmp_path, "shop").delete("sim.Node", "node-b1")
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW__METRICS__", "OTEL_"))}
    return {**base, "RECONCILER_CONFIG": str(config),
            "RECONCILER_HOME": str(tmp_path / "reconciler"),
            "RECONCILER_STORE_URL": f"sqlite:///{tmp_path}/reconciler/state.db",
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins"),
                                           str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "AIRFLOW__METRICS__STATSD_ON": "False", "AIRFLOW__METRICS__OTEL_ON": "False"}


def _run_task_path(env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-c", _TASK_PATH], env=env, cwd=ROOT, text=True,
                         capture_output=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _wait_for(names, wanted: set[str], bound_s: float = 10.0) -> set[str]:
    """Delivery is asynchronous: poll (bounded) until every name arrived or the bound passes."""
    deadline = time.monotonic() + bound_s
    while not wanted <= names() and time.monotonic() < deadline:
        time.sleep(0.05)
    return set(names())


def test_with_otel_on_the_cycle_metrics_reach_the_otlp_collector(env):
    receiver = OtlpReceiver()
    try:
        ran = _run_task_path({**env, "AIRFLOW__METRICS__OTEL_ON": "True",
                              "AIRFLOW__METRICS__OTEL_HOST": "127.0.0.1",
                              "AIRFLOW__METRICS__OTEL_PORT": str(receiver.port),
                              "AIRFLOW__METRICS__OTEL_SSL_ACTIVE": "False",
                              "AIRFLOW__METRICS__OTEL_INTERVAL_MILLISECONDS": "500"})
        wanted = {f"airflow.reconciler.shop.{name}" for name in EXPECTED}
        got = _wait_for(receiver.names, wanted)
    finally:
        receiver.close()
    assert ran == {"backend": "AirflowStats", "status": "converged"}
    assert wanted <= got, sorted(wanted - got)
    assert {"target": "shop"} in receiver.attributes("airflow.reconciler.shop.drift.magnitude")


def test_with_statsd_on_the_cycle_metrics_reach_the_statsd_agent(env):
    listener = StatsdListener()
    try:
        ran = _run_task_path({**env, "AIRFLOW__METRICS__STATSD_ON": "True",
                              "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
                              "AIRFLOW__METRICS__STATSD_PORT": str(listener.port),
                              "AIRFLOW__METRICS__STATSD_PREFIX": "ops"})
        wanted = {f"ops.reconciler.shop.{name}" for name in EXPECTED}
        got = _wait_for(listener.names, wanted)
    finally:
        listener.close()
    # StatsD goes through the reconciler's own client, with Airflow's [metrics] settings
    assert ran == {"backend": "StatsdClient", "status": "converged"}
    assert wanted <= got, sorted(wanted - got)
    assert listener.values("ops.reconciler.shop.breaker.open") == ["0|g"]


def test_with_every_metrics_option_off_a_cycle_reports_nothing(env):
    listener, receiver = StatsdListener(), OtlpReceiver()
    try:
        ran = _run_task_path({**env, "AIRFLOW__METRICS__STATSD_PORT": str(listener.port),
                              "AIRFLOW__METRICS__OTEL_PORT": str(receiver.port),
                              "AIRFLOW__METRICS__OTEL_HOST": "127.0.0.1"})
        time.sleep(0.3)  # a stray datagram's chance to arrive (not a timing assertion)
    finally:
        listener.close()
        receiver.close()
    assert ran == {"backend": "NoneType", "status": "converged"}
    assert listener.lines == [] and receiver.metrics == []
