"""docker-compose.yaml, up for real: the deployment users run, on a private Docker engine.

A private ``dockerd`` (``docker_engine``), stand-in images built from Debian packages and the
project's images built by deploy/Dockerfile (``compose_images``, cached by input hash), then
``docker compose up --scale airflow-worker=2 --wait`` of the unchanged compose file with a
unique project name. Everything goes through the published port on 127.0.0.1 (FAB login,
REST triggers, the dashboard) or ``docker`` itself (kill a worker, exec in the api-server for
the state store). The only test override swaps the mounted targets config for a copy with one
more target, ``fleet``: a 200-resource simulated fleet with latency, so a run has many
actions to be interrupted. ``down -v`` and the engine's removal happen whatever the outcome.

    pytest -m compose tests/system/test_compose_engine.py
"""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.system.compose_deployment import ROOT, Deployment
from tests.system.compose_images import ensure_images
from tests.system.docker_engine import available, docker_engine

pytestmark = [pytest.mark.system, pytest.mark.compose, pytest.mark.timeout(2400)]

DEMOS = {"reconcile__demo": 4, "reconcile__aws_demo": 8}  # DAG -> pool slots (max_parallel)
FLEET, FLEET_DAG, SIZE, SLOTS, BATCH = "fleet", "reconcile__fleet", 200, 4, 10


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _config(into: Path) -> Path:
    """deploy/config/targets.yaml plus the ``fleet`` target (desired state beside it)."""
    from reconciler.providers.simulated import generate_fleet

    into.mkdir()
    fleet = generate_fleet(SIZE, random.Random(7))
    (into / "fleet-desired").mkdir()
    (into / "fleet-desired" / "fleet.yaml").write_text("resources:\n" + "".join(
        f"  - {{kind: {k}, name: {n}, spec: {json.dumps(s)}}}\n" for k, n, s in fleet))
    (into / "targets.yaml").write_text((ROOT / "deploy/config/targets.yaml").read_text() + f"""
  {FLEET}:
    provider:
      type: simulated
      options: {{state: "${{RECONCILER_HOME}}/fleet-sim.db", faults: {{latency_s: 0.5}}}}
    desired: fleet-desired
    schedule: null
    policy: {{max_parallel: {SLOTS}, batch_size: {BATCH}, max_delete_fraction: 0.5,
              cycle_deadline_seconds: 1200}}
    artifacts: "${{RECONCILER_HOME}}/artifacts/{FLEET}"
    alerts: {{deadline: false}}
    airflow: {{retries: 3, retry_delay_seconds: 1}}
""")
    into.chmod(0o755)
    return into


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    why_not = available()
    if why_not:
        pytest.fail(f"no private Docker engine here: {why_not}")
    home = tmp_path_factory.mktemp("compose")
    home.chmod(0o755)  # the containers' user (50000) reads the mounted config
    with docker_engine() as engine:
        images = ensure_images(engine)
        dep = Deployment(home, engine, images.env(), _free_port(), config=_config(home / "config"))
        try:
            dep.up(workers=2)
            for dag in [*DEMOS, FLEET_DAG]:
                dep.wait_dag(dag)
            yield dep
        finally:
            (home / "compose.log").write_text(dep.logs(200))
            dep.down()


# -- the scenario --------------------------------------------------------------------------------


@dataclass
class Facts:
    runs: dict[str, list[str]] = field(default_factory=dict)  # DAG -> its runs, oldest first
    states: dict[str, str] = field(default_factory=dict)  # run id -> final state
    workers: dict[str, str] = field(default_factory=dict)  # container -> hostname
    killed: str = ""
    killed_running: list[int] = field(default_factory=list)
    fleet_run: str = ""
    fleet_tries: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    actuate: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # DAG -> tries


def _actuate_tries(dep: Deployment, dag: str, run: str) -> dict[int, list[dict[str, Any]]]:
    mapped = [t for t in dep.task_instances(dag, run)
              if t["task_id"].endswith(".actuate") and t["map_index"] >= 0]
    return {t["map_index"] + 1000 * int(t["task_id"].split(".")[0][5:]):
            dep.tries(dag, run, t["task_id"], t["map_index"]) for t in mapped}


