"""Rows of the store's tables: values to rows and back, dedup keys, dialect-specific inserts."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from reconciler.core.breaker import BreakerState
from reconciler.core.model import (
    ActionResult,
    Outcome,
    PendingCreate,
    ResourceKey,
    canonical_json,
)
from reconciler.core.sense import ListingCount
from reconciler.store.schema import (
    audit,
    cycles,
)

__all__ = ["AuditKind", "action_row", "audit_dict", "audit_row", "breaker_from_row", "cycle_values",
           "insert_ignore", "listing_count_of", "pending_of", "row_key", "upsert"]

AuditKind = Literal["plan", "action", "event", "operator"]


def row_key(*parts: Any) -> str:
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()


def insert_ignore(dialect: str, table: Table, keys: Sequence[str]) -> Any:
    """INSERT .. ON CONFLICT (keys) DO NOTHING; values are bound at execute time."""
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    return stmt.on_conflict_do_nothing(index_elements=list(keys))


def upsert(dialect: str, table: Table, values: Mapping[str, Any], keys: Sequence[str]) -> Any:
    """INSERT .. ON CONFLICT (keys) DO UPDATE, a form both supported dialects share."""
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).values(values)
    changes = {k: stmt.excluded[k] for k in values if k not in keys}
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=changes)


def cycle_values(outcome: Outcome) -> dict[str, Any]:
    same_name = {c.name for c in cycles.columns} & set(Outcome.model_fields)
    return {
        **{name: getattr(outcome, name) for name in same_name},
        "initial_drift_magnitude": outcome.initial_drift.magnitude,
        "final_drift_magnitude": outcome.final_drift.magnitude,
        # The urgency that routed the cycle, i.e. the drift found before acting.
        "urgency": outcome.initial_drift.urgency,
        "outcome_json": outcome.model_dump_json(),
    }


def audit_row(kind: AuditKind, target: str, correlation_id: str, actor: str, at: datetime,
               payload_json: str, **columns: Any) -> dict[str, Any]:
    """A full audit row; columns not given (dedup_key, action_id, ...) are NULL."""
    row = {c.name: None for c in audit.columns if c.name != "id"}
    return {**row, "kind": kind, "target": target, "correlation_id": correlation_id,
            "actor": actor, "at": at, "payload_json": payload_json, **columns}


def action_row(target: str, correlation_id: str, result: ActionResult,
                now: datetime) -> dict[str, Any]:
    dedup = row_key("action", target, correlation_id, result.action_id, result.attempts,
                 result.state, result.rollback)
    return audit_row(
        "action", target, correlation_id, "reconciler",
        result.finished_at or result.started_at or now, result.model_dump_json(),
        action_id=result.action_id, dedup_key=dedup, resource_kind=result.key.kind,
        action_type=result.type, state=result.state, is_rollback=result.rollback,
        duration_s=result.duration_s)


_AUDIT_FIELDS = ("id", "target", "correlation_id", "at", "kind", "actor", "action_id")


def audit_dict(row: sa.Row[Any]) -> dict[str, Any]:
    fields = {name: row._mapping[name] for name in _AUDIT_FIELDS}
    return {**fields, "payload": json.loads(row.payload_json)}


def listing_count_of(row: sa.Row[Any]) -> ListingCount:
    return ListingCount(row.count, row.cycle, row.prev_count, row.prev_cycle)


def pending_of(row: sa.Row[Any]) -> PendingCreate:
    return PendingCreate(key=ResourceKey(kind=row.kind, name=row.name), token=row.token,
                         base_token=row.base_token, correlation_id=row.correlation_id,
                         started_at=row.started_at)


def breaker_from_row(row: sa.Row[Any]) -> BreakerState:
    return BreakerState(**{name: row._mapping[name] for name in BreakerState.model_fields})
