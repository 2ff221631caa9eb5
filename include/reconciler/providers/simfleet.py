"""The simulated fleet's data: its SQLite table, generated specs and realistic drift."""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from pydantic_core import from_json

from reconciler.core.model import ObservedResource, ResourceKey, canonical_json, content_hash
from reconciler.sqlite_wal import enable_wal

__all__ = [
    "SIM_KINDS",
    "Row",
    "FleetTable",
    "DesiredLike",
    "provider_id",
    "to_resource",
    "node_spec",
    "workload_spec",
    "generate_fleet",
    "seed",
    "inject",
]

SIM_KINDS: frozenset[str] = frozenset({"sim.Node", "sim.Workload"})
Row = tuple[str, str, int, int, str]  # name, spec_json, managed, protected, provider_id
_DbRow = tuple[str, str, str, int, int, str, str | None]

_SCHEMA = """CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL, name TEXT NOT NULL, spec_json TEXT NOT NULL,
    managed INTEGER NOT NULL DEFAULT 1, protected INTEGER NOT NULL DEFAULT 0,
    provider_id TEXT NOT NULL, created_token TEXT,
    PRIMARY KEY (kind, name)) WITHOUT ROWID"""
_COLUMNS = "name, spec_json, managed, protected, provider_id"
_PAGE = f"SELECT {_COLUMNS} FROM resources WHERE kind = ? AND name > ? ORDER BY name LIMIT ?"
_UPSERT = "INSERT OR REPLACE INTO resources VALUES (?, ?, ?, ?, ?, ?, ?)"

_POOLS = ("default", "general", "compute", "memory")
_ZONES = ("zone-a", "zone-b", "zone-c")
_TYPES = ("m5.large", "m5.xlarge", "c5.2xlarge", "r5.large")
_IMAGES = ("nginx:1.25", "redis:7.2", "python:3.11-slim", "postgres:16", "envoyproxy/envoy:v1.29")
_TEAMS = ("payments", "search", "platform", "data")


