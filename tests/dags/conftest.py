"""Airflow test environment: a private AIRFLOW_HOME, a migrated SQLite metadata DB, test targets.

Airflow reads its configuration when first imported, so the environment is set here, at
conftest import, before any test module imports airflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOME = Path(tempfile.mkdtemp(prefix="reconciler-airflow-"))
STATE = HOME / "reconciler"
TARGETS = HOME / "targets.yaml"
DEMO_DESIRED = ROOT / "include" / "desired" / "demo"

os.environ.update({
    "AIRFLOW_HOME": str(HOME / "airflow"),
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME}/airflow/airflow.db",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "RECONCILER_HOME": str(STATE),
    "RECONCILER_CONFIG": str(TARGETS),
    "RECONCILER_STORE_URL": f"sqlite:///{STATE}/state.db",
})
sys.path.insert(0, str(ROOT / "plugins"))

FAST = "{max_parallel: 4, backoff_base_s: 0.01, backoff_cap_s: 0.05, max_attempts: 2, " \
       "sense_deadline_seconds: 20, cycle_deadline_seconds: 120%s}"
TARGET_POLICIES = {
    "sim": ", max_delete_fraction: 0.5",
    "gated": ", max_delete_fraction: 0.0, auto_apply: [low, high, critical]",
    "flaky": ", breaker_failures: 2",
    "broken": "",
    "demo": "",
    "settle": ", settle_seconds: 3",
    "paged": ", max_delete_fraction: 0.0, auto_apply: [low, high, critical]",
    "guarded": ", max_delete_fraction: 0.0, auto_apply: [low, high, critical]",
}
# targets whose plan approvals only named users / roles may answer (tests/dags/test_privilege.py)
APPROVERS = {"guarded": ", approvers: {users: [alice], roles: [op]}"}
# targets that announce through Airflow's notifiers (connections set by tests/dags/test_notify.py)
NOTIFIER_ALERTS = {
    "paged": ", slack_conn_id: rc_slack, pagerduty_conn_id: rc_pagerduty, "
             "apprise_conn_id: rc_apprise",
}
# targets whose DAG carries a DeadlineAlert (cycle_deadline_seconds after queueing)
DEADLINE_TARGETS = {"demo"}


AWS_DESIRED = ROOT / "include" / "desired" / "aws_demo"


def _write_targets() -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    lines = ["targets:", textwrap.indent(textwrap.dedent(f"""\
        cloud:
          provider:
            type: aws
            options: {{endpoint_file: "{STATE}/embedded-aws.url", emulator: true,
                       region: us-east-1}}
          desired: {AWS_DESIRED}
          schedule: "10m"
          policy: {FAST % ", max_delete_fraction: 0.5"}
          alerts: {{deadline: false}}
          airflow: {{retries: 2, retry_delay_seconds: 0.2}}
        """), "  ")]
    for name, extra in TARGET_POLICIES.items():
        desired = HOME / "desired" / name
        desired.mkdir(parents=True, exist_ok=True)
        for f in DEMO_DESIRED.glob("*.yaml"):
            (desired / f.name).write_text(f.read_text())
        lines.append(textwrap.indent(textwrap.dedent(f"""\
            {name}:
              provider: {{type: simulated, options: {{state: "{STATE}/{name}-sim.db"}}}}
              desired: desired/{name}
              schedule: "10m"
              policy: {FAST % extra}
              alerts: {{deadline: {str(name in DEADLINE_TARGETS).lower()},
                        webhook: "${{RECONCILER_TEST_WEBHOOK}}"{NOTIFIER_ALERTS.get(name, "")}}}
              airflow: {{retries: 2, retry_delay_seconds: 0.2{APPROVERS.get(name, "")}}}
            """), "  "))
    TARGETS.write_text("\n".join(lines) + "\n")


_write_targets()


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    out = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=os.environ,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return HOME


@pytest.fixture(scope="session")
def dagbag(airflow_db: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"), known_pools={
        "default_pool", "reconciler__cloud", *(f"reconciler__{t}" for t in TARGET_POLICIES)})
