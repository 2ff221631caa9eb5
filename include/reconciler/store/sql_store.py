"""The Store port on SQLAlchemy Core (SQLite, PostgreSQL): cycle history, audit, breakers,
leases, approvals and creates in flight."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from reconciler.core.breaker import BreakerState
from reconciler.core.cycle import CycleState
from reconciler.core.model import (
    ActionResult,
    Approval,
    Event,
    Outcome,
    PendingCreate,
    Plan,
    ResourceKey,
    canonical_json,
)
from reconciler.core.sense import ListingCount
from reconciler.store import migrations
from reconciler.store.engine import configure_sqlite, writer
from reconciler.store.rows import (
    AuditKind,
    action_row,
    audit_dict,
    audit_row,
    breaker_from_row,
    cycle_values,
    insert_ignore,
    listing_count_of,
    pending_of,
    row_key,
    upsert,
)
from reconciler.store.schema import (
    approvals,
    audit,
    breakers,
    cycle_states,
    cycles,
    fences,
    leases,
    listings,
    pending_creates,
)

__all__ = ["SqlStore"]

_ESTIMATE_WINDOW = 200
_LOCK_KEY = 0x5EC0C11E  # pg advisory lock serialising concurrent schema upgrades
_utcnow = partial(datetime.now, UTC)


class SqlStore:
    """The Store port (history, audit, breaker, leases) on one SQLAlchemy engine."""

    def __init__(self, engine: Engine, now: Callable[[], datetime] = _utcnow) -> None:
        self.engine = engine
        self._now = now
        self._dialect = engine.dialect.name
        if self._dialect == "sqlite":
            configure_sqlite(engine)
        self._writer = writer(engine)
        self._upgrade_schema()

    def __repr__(self) -> str:
        return f"SqlStore({self.engine.url.render_as_string(hide_password=True)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    def _upgrade_schema(self) -> None:
        """Bring the store to the newest schema (creating it if empty), one opener at a time."""
        with self._writer.begin() as conn:  # on SQLite, BEGIN IMMEDIATE serialises openers
            if self._dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            migrations.upgrade(conn)

    def schema_version(self) -> str | None:
        """The applied migration (`reconciler_alembic_version`), e.g. "0002"."""
        with self.engine.connect() as conn:
            return migrations.current_revision(conn)

    def record_cycle(self, outcome: Outcome) -> None:
        stmt = upsert(self._dialect, cycles, cycle_values(outcome), ("target", "correlation_id"))
        with self._writer.begin() as conn:
            conn.execute(stmt)

    def recent_cycles(self, target: str, limit: int = 20) -> list[Outcome]:
        query = (sa.select(cycles.c.outcome_json).where(cycles.c.target == target)
                 .order_by(cycles.c.started_at.desc(), cycles.c.id.desc()).limit(max(0, limit)))
        with self.engine.connect() as conn:
            return [Outcome.model_validate_json(j) for j in conn.execute(query).scalars()]

    def record_plan(self, plan: Plan, actor: str = "reconciler") -> None:
        dedup = row_key("plan", plan.target, plan.correlation_id, plan.hash)
        self._audit_insert([audit_row("plan", plan.target, plan.correlation_id, actor,
                                       plan.audit.created_at, plan.model_dump_json(),
                                       dedup_key=dedup)])

    def record_results(self, target: str, correlation_id: str,
                       results: Sequence[ActionResult]) -> None:
        now = self._now()
        self._audit_insert([action_row(target, correlation_id, r, now) for r in results])

    def final_results(self, target: str, correlation_id: str) -> list[ActionResult]:
        """Each forward action's last recorded result in this cycle (an attempt that an
        Airflow retry then fixed is not a failure)."""
        query = (sa.select(audit.c.action_id, audit.c.payload_json)
                 .where(audit.c.target == target, audit.c.correlation_id == correlation_id,
                        audit.c.kind == "action", audit.c.is_rollback.is_(False))
                 .order_by(audit.c.at.desc(), audit.c.id.desc()))
        final: dict[str, ActionResult] = {}
        with self.engine.connect() as conn:
            for action_id, payload in conn.execute(query):
                if action_id not in final:
                    final[action_id] = ActionResult.model_validate_json(payload)
        return list(final.values())

    def save_cycle_state(self, state: CycleState) -> None:
        values = {"target": state.target, "correlation_id": state.correlation_id,
                  "state_json": state.model_dump_json(), "updated_at": self._now()}
        with self._writer.begin() as conn:
            conn.execute(upsert(self._dialect, cycle_states, values,
                                 ("target", "correlation_id")))

    def load_cycle_state(self, target: str, correlation_id: str) -> CycleState | None:
        query = sa.select(cycle_states.c.state_json).where(
            cycle_states.c.target == target, cycle_states.c.correlation_id == correlation_id)
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        return CycleState.model_validate_json(found) if found else None

    def record_event(self, event: Event, actor: str = "reconciler") -> None:
        payload = event.model_dump_json()
        self._audit_insert([audit_row("event", event.target, event.correlation_id, actor,
                                       event.at, payload, action_id=event.action_id,
                                       dedup_key=row_key("event", payload))])

    def record_operator(self, target: str, actor: str, what: str,
                        detail: Mapping[str, Any] | None = None,
                        correlation_id: str = "") -> None:
        """A human action (approval, breaker reset, ...); never deduplicated."""
        payload = canonical_json({"what": what, "detail": dict(detail or {})})
        self._audit_insert([audit_row("operator", target, correlation_id, actor,
                                       self._now(), payload)])

    def _audit_insert(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            # One key order for every writer: two workers recording overlapping rows (a retried
            # batch, a worker presumed dead) in different orders deadlock on PostgreSQL's
            # unique index, and the loser's transaction (with its own rows) is rolled back.
            rows = sorted(rows, key=lambda row: row["dedup_key"] or "")
            with self._writer.begin() as conn:
                conn.execute(insert_ignore(self._dialect, audit, ("dedup_key",)), rows)

    def audit_rows(self, target: str | None = None, since: datetime | None = None,
                   until: datetime | None = None, kind: AuditKind | None = None,
                   limit: int = 200, correlation_id: str | None = None,
                   targets: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """At most ``limit`` audit rows newest first, ``since <= at < until``, of ``target``
        and/or any of ``targets``; ``payload`` is the decoded JSON."""
        query = sa.select(audit)
        if targets is not None:
            query = query.where(audit.c.target.in_(list(targets)))
        for column, value in (("target", target), ("kind", kind),
                              ("correlation_id", correlation_id)):
            if value is not None:
                query = query.where(audit.c[column] == value)
        if since is not None:
            query = query.where(audit.c.at >= since)
        if until is not None:
            query = query.where(audit.c.at < until)
        query = query.order_by(audit.c.at.desc(), audit.c.id.desc()).limit(max(0, limit))
        with self.engine.connect() as conn:
            return [audit_dict(row) for row in conn.execute(query)]

    def duration_estimates(self, target: str) -> dict[tuple[str, str], float]:
        """Median duration of recent successful forward actions per (resource kind, action type)."""
        group = (audit.c.resource_kind, audit.c.action_type)
        rank = sa.func.row_number().over(
            partition_by=group, order_by=(audit.c.at.desc(), audit.c.id.desc())).label("rank")
        recent = (sa.select(*group, audit.c.duration_s, rank)
                  .where(audit.c.target == target, audit.c.kind == "action",
                         audit.c.state == "succeeded", audit.c.is_rollback.is_(False))
                  .subquery())
        query = sa.select(recent.c.resource_kind, recent.c.action_type, recent.c.duration_s)
        query = query.where(recent.c.rank <= _ESTIMATE_WINDOW)
        samples: dict[tuple[str, str], list[float]] = {}
        with self.engine.connect() as conn:
            for kind, action_type, duration in conn.execute(query):
                samples.setdefault((kind, action_type), []).append(float(duration))
        return {key: statistics.median(values) for key, values in samples.items()}

    def load_breaker(self, target: str) -> BreakerState:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(breakers).where(breakers.c.target == target)).first()
        return BreakerState(target=target) if row is None else breaker_from_row(row)

    def save_breaker(self, state: BreakerState) -> None:
        with self._writer.begin() as conn:
            conn.execute(self._breaker_upsert(state))

    def update_breaker(self, target: str,
                       fn: Callable[[BreakerState], BreakerState]) -> BreakerState:
        """Read-modify-write under a row lock (SQLite: BEGIN IMMEDIATE), so no update is lost."""
        with self._writer.begin() as conn:
            # A row must exist for FOR UPDATE to have something to lock.
            conn.execute(insert_ignore(self._dialect, breakers, ("target",)),
                         self._breaker_values(BreakerState(target=target)))
            row = conn.execute(sa.select(breakers).where(breakers.c.target == target)
                               .with_for_update()).one()
            new = fn(breaker_from_row(row))
            if new.target != target:
                raise ValueError(f"update_breaker({target!r}): fn changed the target")
            conn.execute(self._breaker_upsert(new))
        return new

    def _breaker_values(self, state: BreakerState) -> dict[str, Any]:
        return {**dict(state), "updated_at": self._now()}

    def _breaker_upsert(self, state: BreakerState) -> Any:
        return upsert(self._dialect, breakers, self._breaker_values(state), ("target",))

    def listing_counts(self, target: str, correlation_id: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(listings).where(listings.c.target == target)).all()
        seen = {r.kind: listing_count_of(r).seen_by(correlation_id) for r in rows}
        return {kind: n for kind, n in seen.items() if n is not None}

    def save_listing_counts(self, target: str, correlation_id: str,
                            counts: Mapping[str, int]) -> None:
        if not counts:
            return
        with self._writer.begin() as conn:
            rows = conn.execute(sa.select(listings).where(listings.c.target == target)).all()
            old = {r.kind: listing_count_of(r) for r in rows}
            for kind, n in counts.items():
                new = (old[kind].saved(correlation_id, n) if kind in old
                       else ListingCount(n, correlation_id))
                values = {"target": target, "kind": kind, "count": new.count,
                          "cycle": new.cycle, "prev_count": new.prev_count,
                          "prev_cycle": new.prev_cycle}
                conn.execute(upsert(self._dialect, listings, values, ("target", "kind")))

    def pending_creates(self, target: str) -> dict[ResourceKey, PendingCreate]:
        query = sa.select(pending_creates).where(pending_creates.c.target == target)
        with self.engine.connect() as conn:
            return {(p := pending_of(row)).key: p for row in conn.execute(query)}

    def begin_create(self, target: str, pending: PendingCreate) -> PendingCreate:
        """Insert unless a record exists (ON CONFLICT DO NOTHING), then read what is kept."""
        key = pending.key
        values = {"target": target, "kind": key.kind, "name": key.name, "token": pending.token,
                  "base_token": pending.base_token, "correlation_id": pending.correlation_id,
                  "started_at": pending.started_at}
        which = ((pending_creates.c.target == target) & (pending_creates.c.kind == key.kind)
                 & (pending_creates.c.name == key.name))
        with self._writer.begin() as conn:
            conn.execute(insert_ignore(self._dialect, pending_creates,
                                        ("target", "kind", "name")), [values])
            return pending_of(conn.execute(sa.select(pending_creates).where(which)).one())

    def end_creates(self, target: str, keys: Sequence[ResourceKey]) -> None:
        if not keys:
            return
        with self._writer.begin() as conn:
            for key in keys:
                conn.execute(sa.delete(pending_creates).where(
                    (pending_creates.c.target == target) & (pending_creates.c.kind == key.kind)
                    & (pending_creates.c.name == key.name)))

    def acquire_lease(self, target: str, holder: str, ttl_s: float) -> bool:
        """Take, renew (same holder) or take over an expired lease; False if someone holds it.
        A change of holder bumps the target's fencing token in the same transaction."""
        now = self._now()
        expires = now + timedelta(seconds=ttl_s)
        here = leases.c.target == target
        renew = sa.update(leases).where(here & (leases.c.holder == holder))
        take = sa.update(leases).where(here & (leases.c.expires_at <= now))
        with self._writer.begin() as conn:
            if conn.execute(renew.values(expires_at=expires)).rowcount == 1:
                return True
            if conn.execute(take.values(holder=holder, expires_at=expires)).rowcount == 1:
                self._bump_fence(conn, target)
                return True
        try:
            with self._writer.begin() as conn:
                row = {"target": target, "holder": holder, "expires_at": expires}
                conn.execute(sa.insert(leases).values(row))
                self._bump_fence(conn, target)
        except IntegrityError:
            return False  # a live lease exists (or a racer inserted first)
        return True

    def _bump_fence(self, conn: sa.Connection, target: str) -> None:
        conn.execute(insert_ignore(self._dialect, fences, ("target",)),
                     [{"target": target, "fence": 0}])
        conn.execute(sa.update(fences).where(fences.c.target == target)
                     .values(fence=fences.c.fence + 1))

    def lease_fence(self, target: str, holder: str) -> int | None:
        query = (sa.select(fences.c.fence)
                 .select_from(leases.join(fences, fences.c.target == leases.c.target))
                 .where(leases.c.target == target, leases.c.holder == holder,
                        leases.c.expires_at > self._now()))
        with self.engine.connect() as conn:
            fence = conn.execute(query).scalar()
        return None if fence is None else int(fence)

    def record_approval(self, approval: Approval) -> None:
        values = approval.model_dump()
        with self._writer.begin() as conn:
            conn.execute(upsert(self._dialect, approvals, values, ("target", "plan_hash")))

    def claim_approval(self, target: str, plan_hash: str, cycle: str) -> Approval | None:
        mine = (approvals.c.target == target) & (approvals.c.plan_hash == plan_hash)
        free = (approvals.c.used_by.is_(None)) | (approvals.c.used_by == cycle)
        with self._writer.begin() as conn:
            conn.execute(sa.update(approvals).where(mine & free).values(used_by=cycle))
            row = conn.execute(sa.select(approvals).where(
                mine & (approvals.c.used_by == cycle))).first()
        return None if row is None else Approval(**dict(row._mapping))

    def release_lease(self, target: str, holder: str) -> None:
        with self._writer.begin() as conn:
            mine = (leases.c.target == target) & (leases.c.holder == holder)
            conn.execute(sa.delete(leases).where(mine))

    def lease_holder(self, target: str) -> tuple[str, datetime] | None:
        """The current unexpired lease as (holder, expires_at), for status displays."""
        query = sa.select(leases.c.holder, leases.c.expires_at).where(
            leases.c.target == target, leases.c.expires_at > self._now())
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else (row.holder, row.expires_at)