def _runs(dep: Deployment, dag: str) -> list[str]:
    runs = dep.request("GET", f"/api/v2/dags/{dag}/dagRuns?order_by=run_after")["dag_runs"]
    return [str(r["dag_run_id"]) for r in runs]


def _kill_a_worker_mid_run(dep: Deployment, seen: Facts) -> None:
    """Trigger the fleet, wait until a batch runs on a worker, kill that container."""
    seen.fleet_run = dep.trigger(FLEET_DAG)
    by_host = {host: name for name, host in seen.workers.items()}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        running = [t for t in dep.task_instances(FLEET_DAG, seen.fleet_run)
                   if t["task_id"] == "pass_1.actuate" and t["state"] == "running"
                   and t["hostname"] in by_host]
        done = [t for t in dep.task_instances(FLEET_DAG, seen.fleet_run)
                if t["task_id"] == "pass_1.actuate" and t["state"] == "success"]
        if running and done:  # actuation under way, with batches left
            victim = running[0]["hostname"]
            seen.killed = by_host[victim]
            seen.killed_running = [t["map_index"] for t in running if t["hostname"] == victim]
            dep.kill(seen.killed)
            return
        time.sleep(0.5)
    raise AssertionError(f"no batch of {seen.fleet_run} was seen running\n{dep.logs()}")


@pytest.fixture(scope="module")
def facts(deployment: Deployment) -> Facts:
    dep, seen = deployment, Facts()
    seen.workers = dep.containers("airflow-worker")
    # the README's step: the demo AWS needs its launch template (and a drifted fleet) first
    dep.compose("run", "--rm", "--no-deps", "airflow-cli", "python", "-m", "reconciler.embedded",
                "seed", "--endpoint", "http://moto:5000")
    for dag in DEMOS:  # unpausing also starts the latest scheduled run; both must succeed
        dep.trigger(dag)
    _kill_a_worker_mid_run(dep, seen)
    for dag in [*DEMOS, FLEET_DAG]:
        seen.runs[dag] = _runs(dep, dag)
        for run in seen.runs[dag]:
            seen.states[run] = dep.wait_run(dag, run, timeout_s=900)
        seen.actuate[dag] = [t for run in seen.runs[dag]
                             for tries in _actuate_tries(dep, dag, run).values() for t in tries]
    seen.fleet_tries = _actuate_tries(dep, FLEET_DAG, seen.fleet_run)
    (dep.home / "facts.json").write_text(json.dumps(seen.__dict__, indent=1, default=str))
    return seen


STORE = """
import json, sys
from reconciler.orchestration.runtime import correlation_id_for_run
from reconciler.store import open_store
runs = json.loads(sys.argv[1])
out = {}
with open_store() as store:
    out["url"] = str(store.engine.url.render_as_string(hide_password=True))
    for target, run in runs:
        cid = correlation_id_for_run(target, run)
        [o] = [o for o in store.recent_cycles(target, 50) if o.correlation_id == cid]
        rows = store.audit_rows(target=target, kind="action", correlation_id=cid, limit=100000)
        out[run] = {"status": o.status, "failed": o.actions_failed,
                    "succeeded": o.actions_succeeded,
                    "ok": [r["action_id"] for r in rows if r["payload"]["state"] == "succeeded"
                           and not r["payload"].get("rollback")]}
print(json.dumps(out))
"""

FLEET_STATE = """
import json, os, pathlib
from reconciler.providers.simulated import SimulatedProvider
from reconciler.orchestration.runtime import correlation_id_for_run
home = pathlib.Path(os.environ["RECONCILER_HOME"])
with SimulatedProvider(home / "fleet-sim.db") as sim:
    live = [[r.key.kind, r.key.name, r.spec, r.managed] for r in sim.resources()]
cid = correlation_id_for_run("fleet", os.environ["FLEET_RUN"])
plan = json.loads((home / "artifacts" / "fleet" / cid / "plan-1.json").read_text())
print(json.dumps({"live": live, "planned": [a["id"] for w in plan["waves"]
                                            for a in w["actions"]]}))
"""


