"""Scale-out on CeleryExecutor, for real: the native cluster of ``scripts/cluster.py``.

PostgreSQL (unique metadata and state databases), Redis (a Redis DB of its own), api-server,
scheduler, dag-processor, triggerer and two ``airflow celery worker`` processes. A drifted
300-resource simulated fleet with injected API latency is reconciled through the REST API; one
worker is killed with SIGKILL in the middle of actuation while a second run waits its turn.

    pytest -m system tests/system/test_celery.py

The scenario runs once (module fixture); each test checks one promise from its facts.
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from airflow_stack import free_port  # noqa: E402
from cluster import Cluster, _group_alive  # noqa: E402

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]

TARGET, DAG = "fleet", "reconcile__fleet"
SIZE, SLOTS, BATCH, LATENCY_S = 300, 4, 10, 0.8
STRAYS = 10  # managed resources missing from the desired state: deleted by the run
REDIS = "redis://127.0.0.1:6379"


# -- the world: databases, Redis DB, fleet, cluster ---------------------------------------------


@pytest.fixture(scope="module")
def redis_db() -> Iterator[int]:
    """A Redis database no one else uses: empty, claimed with a marker key, flushed at the end."""
    import redis

    token = uuid.uuid4().hex
    for db in range(15, 0, -1):
        client = redis.Redis.from_url(f"{REDIS}/{db}")
        if client.set("reconciler:test-claim", token, nx=True, ex=3600) and client.dbsize() == 1:
            break
        client.close()
    else:
        pytest.fail("no free Redis database (1-15) on 127.0.0.1:6379")
    yield db
    client.flushdb()
    client.close()


def _write_desired(root: Path) -> None:
    from reconciler.providers.simulated import generate_fleet

    fleet = generate_fleet(SIZE, random.Random(5))
    lines = ["resources:"]
    lines += [f"  - {{kind: {k}, name: {n}, spec: {json.dumps(s)}}}" for k, n, s in fleet]
    (root / "desired").mkdir()
    (root / "desired" / "fleet.yaml").write_text("\n".join(lines) + "\n")


def _desired(root: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The desired specs as the loader normalises them (defaults filled in), by (kind, name)."""
    from reconciler.desired import load_desired

    resources = load_desired(str(root / "desired")).resources
    return {(r.key.kind, r.key.name): dict(r.spec) for r in resources}


def _targets(root: Path, state: Path) -> Path:
    config = root / "targets.yaml"
    config.write_text(f"""\
targets:
  {TARGET}:
    provider:
      type: simulated
      options: {{state: "{state}/fleet-sim.db", faults: {{latency_s: {LATENCY_S}}}}}
    desired: desired
    schedule: null
    policy: {{max_parallel: {SLOTS}, batch_size: {BATCH}, max_delete_fraction: 0.5,
              cycle_deadline_seconds: 600}}
    alerts: {{deadline: false}}
    airflow: {{retries: 2, retry_delay_seconds: 1}}
""")
    return config


