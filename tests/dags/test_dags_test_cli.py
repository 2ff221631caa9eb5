"""``airflow dags test`` — how an Airflow user debugs a DAG — run as a subprocess on a target
whose DAG carries a DeadlineAlert (apache/airflow#73428 made it exit 1 after a good run)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.dags import support
from tests.dags.conftest import DEADLINE_TARGETS, ROOT

pytestmark = pytest.mark.filterwarnings("ignore")


def _latest_run_state(dag_id: str) -> str | None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = DagRun.find(dag_id=dag_id, session=session)
        return max(runs, key=lambda r: r.id).state if runs else None


def test_airflow_dags_test_exits_0_for_a_converged_cycle_with_a_deadline(airflow_db):
    assert "demo" in DEADLINE_TARGETS
    sim = support.seed("demo")
    sim.delete("sim.Node", "node-a2")  # one drift: the cycle plans, actuates, verifies
    airflow = Path(sys.executable).with_name("airflow")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "include"),
                                                         str(ROOT / "plugins")])}
    started = time.monotonic()
    out = subprocess.run([str(airflow), "dags", "test", "reconcile__demo"], env=env,
                         capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - started
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert "Traceback" not in out.stderr, out.stderr[-4000:]
    assert _latest_run_state("reconcile__demo") == "success"
    assert support.last_outcome("demo").status == "converged"
    assert support.fleet("demo").get("sim.Node", "node-a2") is not None
    print(f"airflow dags test reconcile__demo: {elapsed:.1f}s")
