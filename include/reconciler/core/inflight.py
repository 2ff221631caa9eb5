"""Creates in flight: one client token per create *attempt*, remembered until the fleet lists it.

AWS keeps a ``RunInstances`` client token for at least 24 hours after the instance it made was
terminated, answering a repeat with that instance and launching nothing; and a just-launched
instance can be missing from listings for seconds (EC2 API reference: "Ensuring idempotency",
"Eventual consistency"). So a token derived from the resource alone would never re-create an
instance terminated by hand, and trusting a lagging listing would create a second one.

The rule (Crossplane's external-create-pending): before a create is sent, a pending record with
a fresh token is written to the store; every retry of that attempt (lost response, throttling,
an orchestrator's task retry, a re-run of the plan) reuses the record's token. The record ends
when a listing shows the resource, when the resource is deleted, when the provider rejects the
create for good, or after ``ttl`` with the resource never seen. While it lives, the resource is
*in flight*: not missing (no second create) and not converged (verify waits for it).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime

from reconciler.core.errors import TemporaryError
from reconciler.core.model import Action, PendingCreate, ResourceKey, Snapshot, content_hash
from reconciler.core.ports import CreateLedger

__all__ = ["claim_create", "in_flight", "settled_creates", "in_flight_note"]


def _fresh_token(action: Action, correlation_id: str, now: datetime, rng: random.Random) -> str:
    # uuid4 too: a token must never repeat across stores, even for worlds whose clocks, ids and
    # seeded rngs coincide (tests, a wiped state store): AWS would answer with the old instance
    return content_hash([action.idempotency_token, correlation_id, now.isoformat(),
                         rng.getrandbits(64), uuid.uuid4().hex], 32)


def claim_create(
    ledger: CreateLedger,
    target: str,
    action: Action,
    *,
    correlation_id: str,
    now: datetime,
    rng: random.Random,
) -> Action:
    """The create to send: this attempt's token (a pending record's, or a fresh one recorded now).

    A create of the same resource with another spec still in flight is waited for (a temporary
    error), never sent with a new token: the first one may exist and not be listed yet.
    """
    fresh = PendingCreate(key=action.target, token=_fresh_token(action, correlation_id, now, rng),
                          base_token=action.idempotency_token, correlation_id=correlation_id,
                          started_at=now)
    holder = ledger.begin_create(target, fresh)
    if holder.base_token != action.idempotency_token:
        raise TemporaryError(
            f"create {action.target}: an earlier create with another spec is in flight since "
            f"{holder.started_at:%F %T} UTC; waiting until the fleet lists it", delay=5.0)
    return action.model_copy(update={"idempotency_token": holder.token})


def in_flight(
    pending: Mapping[ResourceKey, PendingCreate],
    snapshot: Snapshot,
    ttl_s: float,
) -> tuple[ResourceKey, ...]:
    """Pending creates of the snapshot's kinds that it does not list yet (and not expired)."""
    listed = {r.key for r in snapshot.resources}
    return tuple(sorted(
        (k for k, p in pending.items()
         if k.kind in snapshot.kinds and k not in listed
         and _age(p, snapshot.captured_at) < ttl_s),
        key=str))


def settled_creates(
    pending: Mapping[ResourceKey, PendingCreate],
    snapshot: Snapshot,
    ttl_s: float,
) -> list[ResourceKey]:
    """Pending records to end: the resource is listed by a fresh (non-stale) listing, or the
    record outlived ``ttl_s`` without the resource ever being seen (that attempt made nothing
    the fleet shows; the next create is a new attempt with a new token)."""
    fresh_kinds = {k for k, s in snapshot.kinds.items() if s.fidelity != "stale"}
    listed = {r.key for r in snapshot.resources if r.key.kind in fresh_kinds}
    return sorted((k for k, p in pending.items()
                   if k in listed or _age(p, snapshot.captured_at) >= ttl_s), key=str)


def in_flight_note(keys: Iterable[ResourceKey]) -> str:
    names = [str(k) for k in keys]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"{len(names)} created resource(s) not listed by the provider yet: {shown}"


def _age(pending: PendingCreate, now: datetime) -> float:
    return (now - pending.started_at).total_seconds()