def _drift(state: Path, desired: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The fleet as desired, then: a third missing, a third relabelled (updates), plus managed
    strays the desired state does not have (deletes)."""
    from reconciler.providers.simulated import SimulatedProvider

    fleet = sorted(desired.items())
    with SimulatedProvider(state / "fleet-sim.db") as sim:
        sim.put_many([(k, n, s) for i, ((k, n), s) in enumerate(fleet) if i % 3])
        for (k, n), s in fleet[1::3]:
            sim.put(k, n, {**s, "labels": {"team": "edited-by-hand"}})
        for (k, n), s in fleet[-STRAYS:]:
            sim.put(k, f"stray-{n}", s)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_db: int) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("celery")
    state = root / "reconciler"
    state.mkdir()
    _write_desired(root)
    desired = _desired(root)
    session = uuid.uuid4().hex[:10]
    cluster = Cluster(
        root / "cluster", airflow_db=f"reconciler_celery_{session}_airflow",
        state_db=f"reconciler_celery_{session}_state", redis_url=f"{REDIS}/{redis_db}",
        port=free_port(), workers=2, concurrency=2, config=_targets(root, state),
        reconciler_home=state, parallelism=8,
        extra_env={
            # a killed worker's running tasks are failed (then retried) within ~25 s
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            # a message the dead worker took but never started is handed out again
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "60",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
        })
    try:
        cluster.start()
        cluster.stack.wait_dag(DAG)
        _drift(state, desired)
        yield {"cluster": cluster, "desired": desired, "state": state}
    finally:
        cluster.stop()
        cluster.drop_databases()


# -- the scenario --------------------------------------------------------------------------------


@dataclass
class Facts:
    """What the scenario saw, for the tests to judge."""

    first: str = ""
    second: str = ""
    states: dict[str, str] = field(default_factory=dict)
    second_state_during_first: str = ""
    lease_holder: str | None = None
    intruder_got_lease: bool = True
    killed_running: list[int] = field(default_factory=list)
    tries: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


def _actuate(stack: Any, run: str) -> list[dict[str, Any]]:
    return [t for t in stack.task_instances(DAG, run) if t["task_id"] == "pass_1.actuate"]


def _wait_for(stack: Any, run: str, ready: Callable[[list[dict[str, Any]]], list[int]],
              what: str, timeout_s: float = 240) -> list[int]:
    """Poll the run's actuate batches until ``ready`` returns map indexes (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        tis = _actuate(stack, run)
        found = ready(tis)
        if found:
            return found
        if stack.request("GET", f"/api/v2/dags/{DAG}/dagRuns/{run}")["state"] in ("success",
                                                                                  "failed"):
            break
        time.sleep(0.2)
    raise AssertionError(f"{what} never happened: {tis}")


def _both_workers_used(tis: list[dict[str, Any]]) -> list[int]:
    """A batch done on w1 and one running or done on w2: actuation spans both workers."""
    done_w1 = [t["map_index"] for t in tis if t["state"] == "success" and _worker(t) == "w1"]
    on_w2 = [t["map_index"] for t in tis
             if t["state"] in ("running", "success") and _worker(t) == "w2"]
    return done_w1 + on_w2 if done_w1 and on_w2 else []


def _running_on_w1(tis: list[dict[str, Any]]) -> list[int]:
    return [t["map_index"] for t in tis if t["state"] == "running" and _worker(t) == "w1"]


def _worker(ti: dict[str, Any]) -> str:
    return str(ti.get("hostname") or "").split("@")[0]


def _tries(stack: Any, run: str, map_index: int) -> list[dict[str, Any]]:
    path = f"/api/v2/dags/{DAG}/dagRuns/{run}/taskInstances/pass_1.actuate/{map_index}/tries"
    return list(stack.request("GET", path)["task_instances"])


@pytest.fixture(scope="module")
def facts(world: dict[str, Any]) -> Facts:
    """Steps 1-4: trigger through REST, spread over both workers, a second run triggered and
    the lease checked while the first actuates, worker 1 killed, both runs waited for."""
    from reconciler.orchestration.runtime import correlation_id_for_run
    from reconciler.store import open_store

    cluster, seen = world["cluster"], Facts()
    stack = cluster.stack
    seen.first = stack.trigger(DAG)  # POST /api/v2/dags/{id}/dagRuns, token from /auth/token
    _wait_for(stack, seen.first, _both_workers_used, "actuation on both workers")
    seen.second = stack.trigger(DAG)  # while the first actuates
    with open_store(cluster.db_url(cluster.state_db)) as store:
        holder = store.lease_holder(TARGET)
        seen.lease_holder = holder[0] if holder else None
        seen.intruder_got_lease = store.acquire_lease(
            TARGET, correlation_id_for_run(TARGET, seen.second), 60)
    seen.killed_running = _wait_for(stack, seen.first, _running_on_w1, "a batch on w1")
    cluster.kill(cluster.worker(1))  # kill -9 of the worker's whole process group, at once
    seen.second_state_during_first = stack.request(
        "GET", f"/api/v2/dags/{DAG}/dagRuns/{seen.second}")["state"]
    for run in (seen.first, seen.second):
        seen.states[run] = stack.wait_run(DAG, run, timeout_s=360)
    seen.tries = {t["map_index"]: _tries(stack, seen.first, t["map_index"])
                  for t in _actuate(stack, seen.first)}
    # kept beside the cluster's logs for a post-mortem
    (cluster.home / "facts.json").write_text(json.dumps(seen.__dict__, indent=1, default=str))
    return seen


def _store(world: dict[str, Any]) -> Any:
    from reconciler.store import open_store

    cluster = world["cluster"]
    return open_store(cluster.db_url(cluster.state_db))


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- step 2: both workers, never more than the pool's slots -------------------------------------


def test_mapped_actuation_ran_on_both_workers(facts: Facts) -> None:
    final = {i: tries[-1] for i, tries in facts.tries.items()}
    assert len(final) >= 20 and all(t["state"] == "success" for t in final.values()), final
    workers = {_worker(t) for tries in facts.tries.values() for t in tries}
    assert {"w1", "w2"} <= workers, workers


def test_no_more_batches_ran_at_once_than_the_pool_has_slots(facts: Facts) -> None:
    """A try holds a pool slot from queued to end (the pool counts queued and running tries).
    Not from ``start_date``: a batch that deferred (waiting for its wave, holding no slot)
    keeps its first start_date when it resumes, and is queued again then."""
    tries = [t for each in facts.tries.values() for t in each]
    assert all(t["queued_when"] and t["end_date"] for t in tries), tries
    spans = [(_ts(t["queued_when"]), _ts(t["end_date"])) for t in tries]
    # ends sort before starts at the same instant: a slot freed and retaken is not an overlap
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    held, most = 0, 0
    for _, step in edges:
        held += step
        most = max(most, held)
    assert 2 <= most <= SLOTS, f"{most} batches held a slot at once; the pool has {SLOTS}"
    assert {t["pool"] for t in tries} == {f"reconciler__{TARGET}"}


# -- step 3: a worker killed mid-actuation; the run still converges, exactly once ---------------


def test_the_run_converged_although_a_worker_was_killed(facts: Facts, world: dict) -> None:
    assert facts.states[facts.first] == "success"
    with _store(world) as store:
        [outcome] = [o for o in store.recent_cycles(TARGET, 10)
                     if o.correlation_id == _cid(facts.first)]
    assert outcome.status == "converged" and outcome.actions_failed == 0
    for index in facts.killed_running:  # retried elsewhere unless it had just finished
        tries = facts.tries[index]
        assert tries[-1]["state"] == "success"
        assert len(tries) == 1 or _worker(tries[-1]) == "w2", tries


def test_the_fleet_matches_the_desired_state_with_no_duplicates(facts: Facts, world: dict) -> None:
    from reconciler.providers.simulated import SimulatedProvider

    assert facts.states[facts.first] == "success"
    with SimulatedProvider(world["state"] / "fleet-sim.db") as sim:
        live = {(r.key.kind, r.key.name): r for r in sim.resources()}
    want = world["desired"]
    assert sorted(live) == sorted(want)  # nothing missing, no stray, no second copy
    assert all(live[key].spec == spec and live[key].managed for key, spec in want.items())
    plan = _plan(world, facts.first)
    creates = {a["id"]: a for w in plan["waves"] for a in w["actions"] if a["type"] == "create"}
    assert len(creates) == SIZE // 3
    made_by = _create_tokens(world, facts.first)
    for action in creates.values():  # created once, by the token its one successful call sent
        key = (action["target"]["kind"], action["target"]["name"])
        assert live[key].provider_id == _provider_id(*key, made_by[action["id"]])


def test_every_planned_action_has_exactly_one_success_in_the_audit(
    facts: Facts, world: dict
) -> None:
    plan = _plan(world, facts.first)
    planned = {a["id"] for w in plan["waves"] for a in w["actions"]}
    assert len(planned) == SIZE // 3 * 2 + STRAYS
    with _store(world) as store:
        rows = store.audit_rows(target=TARGET, kind="action", correlation_id=_cid(facts.first),
                                limit=100_000)
        [outcome] = [o for o in store.recent_cycles(TARGET, 10)
                     if o.correlation_id == _cid(facts.first)]
    succeeded = [r["action_id"] for r in rows if r["payload"]["state"] == "succeeded"
                 and not r["payload"].get("rollback")]
    assert sorted(succeeded) == sorted(planned)  # none lost, none twice
    assert outcome.actions_succeeded == len(planned)


# -- step 4: the second run waited (max_active_runs=1) and the lease stayed with the first -------


def test_a_second_run_waits_while_the_first_actuates(facts: Facts, world: dict) -> None:
    assert facts.second_state_during_first == "queued"
    assert facts.lease_holder == _cid(facts.first)
    assert facts.intruder_got_lease is False
    stack = world["cluster"].stack
    first_end = max(_ts(t["end_date"]) for tries in facts.tries.values() for t in tries)
    second = stack.task_instances(DAG, facts.second)
    started = [_ts(t["start_date"]) for t in second if t["start_date"] and t["try_number"]]
    assert started and min(started) >= first_end
    assert facts.states[facts.second] == "success"
    assert not [t for t in second if t["task_id"] == "pass_1.actuate" and t["state"] == "success"]
    with _store(world) as store:
        [outcome] = [o for o in store.recent_cycles(TARGET, 10)
                     if o.correlation_id == _cid(facts.second)]
    assert outcome.status == "in_sync" and outcome.actions_succeeded == 0


# -- step 5: everything started is stopped, by PID -----------------------------------------------


def test_stopping_ends_every_process_it_started(facts: Facts, world: dict) -> None:
    cluster = world["cluster"]
    pids = dict(cluster.pids())
    assert len(pids) == 5  # api-server, scheduler, dag-processor, triggerer, worker 2
    assert all(_group_alive(pid) for pid in pids.values())
    started = time.monotonic()
    stopped = cluster.stop()
    assert stopped == pids and not (cluster.home / "pids.json").exists()
    assert not [name for name, pid in pids.items() if _group_alive(pid)]
    assert time.monotonic() - started < 60


# -- helpers -------------------------------------------------------------------------------------


def _cid(run_id: str) -> str:
    from reconciler.orchestration.runtime import correlation_id_for_run

    return correlation_id_for_run(TARGET, run_id)


def _plan(world: dict[str, Any], run_id: str) -> dict[str, Any]:
    path = world["state"] / "artifacts" / TARGET / _cid(run_id) / "plan-1.json"
    return dict(json.loads(path.read_text()))


def _create_tokens(world: dict[str, Any], run_id: str) -> dict[str, str]:
    """action id -> the client token its successful create sent (recorded in the audit)."""
    with _store(world) as store:
        rows = store.audit_rows(target=TARGET, kind="action", correlation_id=_cid(run_id),
                                limit=100_000)
    return {r["action_id"]: r["payload"]["token"] for r in rows
            if r["payload"]["state"] == "succeeded" and r["payload"]["type"] == "create"}


def _provider_id(kind: str, name: str, token: str) -> str:
    from reconciler.providers.simfleet import provider_id

    return provider_id(kind, name, token)
