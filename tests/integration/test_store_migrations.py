"""Opening the store migrates it: a store made by the last release (create_all, no version table)
is upgraded in place and keeps its history, audit and breakers; a new store gets the whole
schema; the migrations build exactly the tables the code uses, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from reconciler.core.breaker import BreakerState
from reconciler.core.cycle import CycleState
from reconciler.core.model import ActionResult, Outcome, ResourceKey
from reconciler.store import SqlStore, metadata, migrations, open_store
from tests.support import store_schema_d0f59bd as released

pytestmark = pytest.mark.integration

PG_ADMIN_URL = os.environ.get(
    "RECONCILER_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind (a fresh PostgreSQL database per test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT",
                             connect_args={"connect_timeout": 5})
    name = f"reconciler_mig_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required but unreachable (RECONCILER_TEST_PG_URL): {exc}",
                    pytrace=False)
    yield admin.url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def _released_store(url: str) -> tuple[Outcome, ActionResult, BreakerState]:
    """A store as the last release left it: its create_all, one cycle, action and breaker."""
    outcome = Outcome(target="t", correlation_id="c1", status="converged", converged=True,
                      started_at=T0, finished_at=T0 + timedelta(seconds=30))
    result = ActionResult(action_id="a1", key=ResourceKey(kind="sim.Node", name="n1"),
                          type="create", state="succeeded", attempts=1, duration_s=2.0,
                          finished_at=T0)
    breaker = BreakerState(target="t", state="open", consecutive_failures=3, opened_at=T0,
                           reason="three failures")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        released.metadata.create_all(conn)
        conn.execute(sa.insert(released.cycles).values(
            target="t", correlation_id="c1", status="converged", converged=True,
            started_at=T0, finished_at=outcome.finished_at, desired_version="",
            initial_drift_magnitude=0.0, final_drift_magnitude=0.0, urgency="none",
            actions_succeeded=0, actions_failed=0, actions_skipped=0, iterations=1,
            dry_run=False, error=None, outcome_json=outcome.model_dump_json()))
        conn.execute(sa.insert(released.audit).values(
            target="t", correlation_id="c1", at=T0, kind="action", actor="reconciler",
            action_id="a1", dedup_key="k1", resource_kind="sim.Node", action_type="create",
            state="succeeded", is_rollback=False, duration_s=2.0,
            payload_json=result.model_dump_json()))
        conn.execute(sa.insert(released.breakers).values(**breaker.model_dump(), updated_at=T0))
    engine.dispose()
    return outcome, result, breaker


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_a_released_store_is_upgraded_on_open_and_keeps_its_rows(url: str) -> None:
    outcome, result, breaker = _released_store(url)
    assert "reconciler_cycle_states" not in _tables(url)

    with open_store(url) as store:
        assert store.schema_version() == migrations.head_revision() == "0002"
        assert store.recent_cycles("t") == [outcome]
        assert store.final_results("t", "c1") == [result]
        assert store.load_breaker("t") == breaker
        assert [row["action_id"] for row in store.audit_rows("t")] == ["a1"]
        state = CycleState(target="t", correlation_id="c2", started_at=T0,
                           deadline_at=T0 + timedelta(hours=1))
        store.save_cycle_state(state)
        assert store.load_cycle_state("t", "c2") == state


def test_reopening_an_upgraded_store_changes_nothing(url: str) -> None:
    _released_store(url)
    with open_store(url) as store:
        store.save_breaker(store.load_breaker("t").model_copy(update={"reason": "kept"}))
    with open_store(url) as store:
        assert store.schema_version() == "0002"
        assert store.load_breaker("t").reason == "kept"


def test_a_store_made_by_create_all_of_the_current_schema_is_adopted(url: str) -> None:
    """A development store (create_all after reconciler_cycle_states was added, no version)."""
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    with open_store(url) as store:
        assert store.schema_version() == "0002"
        store.save_breaker(BreakerState(target="t", state="open", consecutive_failures=1))
        assert store.load_breaker("t").state == "open"


def test_a_new_store_is_built_by_the_migrations_exactly_as_the_code_declares(url: str) -> None:
    with open_store(url) as store:
        assert store.schema_version() == "0002"
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    # Only the version table is not the code's: any other difference is a missing migration.
    assert [d[1].name for d in diff] == [migrations.VERSION_TABLE], diff


def test_the_version_table_is_our_own_so_airflow_alembic_version_is_untouched(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # Airflow's metadata database, sharing the PostgreSQL db
        conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('29ce7909c52b')")
    with open_store(url) as store:
        assert store.schema_version() == "0002"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all() \
            == ["29ce7909c52b"]
    engine.dispose()


def test_an_in_memory_store_is_migrated_too() -> None:
    store = SqlStore(sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool))
    assert store.schema_version() == "0002"
    store.close()
