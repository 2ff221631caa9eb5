"""The simulated Provider: a fleet in a SQLite file, with injectable latency and faults."""

from __future__ import annotations

import math
import os
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field
from pydantic_core import from_json

from reconciler.core.errors import PermanentError, TemporaryError
from reconciler.core.fields import fields_of, merged
from reconciler.core.gcpause import gc_paused
from reconciler.core.model import (
    Action,
    Frozen,
    Observation,
    ObservedResource,
    OperationResult,
    ResourceKey,
    canonical_json,
)
from reconciler.providers import simfleet
from reconciler.providers.simfleet import SIM_KINDS, DesiredLike, FleetTable, generate_fleet

__all__ = [
    "SIM_KINDS",
    "PAGE_ATTEMPTS",
    "Faults",
    "SimOptions",
    "SimStats",
    "SimulatedProvider",
    "FleetRef",
    "seed_demo",
    "inject_drift",
    "generate_fleet",
]

PAGE_ATTEMPTS = 3  # a throttled listing page is tried this many times in all, then lost
MAX_ERRORS = 20  # errors kept per observation; the rest are summed up in one line

_Rate = Field(default=0.0, ge=0.0, le=1.0)
_PageStatus = Literal["ok", "failed", "throttled", "timeout"]
_GET = "SELECT spec_json, managed, protected, created_token FROM resources WHERE kind=? AND name=?"
_INSERT = "INSERT INTO resources VALUES (?, ?, ?, 1, ?, ?, ?)"
_UPDATE = "UPDATE resources SET spec_json = ?, protected = ? WHERE kind = ? AND name = ?"
_ADOPT = "UPDATE resources SET managed = 1 WHERE kind = ? AND name = ?"
_DELETE = "DELETE FROM resources WHERE kind = ? AND name = ?"


class Faults(Frozen):
    """What goes wrong and how often: rates are per apply call or per listing page."""

    latency_s: float = Field(default=0.0, ge=0.0)
    failure_rate: float = _Rate
    permanent_failure_rate: float = _Rate
    throttle_rate: float = _Rate
    partial_rate: float = _Rate
    lose_response_rate: float = _Rate
    fail_kinds: frozenset[str] = frozenset()
    empty_kinds: frozenset[str] = frozenset()
    fail_actions: frozenset[str] = frozenset()


class SimOptions(Frozen):
    """A target's ``provider.options`` for ``type: simulated``: where the fleet lives, and
    the weather (faults) and paging of its listings."""

    state: str | None = Field(default=None, min_length=1)  # the fleet's SQLite file
    faults: Faults = Field(default_factory=Faults)
    page_size: int = Field(default=500, ge=1, le=100_000)
    busy_timeout_s: float = Field(default=30.0, gt=0.0, le=3600.0)


@dataclass
class SimStats:
    """Calls one provider instance served; ``mutations`` counts actual writes."""

    observe_calls: int = 0
    apply_calls: int = 0
    mutations: int = 0
    throttled: int = 0
    injected_failures: int = 0
    lost_responses: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


@dataclass
class _Listing:
    """One paged listing while it runs."""

    kind: str
    resources: list[ObservedResource] = field(default_factory=list)
    pages: int = 0
    ok_pages: int = 0
    elapsed_s: float = 0.0
    throttled: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    dropped_errors: int = 0

    def error(self, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)
        else:
            self.dropped_errors += 1

    def observation(self, total_pages: int) -> Observation:
        errors = list(self.errors)
        if self.dropped_errors:
            errors.append(f"... and {self.dropped_errors} more page errors")
        return Observation(
            kind=self.kind,
            resources=tuple(self.resources),
            completeness=self.ok_pages / total_pages,
            errors=tuple(errors),
            throttled=self.throttled,
            retries=self.retries,
            page_latency_s=self.elapsed_s / self.pages if self.pages else 0.0,
        )


def _spec(action: Action) -> dict[str, Any]:
    spec = action.params.get("spec")
    if not isinstance(spec, dict):
        raise PermanentError(f"{action.type} {action.target}: params['spec'] must be a mapping")
    return spec