class _KeyLike(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...


class _DesiredResourceLike(Protocol):
    @property
    def key(self) -> _KeyLike: ...
    @property
    def spec(self) -> Mapping[str, Any]: ...
    @property
    def protected(self) -> bool: ...


class DesiredLike(Protocol):
    """Anything with ``.resources`` shaped like ``DesiredState``'s (no loader import needed)."""

    @property
    def resources(self) -> Sequence[_DesiredResourceLike]: ...


def provider_id(kind: str, name: str, token: str | None) -> str:
    return f"sim-{content_hash([kind, name, token], 12)}"


def to_resource(kind: str, row: Row) -> ObservedResource:
    # Validated construction beats model_construct here: pydantic-core is native code.
    name, spec_json, managed, protected, pid = row
    return ObservedResource(
        key=ResourceKey(kind=kind, name=name),
        spec=from_json(spec_json),
        managed=bool(managed),
        protected=bool(protected),
        provider_id=pid,
    )


def _db_row(
    kind: str, name: str, spec: Mapping[str, Any], managed: bool, protected: bool
) -> _DbRow:
    if kind not in SIM_KINDS:
        raise ValueError(f"{kind}/{name}: kind not served by the simulated provider")
    pid = provider_id(kind, name, None)
    return (kind, name, canonical_json(dict(spec)), int(managed), int(protected), pid, None)


def _connect(path: str, busy_timeout_s: float) -> sqlite3.Connection:
    db = sqlite3.connect(
        path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    if path != ":memory:":
        enable_wal(db)  # several workers may open a new fleet file at once
        db.execute("PRAGMA synchronous = NORMAL")
    db.execute(_SCHEMA)
    return db


class FleetTable:
    """One fleet's rows in SQLite (WAL, busy timeout): shared safely by threads and processes."""

    def __init__(self, path: str, busy_timeout_s: float = 30.0) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._db = _connect(path, busy_timeout_s)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One short transaction; IMMEDIATE takes the write lock before the first read, so a
        read-compare-write inside it is atomic even against other processes."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def page(self, kind: str, after: str, limit: int) -> list[Row]:
        with self._lock:
            rows: list[Row] = self._db.execute(_PAGE, (kind, after, limit)).fetchall()
        return rows

    def count(self, kind: str | None = None) -> int:
        where, args = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        with self._lock:
            row = self._db.execute(f"SELECT COUNT(*) FROM resources {where}", args).fetchone()
        return int(row[0])

    def select(self, kind: str | None = None, name: str | None = None) -> list[ObservedResource]:
        """Stored resources ordered by kind then name, optionally of one kind / one name."""
        filters = [(c, v) for c, v in (("kind", kind), ("name", name)) if v is not None]
        where = " AND ".join(f"{c} = ?" for c, _ in filters)
        sql = f"SELECT kind, {_COLUMNS} FROM resources {'WHERE ' + where if where else ''}"
        with self._lock:
            rows = self._db.execute(f"{sql} ORDER BY kind, name", [v for _, v in filters])
            return [to_resource(r[0], r[1:]) for r in rows.fetchall()]

    def put_many(
        self,
        items: Iterable[tuple[str, str, Mapping[str, Any]]],
        *,
        managed: bool = True,
        protected: bool = False,
    ) -> int:
        rows = [_db_row(kind, name, spec, managed, protected) for kind, name, spec in items]
        with self.write() as db:
            db.executemany(_UPSERT, rows)
        return len(rows)

    def replace_all(self, items: Iterable[tuple[str, str, Mapping[str, Any], bool]]) -> int:
        """Make the table hold exactly ``(kind, name, spec, protected)`` items, all managed."""
        rows = [_db_row(kind, name, spec, True, protected) for kind, name, spec, protected in items]
        with self.write() as db:
            db.execute("DELETE FROM resources")
            db.executemany(_UPSERT, rows)
        return len(rows)

    def set_spec(self, kind: str, name: str, spec: Mapping[str, Any]) -> None:
        with self.write() as db:
            db.execute(
                "UPDATE resources SET spec_json = ? WHERE kind = ? AND name = ?",
                (canonical_json(dict(spec)), kind, name),
            )

    def delete(self, kind: str, name: str) -> bool:
        with self.write() as db:
            cursor = db.execute("DELETE FROM resources WHERE kind = ? AND name = ?", (kind, name))
        return cursor.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


# -- generated fleets --------------------------------------------------------------------


def node_spec(rng: random.Random) -> dict[str, Any]:
    return {
        "pool": rng.choice(_POOLS),
        "instance_type": rng.choice(_TYPES),
        "zone": rng.choice(_ZONES),
        "state": "running",
        "labels": {"team": rng.choice(_TEAMS)},
    }


def workload_spec(rng: random.Random) -> dict[str, Any]:
    containers = [
        {
            "name": f"c{i}",
            "image": rng.choice(_IMAGES),
            "cpu": rng.choice((100, 250, 500)),
            "memory": rng.choice((128, 256, 512)),
        }
        for i in range(rng.randint(1, 2))
    ]
    return {
        "replicas": rng.randint(1, 6),
        "containers": containers,
        "node_pool": rng.choice(_POOLS),
        "labels": {"team": rng.choice(_TEAMS), "tier": rng.choice(("web", "batch", "db"))},
    }


def generate_fleet(n: int, rng: random.Random) -> list[tuple[str, str, dict[str, Any]]]:
    """``n`` valid resources, one node for every four workloads, names sorting in order."""
    nodes = n // 5
    width = max(6, len(str(n)))
    fleet = [("sim.Node", f"node-{i:0{width}d}", node_spec(rng)) for i in range(nodes)]
    fleet += [("sim.Workload", f"wl-{i:0{width}d}", workload_spec(rng)) for i in range(n - nodes)]
    return fleet


def seed(table: FleetTable, desired: DesiredLike) -> int:
    """Make the fleet exactly the desired state, every resource managed."""
    items = [(r.key.kind, r.key.name, r.spec, r.protected) for r in desired.resources]
    return table.replace_all(items)


# -- realistic drift ---------------------------------------------------------------------

_Change = tuple[str, dict[str, Any] | None]  # what happened, the new spec (None: deleted)


def _deleted(spec: Mapping[str, Any], rng: random.Random) -> _Change | None:
    return "deleted out of band", None


def _relabelled(spec: Mapping[str, Any], rng: random.Random) -> _Change | None:
    labels = dict(spec.get("labels") or {})
    label = rng.choice(sorted(labels)) if labels else "owner"
    before = labels.get(label)
    labels[label] = f"{before}-edited" if before else "edited-by-hand"
    return f"label {label} changed {before!r} -> {labels[label]!r}", {**spec, "labels": labels}


def _stopped(spec: Mapping[str, Any], rng: random.Random) -> _Change | None:
    if spec.get("state", "running") != "running":
        return None
    return "stopped (state running -> stopped)", {**spec, "state": "stopped"}


def _scaled_down(spec: Mapping[str, Any], rng: random.Random) -> _Change | None:
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or replicas < 1:
        return None
    after = replicas // 2
    return f"scaled down {replicas} -> {after} replicas", {**spec, "replicas": after}


def _reimaged(spec: Mapping[str, Any], rng: random.Random) -> _Change | None:
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers or not isinstance(containers[0], dict):
        return None
    first = containers[0]
    if not isinstance(first.get("image"), str):
        return None
    image = f"{first['image']}-hotfix"
    what = f"container {first.get('name')} image {first['image']} -> {image}"
    return what, {**spec, "containers": [{**first, "image": image}, *containers[1:]]}


_Drift = Callable[[Mapping[str, Any], random.Random], _Change | None]
_DRIFTS: dict[str, tuple[_Drift, ...]] = {
    "sim.Node": (_deleted, _relabelled, _stopped),
    "sim.Workload": (_scaled_down, _reimaged, _relabelled),
}


def _drift_one(table: FleetTable, resource: ObservedResource, rng: random.Random) -> str:
    drifts = _DRIFTS.get(resource.key.kind, (_relabelled,))
    if resource.protected:  # protection forbids deletion, out of band too
        drifts = tuple(d for d in drifts if d is not _deleted)
    changes = [c for c in (d(resource.spec, rng) for d in drifts) if c is not None]
    what, spec = rng.choice(changes)
    if spec is None:
        table.delete(resource.key.kind, resource.key.name)
    else:
        table.set_spec(resource.key.kind, resource.key.name, spec)
    return f"{resource.key}: {what}"


def _add_stray(table: FleetTable, rng: random.Random, *, managed: bool) -> str:
    prefix = "orphan" if managed else "by-hand"
    for _ in range(64):  # names are random; a clash only means "draw again"
        name = f"{prefix}-{rng.randrange(16**6):06x}"
        if not table.select("sim.Workload", name):
            break
    table.put_many([("sim.Workload", name, workload_spec(rng))], managed=managed)
    if managed:
        return f"sim.Workload/{name}: added a managed orphan (not desired: should be deleted)"
    return f"sim.Workload/{name}: added an unmanaged resource (not ours: must be left alone)"


def inject(table: FleetTable, rng: random.Random, fraction: float = 0.1) -> list[str]:
    """Drift ``fraction`` of managed resources, add one unmanaged and one orphan; say what."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within [0, 1], got {fraction}")
    managed = [r for r in table.select() if r.managed]
    count = min(len(managed), max(1, round(fraction * len(managed)))) if fraction else 0
    notes = [_drift_one(table, r, rng) for r in rng.sample(managed, count)]
    notes.append(_add_stray(table, rng, managed=False))
    notes.append(_add_stray(table, rng, managed=True))
    return notes