def _store(dep: Deployment, runs: list[tuple[str, str]]) -> dict[str, Any]:
    code = f"import sys; sys.argv[1:] = [{json.dumps(json.dumps(runs))}]\n{STORE}"
    return dict(dep.python(code))


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _most_held(tries: list[dict[str, Any]]) -> int:
    """Most tries holding a pool slot at once (queued to end; ends sort first)."""
    edges = sorted([(_ts(t["queued_when"]), 1) for t in tries]
                   + [(_ts(t["end_date"]), -1) for t in tries])
    held = most = 0
    for _, step in edges:
        held += step
        most = max(most, held)
    return most


# -- the promises --------------------------------------------------------------------------------


def test_login_and_the_demo_targets_converge(facts: Facts, deployment: Deployment) -> None:
    runs = [(dag.removeprefix("reconcile__"), run) for dag in DEMOS for run in facts.runs[dag]]
    assert all(facts.states[run] == "success" for _, run in runs), facts.states
    store = _store(deployment, runs)
    for _, run in runs:
        assert store[run]["status"] in ("converged", "in_sync") and not store[run]["failed"]
    # each demo had drift (demo: an empty fleet; aws_demo: the seed's hand edits) and acted on it
    for dag in DEMOS:
        assert sum(store[r]["succeeded"] for r in facts.runs[dag]) >= 1, (dag, store)


def test_mapped_actuation_ran_on_the_worker_containers_within_the_pools(facts: Facts) -> None:
    hosts = set(facts.workers.values())
    assert len(hosts) == 2
    for dag, slots in DEMOS.items():
        tries = facts.actuate[dag]
        assert tries and all(t["state"] == "success" for t in tries), tries
        assert {t["hostname"] for t in tries} <= hosts
        assert {t["pool"] for t in tries} == {f"reconciler__{dag.removeprefix('reconcile__')}"}
        assert _most_held(tries) <= slots
    fleet = [t for tries in facts.fleet_tries.values() for t in tries]
    assert {t["hostname"] for t in fleet if t["hostname"]} == hosts  # both workers actuated
    assert 2 <= _most_held([t for t in fleet if t["end_date"]]) <= SLOTS


def test_a_killed_worker_container_leaves_a_converged_fleet_with_no_duplicates(
    facts: Facts, deployment: Deployment
) -> None:
    assert facts.killed in facts.workers and facts.killed_running
    assert facts.states[facts.fleet_run] == "success"
    final = {i: tries[-1] for i, tries in facts.fleet_tries.items()}
    assert final and all(t["state"] == "success" for t in final.values()), final
    store = _store(deployment, [(FLEET, facts.fleet_run)])[facts.fleet_run]
    assert store["status"] == "converged" and store["failed"] == 0
    proc = deployment.compose("exec", "-T", "-e", f"FLEET_RUN={facts.fleet_run}",
                              "airflow-apiserver", "python", "-c", FLEET_STATE)
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    keys = [(k, n) for k, n, _, _ in state["live"]]
    assert len(keys) == len(set(keys)) == SIZE and all(m for *_, m in state["live"])
    assert len(state["planned"]) == SIZE
    assert sorted(store["ok"]) == sorted(state["planned"])  # every action once, none lost
    assert store["succeeded"] == SIZE


def test_the_dashboard_answers_the_logged_in_user_and_refuses_anonymous(
    deployment: Deployment,
) -> None:
    assert deployment.status("/reconciler/", auth=True) == 200
    assert deployment.status("/reconciler/", auth=False) in (401, 403)
    assert deployment.status("/api/v2/dags", auth=False) in (401, 403)


def test_the_state_store_is_the_postgresql_reconciler_database(
    facts: Facts, deployment: Deployment
) -> None:
    run = facts.runs["reconcile__demo"][-1]
    store = _store(deployment, [("demo", run)])
    assert store["url"].startswith("postgresql+psycopg2://reconciler:")
    assert store["url"].endswith("@postgres/reconciler")
    assert store[run]["status"] in ("converged", "in_sync")