def _upsert(db: sqlite3.Connection, action: Action, spec: dict[str, Any]) -> OperationResult:
    key, token = action.target, action.idempotency_token
    row = db.execute(_GET, (key.kind, key.name)).fetchone()
    if row is None:
        protected = int(bool(action.params.get("protected", False)))
        pid = simfleet.provider_id(key.kind, key.name, token)
        db.execute(_INSERT, (key.kind, key.name, canonical_json(spec), protected, pid, token))
        return "created"
    current, managed, protected, created_token = row
    adopting = action.type == "update" and action.params.get("adopt") is True
    if not managed and not adopting:  # only an update that asks to adopt it (policy.adopt)
        raise PermanentError(f"{action.type} {key}: not owned by this target")
    if not managed:
        db.execute(_ADOPT, (key.kind, key.name))
    want_protected = int(bool(action.params.get("protected", protected)))
    # a create replayed with its token is the same create: the cloud returns what it made
    if action.type == "create" and created_token == token:
        return "unchanged"
    # an update merges only the fields its plan names; the others stay as the fleet has them
    spec_json = canonical_json(merged(from_json(current), spec, fields_of(action)))
    if current == spec_json and protected == want_protected:
        return "unchanged" if managed else "updated"
    db.execute(_UPDATE, (spec_json, want_protected, key.kind, key.name))
    return "updated"


def _delete(db: sqlite3.Connection, key: ResourceKey) -> OperationResult:
    row = db.execute(_GET, (key.kind, key.name)).fetchone()
    if row is None:
        return "unchanged"
    if not row[1]:
        raise PermanentError(f"delete {key}: not owned by this target")
    if row[2]:
        raise PermanentError(f"delete {key}: resource is protected")
    db.execute(_DELETE, (key.kind, key.name))
    return "deleted"


