"""The state store's tables (SQLAlchemy Core): cycles, audit, breakers, leases, listings,
creates in flight."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import Dialect, Table

__all__ = ["UtcDateTime", "approvals", "audit", "breakers", "cycles", "fences", "leases",
           "listings", "metadata", "pending_creates"]


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in and out; SQLite stores naive UTC text (sortable), PG timestamptz."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # Naive values are taken as UTC: models accept them and refusing would lose a record.
        utc = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        return utc if dialect.name == "postgresql" else utc.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()

cycles = Table(
    "reconciler_cycles", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("target", sa.String(255), nullable=False),
    sa.Column("correlation_id", sa.String(255), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("converged", sa.Boolean, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime, nullable=False),
    sa.Column("desired_version", sa.String(255), nullable=False),
    sa.Column("initial_drift_magnitude", sa.Float, nullable=False),
    sa.Column("final_drift_magnitude", sa.Float, nullable=False),
    sa.Column("urgency", sa.String(16), nullable=False),
    *(sa.Column(name, sa.Integer, nullable=False) for name in (
        "actions_succeeded", "actions_failed", "actions_skipped", "iterations")),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("outcome_json", sa.Text, nullable=False),
    sa.UniqueConstraint("target", "correlation_id", name="reconciler_cycles_target_cid"),
    sa.Index("reconciler_cycles_target_started", "target", "started_at"),
)

audit = Table(
    "reconciler_audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("target", sa.String(255), nullable=False),
    sa.Column("correlation_id", sa.String(255), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("action_id", sa.String(255)),
    # NULL for operator rows: NULLs never collide, so those are never deduplicated.
    sa.Column("dedup_key", sa.String(64), unique=True),
    sa.Column("resource_kind", sa.String(255)),
    sa.Column("action_type", sa.String(16)),
    sa.Column("state", sa.String(16)),
    sa.Column("is_rollback", sa.Boolean),
    sa.Column("duration_s", sa.Float),
    sa.Column("payload_json", sa.Text, nullable=False),
    sa.Index("reconciler_audit_target_at", "target", "at"),
    sa.Index("reconciler_audit_at", "at"),
    sa.Index("reconciler_audit_estimates",
             "target", "kind", "state", "resource_kind", "action_type"),
)

breakers = Table(
    "reconciler_breaker", metadata,
    sa.Column("target", sa.String(255), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("consecutive_failures", sa.Integer, nullable=False),
    sa.Column("opened_at", UtcDateTime),
    sa.Column("reason", sa.Text),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

leases = Table(
    "reconciler_leases", metadata,
    sa.Column("target", sa.String(255), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
)

# A target's fencing token: +1 each time its lease changes holder (kept when the lease row is
# released), so a holder that lost its lease can tell, and is refused by the actuation guard.
fences = Table(
    "reconciler_lease_fences", metadata,
    sa.Column("target", sa.String(255), primary_key=True),
    sa.Column("fence", sa.Integer, nullable=False),
)

approvals = Table(
    "reconciler_approvals", metadata,
    sa.Column("target", sa.String(255), primary_key=True),
    sa.Column("plan_hash", sa.String(64), primary_key=True),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("surface", sa.String(32), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("used_by", sa.String(255)),  # the cycle that spent it
)


listings = Table(
    "reconciler_listing_counts", metadata,
    sa.Column("target", sa.String(255), primary_key=True),
    sa.Column("kind", sa.String(255), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("cycle", sa.String(255), nullable=False),
    sa.Column("prev_count", sa.Integer),
    sa.Column("prev_cycle", sa.String(255)),
)


pending_creates = Table(
    "reconciler_pending_creates", metadata,
    sa.Column("target", sa.String(255), primary_key=True),
    sa.Column("kind", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("base_token", sa.String(64), nullable=False),
    sa.Column("correlation_id", sa.String(255), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
)


cycle_states = Table(
    "reconciler_cycle_states", metadata,
    sa.Column("target", sa.String(255), primary_key=True),
    sa.Column("correlation_id", sa.String(255), primary_key=True),
    sa.Column("state_json", sa.Text, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)
