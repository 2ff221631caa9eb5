"""The SQL state store keeps history, audit, breakers and leases right on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from reconciler.core.breaker import BreakerState
from reconciler.core.model import (
    Action,
    ActionResult,
    Drift,
    Event,
    Outcome,
    Plan,
    PlanAudit,
    PlanValidation,
    ResourceKey,
    Wave,
)
from reconciler.store import SqlStore, metadata, open_store

pytestmark = pytest.mark.integration

PG_ADMIN_URL = os.environ.get(
    "RECONCILER_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
WORKERS = 8
T = TypeVar("T")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database for this session, dropped at the end."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT",
                             connect_args={"connect_timeout": 5})
    name = f"reconciler_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        where = admin.url.render_as_string(hide_password=True)
        pytest.fail(f"PostgreSQL is required by the store tests but unreachable at {where} "
                    f"(set RECONCILER_TEST_PG_URL to an admin URL): {exc}", pytrace=False)
    yield admin.url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(url: str) -> Iterator[SqlStore]:
    opened = open_store(url)
    with opened.engine.begin() as conn:  # the PG database is shared by the whole session
        for table in metadata.sorted_tables:
            conn.execute(table.delete())
    yield opened
    opened.close()


@pytest.fixture
def workers(url: str, store: SqlStore) -> Iterator[list[SqlStore]]:
    """One store (engine) per worker thread, as separate processes would have."""
    opened = [open_store(url) for _ in range(WORKERS)]
    yield opened
    for each in opened:
        each.close()


def outcome(target: str, cid: str, started: datetime, **changes: Any) -> Outcome:
    fields: dict[str, Any] = {"target": target, "correlation_id": cid, "status": "converged",
                              "converged": True, "started_at": started,
                              "finished_at": started + timedelta(seconds=30)}
    return Outcome(**(fields | changes))


def result(action_id: str, kind: str = "sim.Node", type_: str = "create",
           state: str = "succeeded", duration: float = 1.0, **changes: Any) -> ActionResult:
    fields: dict[str, Any] = {
        "action_id": action_id, "key": ResourceKey(kind=kind, name=action_id), "type": type_,
        "state": state, "attempts": 1, "duration_s": duration, "finished_at": T0,
    }
    return ActionResult(**(fields | changes))


def plan(target: str, cid: str, at: datetime = T0) -> Plan:
    action = Action(id="a1", type="create", target=ResourceKey(kind="sim.Node", name="n1"),
                    idempotency_token="tok-1")
    audit = PlanAudit(created_at=at, target=target, correlation_id=cid, desired_version="v1")
    return Plan(target=target, correlation_id=cid, desired_version="v1",
                waves=(Wave(index=0, actions=(action,)),), rollback_points=(0,),
                validation=PlanValidation(), audit=audit, hash=f"hash-{cid}")


def event(target: str, at: datetime, cid: str = "c1") -> Event:
    return Event(type="drift_detected", target=target, correlation_id=cid, at=at,
                 detail={"drifted": 3})


def race(fn: Callable[[int], T], workers: int = WORKERS) -> list[T]:
    """Run fn(i) on `workers` threads released together, re-raising any worker's error."""
    barrier = threading.Barrier(workers)

    def start(i: int) -> T:
        barrier.wait(timeout=10)
        return fn(i)

    with ThreadPoolExecutor(workers) as pool:
        return [f.result(timeout=60) for f in [pool.submit(start, i) for i in range(workers)]]