class SimulatedProvider:
    """A fleet of ``sim.Node`` / ``sim.Workload`` in one SQLite file, shared across processes.

    Faults draw from ``rng`` in call order, so a seeded run replays exactly. Latency goes
    through ``clock_sleep``, and the observe timeout counts injected latency, not wall time.
    ``faults`` may be swapped between calls (a chaos run turning the weather on and off).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        faults: Faults = Faults(),
        clock_sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        page_size: int = 500,
        busy_timeout_s: float = 30.0,
    ) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        self.faults = faults
        self.stats = SimStats()
        self.table = FleetTable(os.fspath(path), busy_timeout_s)
        self._sleep = clock_sleep
        self._rng = rng if rng is not None else random.Random(0)
        self._page_size = page_size
        self._lock = threading.Lock()  # guards stats and the order of rng draws

    @property
    def path(self) -> str:
        return self.table.path

    def kinds(self) -> frozenset[str]:
        return SIM_KINDS

    def observe(self, kind: str, timeout_s: float) -> Observation:
        with self._lock:
            self.stats.observe_calls += 1
        if kind not in SIM_KINDS:
            error = f"kind {kind!r} is not served by the simulated provider"
            return Observation(kind=kind, resources=(), completeness=0.0, errors=(error,))
        if kind in self.faults.fail_kinds:
            self._pause()
            error = f"listing {kind} failed: simulated outage"
            return Observation(kind=kind, resources=(), completeness=0.0, errors=(error,))
        if kind in self.faults.empty_kinds:
            self._pause()  # "200 OK" with nothing in it: the caller cannot tell
            return Observation(kind=kind, resources=(), completeness=1.0)
        return self._list(kind, timeout_s)

    def apply(self, action: Action) -> OperationResult:
        with self._lock:
            self.stats.apply_calls += 1
            throttle, failure, permanent, lose = (self._rng.random() for _ in range(4))
        self._pause()
        self._inject_faults(action, throttle, failure, permanent)
        try:
            outcome = self._apply_now(action)
        except sqlite3.OperationalError as exc:
            raise TemporaryError(f"{action.type} {action.target}: store busy: {exc}", 0.1) from exc
        lost = lose < self.faults.lose_response_rate
        with self._lock:
            self.stats.outcomes[outcome] += 1
            self.stats.mutations += outcome != "unchanged"
            self.stats.lost_responses += lost
        if lost:
            raise TemporaryError(f"{action.type} {action.target}: response lost", delay=0.0)
        return outcome

    # -- raw helpers: behind the API's back, no faults, not counted in stats --------------

    def put(
        self,
        kind: str,
        name: str,
        spec: Mapping[str, Any],
        managed: bool = True,
        protected: bool = False,
    ) -> None:
        self.table.put_many([(kind, name, spec)], managed=managed, protected=protected)

    def put_many(
        self, items: Iterable[tuple[str, str, Mapping[str, Any]]], *, managed: bool = True
    ) -> int:
        return self.table.put_many(items, managed=managed)

    def delete(self, kind: str, name: str) -> bool:
        return self.table.delete(kind, name)

    def read(self, action: Action) -> ObservedResource | None:
        """The resource as it is now (the actuation guard's fresh read)."""
        return self.get(action.target.kind, action.target.name)

    def get(self, kind: str, name: str) -> ObservedResource | None:
        found = self.table.select(kind, name)
        return found[0] if found else None

    def resources(self, kind: str | None = None) -> list[ObservedResource]:
        return self.table.select(kind)

    def count(self, kind: str | None = None) -> int:
        return self.table.count(kind)

    def close(self) -> None:
        self.table.close()

    def __enter__(self) -> SimulatedProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------

    def _pause(self) -> None:
        if self.faults.latency_s > 0:
            self._sleep(self.faults.latency_s)

    def _inject_faults(
        self, action: Action, throttle: float, failure: float, permanent: float
    ) -> None:
        faults, key = self.faults, str(action.target)
        if key in faults.fail_actions or permanent < faults.permanent_failure_rate:
            self._count("injected_failures")
            raise PermanentError(f"{action.type} {key}: simulated permanent failure")
        if throttle < faults.throttle_rate:
            self._count("throttled")
            raise TemporaryError(f"{action.type} {key}: throttled", delay=1.0)
        if failure < faults.failure_rate:
            self._count("injected_failures")
            raise TemporaryError(f"{action.type} {key}: simulated transient failure")

    def _count(self, counter: str) -> None:
        with self._lock:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)

    def _apply_now(self, action: Action) -> OperationResult:
        if action.target.kind not in SIM_KINDS:
            raise PermanentError(f"{action.target}: kind not served by the simulated provider")
        spec = None if action.type == "delete" else _spec(action)
        with self.table.write() as db:
            if spec is None:
                return _delete(db, action.target)
            return _upsert(db, action, spec)

    def _list(self, kind: str, timeout_s: float) -> Observation:
        counted_pages = max(1, math.ceil(self.table.count(kind) / self._page_size))
        listing, after, more = _Listing(kind), "", True  # names are non-empty: "" sorts first
        with gc_paused():
            # rows created while listing can add pages; still, never loop without a bound
            for _ in range(counted_pages + 16):
                status = self._page_status(listing, timeout_s)
                if status == "timeout":
                    listing.error(f"timed out after {listing.pages} pages")
                    break
                after, more = self._read_page(listing, status, after)
                if not more:
                    break
        return listing.observation(max(counted_pages, listing.pages + more))

    def _page_status(self, listing: _Listing, timeout_s: float) -> _PageStatus:
        faults = self.faults
        for attempt in range(PAGE_ATTEMPTS):
            if listing.elapsed_s + faults.latency_s > timeout_s:
                return "timeout"
            listing.elapsed_s += faults.latency_s
            self._pause()
            with self._lock:
                throttle, partial = self._rng.random(), self._rng.random()
            if throttle >= faults.throttle_rate:
                return "failed" if partial < faults.partial_rate else "ok"
            listing.throttled += 1
            listing.retries += attempt < PAGE_ATTEMPTS - 1  # tried again: the load it adds
            self._count("throttled")
        return "throttled"

    def _read_page(self, listing: _Listing, status: _PageStatus, after: str) -> tuple[str, bool]:
        """Read the page after ``after``; return where the next starts and whether there is one."""
        # a lost page is still read, only to learn where the next page starts
        rows = self.table.page(listing.kind, after, self._page_size + 1)
        more, rows = len(rows) > self._page_size, rows[: self._page_size]
        listing.pages += 1
        if status == "ok":
            listing.ok_pages += 1
            listing.resources.extend(simfleet.to_resource(listing.kind, r) for r in rows)
        elif status == "throttled":
            listing.error(f"page {listing.pages}: throttled {PAGE_ATTEMPTS} times, gave up")
        else:
            listing.error(f"page {listing.pages}: simulated listing error")
        return (rows[-1][0] if rows else after), more


FleetRef = SimulatedProvider | str | os.PathLike[str]


@contextmanager
def _table(fleet: FleetRef) -> Iterator[FleetTable]:
    if isinstance(fleet, SimulatedProvider):
        yield fleet.table
        return
    table = FleetTable(os.fspath(fleet))
    try:
        yield table
    finally:
        table.close()


def seed_demo(fleet: FleetRef, desired: DesiredLike) -> int:
    """Make the fleet exactly ``desired`` (all managed); returns how many resources it holds."""
    with _table(fleet) as table:
        return simfleet.seed(table, desired)


def inject_drift(fleet: FleetRef, rng: random.Random, fraction: float = 0.1) -> list[str]:
    """Drift ``fraction`` of the managed resources realistically, plus one unmanaged resource
    and one managed orphan; returns a line per change, for humans."""
    with _table(fleet) as table:
        return simfleet.inject(table, rng, fraction)
