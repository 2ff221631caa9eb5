"""The state store under concurrent Celery workers: separate processes, one PostgreSQL database.

Every worker process opens its own engine (as each Airflow task does), and they are released
together by a barrier. Leases stay exclusive, breaker updates and history and audit writes lose
nothing, overlapping audit writes neither duplicate nor deadlock, and a fresh database can be
opened by all of them at once. SQLite (one file, many processes) is held to the same promises.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.core.model import ActionResult, Outcome, ResourceKey
from reconciler.store import open_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PG_ADMIN_URL = os.environ.get(
    "RECONCILER_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
PROCS = 4
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SPAWN = multiprocessing.get_context("spawn")  # fresh interpreters, like Celery workers


@pytest.fixture(scope="module")
def admin() -> Iterator[sa.Engine]:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT",
                              connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required but unreachable (RECONCILER_TEST_PG_URL): {exc}",
                    pytrace=False)
    yield engine
    engine.dispose()


def _fresh_pg(admin: sa.Engine) -> tuple[str, Callable[[], None]]:
    name = f"reconciler_conc_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return admin.url.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database per test (tables not created yet)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    fresh, drop = _fresh_pg(request.getfixturevalue("admin"))
    yield fresh
    drop()


def run_processes(fn: Callable[..., Any], args: list[tuple[Any, ...]]) -> list[Any]:
    """Run fn(barrier, *a) in one spawned process per args, released together; their results."""
    barrier = SPAWN.Barrier(len(args))
    queue = SPAWN.Queue()
    procs = [SPAWN.Process(target=_child, args=(queue, i, fn, barrier, a))
             for i, a in enumerate(args)]
    for proc in procs:
        proc.start()
    answers = dict(queue.get(timeout=240) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
    failures = {i: a for i, a in answers.items() if isinstance(a, str) and a.startswith("ERR")}
    assert not failures, failures
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return [answers[i] for i in range(len(procs))]


def _child(queue: Any, index: int, fn: Callable[..., Any], barrier: Any,
           args: tuple[Any, ...]) -> None:
    try:
        queue.put((index, fn(barrier, *args)))
    except BaseException as exc:  # report, so the parent names the error
        queue.put((index, f"ERR {type(exc).__name__}: {exc}"))


def result(action_id: str, attempts: int = 1) -> ActionResult:
    return ActionResult(action_id=action_id, key=ResourceKey(kind="sim.Node", name=action_id),
                        type="create", state="succeeded", attempts=attempts, duration_s=0.1,
                        finished_at=T0)


def outcome(target: str, cid: str, **changes: Any) -> Outcome:
    fields: dict[str, Any] = {"target": target, "correlation_id": cid, "status": "converged",
                              "converged": True, "started_at": T0,
                              "finished_at": T0 + timedelta(seconds=30)}
    return Outcome(**(fields | changes))


def count(url: str, sql: str) -> int:
    with open_store(url) as store, store.engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


# -- child bodies (module level: spawned interpreters import them) ------------------------------


def _open_at_once(barrier: Any, url: str) -> int:
    barrier.wait(timeout=60)
    with open_store(url) as store:
        store.record_cycle(outcome("t", f"open-{os.getpid()}"))
    return os.getpid()


def _overlapping_audit(barrier: Any, url: str, me: int, rounds: int) -> int:
    """Every process records the same batch (a retried batch recorded twice), shuffled, plus
    rows only it has; a deadlock or any other error fails the whole test."""
    rng = random.Random(me)
    shared = [result(f"shared-{i}") for i in range(200)]
    with open_store(url) as store:
        barrier.wait(timeout=60)
        for r in range(rounds):
            rows = shared + [result(f"own-{me}-{i}") for i in range(25)]
            rng.shuffle(rows)
            store.record_results("t", f"cycle-{r}", rows)
    return rounds


def _history_and_breaker(barrier: Any, url: str, me: int, cycles: int) -> int:
    """A worker's cycle end: history row, the shared cycle's row (a re-run), breaker bump."""
    def bump(state: Any) -> Any:
        return state.model_copy(update={"consecutive_failures": state.consecutive_failures + 1})

    with open_store(url) as store:
        barrier.wait(timeout=60)
        for n in range(cycles):
            store.record_cycle(outcome("t", f"w{me}-c{n}", actions_succeeded=n))
            store.record_cycle(outcome("t", "shared-run", actions_succeeded=me))
            store.update_breaker("t", bump)
            store.record_results("t", f"w{me}-c{n}", [result(f"a{n}")])
    return cycles


def _race_for_lease(barrier: Any, url: str, target: str, holder: str) -> bool:
    with open_store(url) as store:
        barrier.wait(timeout=60)
        return store.acquire_lease(target, holder, 60)


# -- the promises ---------------------------------------------------------------------------------


def test_many_workers_open_a_fresh_database_at_once(url: str) -> None:
    pids = run_processes(_open_at_once, [(url,)] * PROCS)
    assert count(url, "SELECT count(*) FROM reconciler_cycles") == len(set(pids)) == PROCS


def test_overlapping_audit_writes_neither_deadlock_nor_duplicate_nor_lose_rows(url: str) -> None:
    rounds = 8
    run_processes(_overlapping_audit, [(url, me, rounds) for me in range(PROCS)])
    per_round = 200 + PROCS * 25
    assert count(url, "SELECT count(*) FROM reconciler_audit") == rounds * per_round
    assert count(url, "SELECT count(DISTINCT dedup_key) FROM reconciler_audit") == \
        rounds * per_round


def test_history_and_breaker_writes_from_workers_lose_nothing(url: str) -> None:
    cycles = 20
    run_processes(_history_and_breaker, [(url, me, cycles) for me in range(PROCS)])
    with open_store(url) as store:
        assert store.load_breaker("t").consecutive_failures == PROCS * cycles
        history = store.recent_cycles("t", 10_000)
    assert len(history) == PROCS * cycles + 1  # the shared run is one row, updated in place
    assert sorted(o.correlation_id for o in history if o.correlation_id != "shared-run") == \
        sorted(f"w{me}-c{n}" for me in range(PROCS) for n in range(cycles))
    assert count(url, "SELECT count(*) FROM reconciler_audit") == PROCS * cycles


@pytest.mark.parametrize("existing", ["free", "expired", "held"])
def test_exactly_one_worker_process_wins_a_lease(url: str, existing: str) -> None:
    with open_store(url) as store:
        if existing != "free":
            assert store.acquire_lease("t", "earlier-run", -1 if existing == "expired" else 60)
    wins = run_processes(_race_for_lease, [(url, "t", f"run-{i}") for i in range(PROCS)])
    with open_store(url) as store:
        holder = (store.lease_holder("t") or ("",))[0]
    if existing == "held":
        assert wins == [False] * PROCS and holder == "earlier-run"
    else:
        assert sum(wins) == 1 and holder == f"run-{wins.index(True)}"