def count_rows(store: SqlStore, table: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_recording_a_cycle_twice_updates_it_instead_of_duplicating(store: SqlStore) -> None:
    store.record_cycle(outcome("t", "run-1", T0, status="failed", converged=False))
    store.record_cycle(outcome("t", "run-1", T0, actions_succeeded=4))

    [only] = store.recent_cycles("t")
    assert (only.status, only.actions_succeeded) == ("converged", 4)
    assert count_rows(store, "reconciler_cycles") == 1


def test_recent_cycles_are_newest_first_limited_and_per_target(store: SqlStore) -> None:
    for hours in (2, 0, 4, 1, 3):
        store.record_cycle(outcome("t", f"run-{hours}", T0 + timedelta(hours=hours)))
    store.record_cycle(outcome("other", "run-9", T0 + timedelta(hours=9)))

    cids = [o.correlation_id for o in store.recent_cycles("t", limit=3)]
    assert cids == ["run-4", "run-3", "run-2"]
    assert store.recent_cycles("absent") == []


def test_an_outcome_round_trips_through_the_store_losslessly(store: SqlStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    original = outcome(
        "t", "run-x", datetime(2025, 6, 1, 8, 30, 15, 123456, tzinfo=plus_two),
        status="no_progress", converged=False, iterations=3, actions_failed=2,
        initial_drift=Drift(magnitude=7.5, fraction=0.25, urgency="high",
                            by_urgency={"high": 2, "low": 1}, drifted=3, total=12),
        final_drift=Drift(magnitude=2.0, urgency="low"), desired_version="sha-abc",
        plan_hashes=("p1", "p2"), error="boom: ünïcode", requeue_after_s=30.0, dry_run=True,
    )
    store.record_cycle(original)

    [loaded] = store.recent_cycles("t")
    assert loaded == original
    assert loaded.model_dump_json() == original.model_dump_json()


def test_recording_the_same_plan_results_and_events_twice_adds_nothing(store: SqlStore) -> None:
    results = [result("a1"), result("a2", state="failed"), result("a1", rollback=True)]
    for _ in range(2):
        store.record_plan(plan("t", "c1"))
        store.record_results("t", "c1", results)
        store.record_results("t", "c1", [results[0], results[0]])  # duplicates in one batch
        store.record_event(event("t", T0))

    kinds = [row["kind"] for row in store.audit_rows("t")]
    assert sorted(kinds) == ["action", "action", "action", "event", "plan"]


def test_a_new_attempt_or_state_of_an_action_is_a_new_audit_row(store: SqlStore) -> None:
    store.record_results("t", "c1", [result("a1", state="running")])
    store.record_results("t", "c1", [result("a1", state="failed")])
    store.record_results("t", "c1", [result("a1", state="succeeded", attempts=2)])
    store.record_results("t", "c2", [result("a1", state="succeeded", attempts=2)])

    assert len(store.audit_rows("t", kind="action")) == 4


def test_operator_rows_are_never_deduplicated(store: SqlStore) -> None:
    for _ in range(2):
        store.record_operator("t", "alice", "reset_breaker", {"why": "fixed"})

    rows = store.audit_rows("t", kind="operator")
    assert [r["actor"] for r in rows] == ["alice", "alice"]
    assert rows[0]["payload"] == {"what": "reset_breaker", "detail": {"why": "fixed"}}


def test_audit_rows_filter_by_target_time_and_kind(store: SqlStore) -> None:
    for hours in range(4):
        store.record_event(event("t", T0 + timedelta(hours=hours)))
        store.record_event(event("other", T0 + timedelta(hours=hours)))
    store.record_plan(plan("t", "c1", at=T0 + timedelta(minutes=90)), actor="bob")

    window = store.audit_rows("t", since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3))
    assert [(r["kind"], r["at"]) for r in window] == [
        ("event", T0 + timedelta(hours=2)),
        ("plan", T0 + timedelta(minutes=90)),
        ("event", T0 + timedelta(hours=1)),
    ]
    assert all(r["at"].tzinfo == UTC for r in window)
    assert [r["actor"] for r in store.audit_rows(kind="plan")] == ["bob"]
    assert len(store.audit_rows(kind="event")) == 8
    assert len(store.audit_rows(kind="event", limit=3)) == 3
    assert {r["target"] for r in store.audit_rows("other")} == {"other"}


def test_naive_times_are_taken_as_utc(store: SqlStore) -> None:
    store.record_event(event("t", T0.replace(tzinfo=None)))

    assert [r["at"] for r in store.audit_rows("t")] == [T0]


def test_audit_payload_is_the_model_json(store: SqlStore) -> None:
    store.record_results("t", "c1", [result("a1", duration=2.5)])

    [row] = store.audit_rows("t", correlation_id="c1")
    assert ActionResult.model_validate(row["payload"]) == result("a1", duration=2.5)
    assert row["action_id"] == "a1"


def test_duration_estimates_are_medians_of_recent_successful_forward_actions(
    store: SqlStore,
) -> None:
    old = [result(f"old{i}", duration=100.0, finished_at=T0) for i in range(50)]
    recent = [result(f"new{i}", duration=float(i % 3 + 1), finished_at=T0 + timedelta(hours=1))
              for i in range(200)]
    noise = [result("f", state="failed", duration=999.0),
             result("r", rollback=True, duration=999.0)]
    deletes = [result(f"d{i}", type_="delete", duration=d) for i, d in enumerate((4.0, 6.0, 9.0))]
    store.record_results("t", "c1", old + recent + noise + deletes)
    store.record_results("other", "c2", [result("x", duration=50.0)])

    assert store.duration_estimates("t") == {("sim.Node", "create"): 2.0,
                                             ("sim.Node", "delete"): 6.0}
    assert store.duration_estimates("absent") == {}


def test_listing_counts_are_remembered_per_target_across_cycles(store: SqlStore) -> None:
    store.save_listing_counts("t", "c1", {"sim.Node": 5, "sim.Workload": 2})
    store.save_listing_counts("t", "c1", {"sim.Node": 6})  # the same cycle senses again
    store.save_listing_counts("other", "x1", {"sim.Node": 99})
    assert store.listing_counts("t", "c1") == {}  # a cycle never compares with itself
    assert store.listing_counts("t", "c2") == {"sim.Node": 6, "sim.Workload": 2}
    store.save_listing_counts("t", "c2", {"sim.Node": 0})
    assert store.listing_counts("t", "c2") == {"sim.Node": 6, "sim.Workload": 2}
    assert store.listing_counts("t", "c3") == {"sim.Node": 0, "sim.Workload": 2}
    assert store.listing_counts("other", "x2") == {"sim.Node": 99}


def test_an_unknown_target_has_a_closed_breaker(store: SqlStore) -> None:
    assert store.load_breaker("t") == BreakerState(target="t")


def test_a_saved_breaker_loads_back_with_utc_times(store: SqlStore) -> None:
    opened = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5)))
    state = BreakerState(target="t", state="open", consecutive_failures=3, opened_at=opened,
                         reason="3 failed cycles")
    store.save_breaker(state)
    store.save_breaker(state.model_copy(update={"reason": "still failing"}))

    loaded = store.load_breaker("t")
    assert loaded == state.model_copy(update={"reason": "still failing"})
    assert loaded.opened_at is not None and loaded.opened_at.tzinfo == UTC


