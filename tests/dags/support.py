"""Helpers for dag.test() runs: fleets, outcomes, a loopback webhook, a REST approver."""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.dags.conftest import STATE
from tests.support.webhook import Webhook  # noqa: F401  (re-exported for tests)


def fleet(target: str) -> Any:
    from reconciler.providers.simulated import SimulatedProvider

    return SimulatedProvider(STATE / f"{target}-sim.db")


def seed(target: str) -> Any:
    from reconciler.desired import load_desired
    from reconciler.providers.simulated import seed_demo
    from tests.dags.conftest import HOME

    sim = fleet(target)
    for r in sim.resources():
        sim.delete(r.key.kind, r.key.name)
    seed_demo(sim, load_desired(HOME / "desired" / target))
    return sim


def step(target: str, prefix: str = "step") -> Any:
    """A pipeline step of a new cycle, begun (as the DAG's first task begins it)."""
    import uuid
    from datetime import UTC, datetime

    from reconciler.orchestration.pipeline import Step

    opened = Step.open(target, f"{prefix}-{uuid.uuid4().hex[:8]}")
    opened.begin(started_at=datetime.now(UTC))
    return opened


def store() -> Any:
    from reconciler.store import open_store

    return open_store()


def last_outcome(target: str) -> Any:
    return store().recent_cycles(target, 1)[0]


def asset_events(target: str) -> int:
    """How many events the target's asset has (each converged cycle adds one)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return (session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .filter(AssetModel.name == f"reconciler__{target}").count())


def run(dagbag: Any, target: str, conf: dict[str, Any] | None = None) -> tuple[Any, dict[str, str]]:
    """Run one cycle with dag.test(); return the DagRun and each task's state by id."""
    dag = dagbag.dags[f"reconcile__{target}"]
    dr = dag.test(run_conf=conf or {})
    states = {}
    for ti in dr.get_task_instances():
        key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        states[key] = ti.state
    return dr, states


class Approver(threading.Thread):
    """Answers the first pending approval through Airflow's REST API (PATCH hitlDetails)."""

    def __init__(self, choice: str, timeout_s: float = 600,
                 before: Any = None) -> None:
        super().__init__(daemon=True)
        self.choice, self.timeout_s, self.before = choice, timeout_s, before
        self.answered: dict[str, Any] | None = None
        self.error: str | None = None

    def run(self) -> None:
        from airflow.api_fastapi.app import create_app
        from fastapi.testclient import TestClient

        client = TestClient(create_app())
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline and self.answered is None:
            listing = client.get("/api/v2/dags/~/dagRuns/~/hitlDetails")
            for item in listing.json().get("hitl_details", []):
                ti = item["task_instance"]
                # answer only a task parked for input: Airflow 3.3 resumes a task on the answer
                # only if it is already parked; an answer that lands while the task is still
                # getting there is recorded but never resumes it (dag.test() then waits forever)
                if item.get("response_received") or ti.get("state") != "awaiting_input":
                    continue
                if self.before is not None:
                    self.before()  # e.g. the fleet moves on while the plan waits for a human
                url = (f"/api/v2/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/"
                       f"{ti['task_id']}/{ti['map_index']}/hitlDetails")
                answer = client.patch(url, json={"chosen_options": [self.choice]})
                if answer.status_code != 200:
                    self.error = f"{answer.status_code}: {answer.text}"
                    return
                self.answered = answer.json()
            time.sleep(0.5)