def test_concurrent_breaker_updates_lose_nothing(
    store: SqlStore, workers: list[SqlStore]
) -> None:
    def bump(state: BreakerState) -> BreakerState:
        time.sleep(0.001)  # widen the read-modify-write window a lost update would need
        return state.model_copy(update={"consecutive_failures": state.consecutive_failures + 1})

    def worker(i: int) -> None:
        for _ in range(25):
            workers[i].update_breaker("t", bump)

    race(worker)
    assert store.load_breaker("t").consecutive_failures == WORKERS * 25


def _bump_from_process(url: str, times: int) -> None:
    with open_store(url) as own:
        for _ in range(times):
            own.update_breaker("t", lambda s: s.model_copy(
                update={"consecutive_failures": s.consecutive_failures + 1}))


def test_breaker_updates_from_separate_processes_lose_nothing(url: str, store: SqlStore) -> None:
    context = multiprocessing.get_context("spawn")  # fresh interpreters, like Celery workers
    processes = [context.Process(target=_bump_from_process, args=(url, 25)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * 4
    assert store.load_breaker("t").consecutive_failures == 4 * 25


def test_update_breaker_refuses_to_change_the_target(store: SqlStore) -> None:
    with pytest.raises(ValueError, match="target"):
        store.update_breaker("t", lambda s: BreakerState(target="elsewhere"))
    assert store.load_breaker("t") == BreakerState(target="t")


def test_a_lease_is_exclusive_between_holders(store: SqlStore) -> None:
    assert store.acquire_lease("t", "a", 60)
    assert not store.acquire_lease("t", "b", 60)
    assert store.acquire_lease("other", "b", 60)
    assert (store.lease_holder("t") or ("",))[0] == "a"


def test_the_holder_renews_its_lease(store: SqlStore) -> None:
    assert store.acquire_lease("t", "a", 60)
    holder, first_expiry = store.lease_holder("t") or ("", T0)
    assert store.acquire_lease("t", "a", 600)
    assert (store.lease_holder("t") or ("", T0))[1] > first_expiry + timedelta(seconds=500)
    assert holder == "a"


def test_an_expired_lease_can_be_taken_over(store: SqlStore) -> None:
    assert store.acquire_lease("t", "a", 0.05)
    time.sleep(0.1)
    assert store.lease_holder("t") is None
    assert store.acquire_lease("t", "b", 60)
    assert not store.acquire_lease("t", "a", 60)


def test_only_the_holder_can_release_a_lease(store: SqlStore) -> None:
    assert store.acquire_lease("t", "a", 60)
    store.release_lease("t", "b")
    assert not store.acquire_lease("t", "b", 60)
    store.release_lease("t", "a")
    assert store.acquire_lease("t", "b", 60)


@pytest.mark.parametrize("existing_ttl_s", [None, -1.0], ids=["free", "expired"])
def test_exactly_one_racing_worker_wins_a_lease(
    store: SqlStore, workers: list[SqlStore], existing_ttl_s: float | None
) -> None:
    if existing_ttl_s is not None:
        assert store.acquire_lease("t", "crashed-worker", existing_ttl_s)

    wins = race(lambda i: workers[i].acquire_lease("t", f"worker-{i}", 60))

    assert sum(wins) == 1
    assert (store.lease_holder("t") or ("",))[0] == f"worker-{wins.index(True)}"


def test_opening_twice_is_idempotent_and_keeps_data(url: str, store: SqlStore) -> None:
    store.record_cycle(outcome("t", "run-1", T0))
    with open_store(url) as again:
        assert [o.correlation_id for o in again.recent_cycles("t")] == ["run-1"]


def test_the_default_store_is_sqlite_under_reconciler_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECONCILER_STORE_URL", raising=False)
    monkeypatch.setenv("RECONCILER_HOME", str(tmp_path / "home" / "nested"))
    with open_store() as default:
        assert default.engine.dialect.name == "sqlite"
        with default.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    assert (tmp_path / "home" / "nested" / "state.db").is_file()

    monkeypatch.setenv("RECONCILER_STORE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    open_store().close()
    assert (tmp_path / "env.db").is_file()


def test_the_store_url_password_is_never_logged(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret_url = sa.make_url(pg_url).set(password="s3cr3t-pw")  # trust auth ignores it
    with caplog.at_level(logging.DEBUG, logger="reconciler"):
        opened = open_store(secret_url.render_as_string(hide_password=False))
    opened.close()
    assert "s3cr3t-pw" not in caplog.text + repr(opened)
    assert "***" in caplog.text


def test_an_unsupported_backend_is_rejected() -> None:
    with pytest.raises(ValueError, match="sqlite or postgresql"):
        open_store("mysql://user@localhost/db")


def test_a_create_in_flight_keeps_its_first_token_for_every_worker(
        store: SqlStore, workers: list[SqlStore]) -> None:
    from reconciler.core.model import PendingCreate, ResourceKey

    key = ResourceKey(kind="sim.Node", name="n1")

    def attempt(i: int) -> str:
        mine = PendingCreate(key=key, token=f"token-{i}", base_token="b", correlation_id=f"c{i}",
                             started_at=datetime(2026, 1, 1, tzinfo=UTC))
        return workers[i % len(workers)].begin_create("t", mine).token

    with ThreadPoolExecutor(max_workers=4) as pool:
        tokens = set(pool.map(attempt, range(8)))
    assert len(tokens) == 1  # one record wins; every racer sends its token
    kept = store.pending_creates("t")
    assert list(kept) == [key] and kept[key].token in tokens
    assert kept[key].started_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert store.pending_creates("other") == {}
    store.end_creates("t", [key])
    assert store.pending_creates("t") == {}


def test_fencing_tokens_grow_with_each_new_holder_and_approvals_are_by_hash(
        store: SqlStore) -> None:
    from reconciler.core.model import Approval

    assert store.acquire_lease("t", "a", 60)
    first = store.lease_fence("t", "a")
    assert first is not None and store.lease_fence("t", "b") is None
    assert store.acquire_lease("t", "a", 60) and store.lease_fence("t", "a") == first
    assert not store.acquire_lease("t", "b", 60)
    store.release_lease("t", "a")
    assert store.acquire_lease("t", "b", 60) and store.lease_fence("t", "b") == first + 1
    assert store.lease_fence("t", "a") is None  # a stale holder is told so
    assert store.acquire_lease("t", "b", -1)  # expired at once ...
    assert store.acquire_lease("t", "c", 60) and store.lease_fence("t", "c") == first + 2
    at = datetime(2026, 1, 1, tzinfo=UTC)
    store.record_approval(Approval(target="t", plan_hash="h1", actor="cli:alice",
                                   surface="cli", at=at))
    assert store.claim_approval("t", "h1", "c1") == Approval(
        target="t", plan_hash="h1", actor="cli:alice", surface="cli", at=at, used_by="c1")
    assert store.claim_approval("t", "h1", "c1") is not None  # every batch of that cycle
    assert store.claim_approval("t", "h1", "c2") is None  # spent by c1
    assert store.claim_approval("t", "h2", "c1") is None
    assert store.claim_approval("u", "h1", "c1") is None
