"""Snapshot capture: scope, timestamp, per-kind completeness and fidelity, bounded latency."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime

from reconciler.core.fidelity import strain
from reconciler.core.gcpause import without_gc
from reconciler.core.inflight import in_flight
from reconciler.core.model import (
    KindStatus,
    Observation,
    ObservedResource,
    PendingCreate,
    ResourceKey,
    Snapshot,
)
from reconciler.core.policy import FidelityPolicy
from reconciler.core.ports import Clock, Observer

__all__ = ["ListingCount", "SenseOptions", "remembered_counts", "sense"]


@dataclass(frozen=True)
class SenseOptions:
    """Bounds of one sense: the deadline, what counts as slow, how old a fallback may be, and
    what the previous cycle listed (to doubt a sudden empty listing)."""

    deadline_s: float = 60.0
    slow_fraction: float = 0.5
    max_stale_s: float = 600.0
    max_workers: int = 4
    last_counts: Mapping[str, int] = field(default_factory=dict)
    doubt_empty_from: int = 3
    pending: Mapping[ResourceKey, PendingCreate] = field(default_factory=dict)  # creates in flight
    pending_ttl_s: float = 600.0
    fidelity: FidelityPolicy = field(default_factory=FidelityPolicy)  # what counts as under load


@without_gc
def sense(
    observer: Observer,
    kinds: Sequence[str],
    *,
    target: str,
    correlation_id: str,
    clock: Clock,
    options: SenseOptions = SenseOptions(),
    previous: Snapshot | None = None,
) -> Snapshot:
    """Observe every kind in parallel within one deadline; never wait past it.

    A kind that errors or misses the deadline is incomplete (with the error recorded). If the
    previous snapshot saw it fully and recently, its resources stand in, marked ``stale`` — still
    incomplete, so no deletion can come from them. Creates in flight (``options.pending``) that
    the listing does not show yet are named in ``Snapshot.in_flight``.
    """
    started_at, start = clock.now(), clock.monotonic()
    observations = _observe_all(observer, kinds, options, clock, start)
    statuses: dict[str, KindStatus] = {}
    resources: list[ObservedResource] = []
    for kind in kinds:
        obs, latency = observations[kind]
        doubted = _doubted(obs, options)
        if doubted:
            obs = _failed(kind, f"listed empty although the last cycle listed "
                                f"{options.last_counts[kind]}: doubted until the next cycle's "
                                "listing agrees")
        status, kind_resources = _judge_kind(obs, latency, options, previous, started_at)
        if doubted:
            status = status.model_copy(update={"doubted_empty": True})
        statuses[kind] = status
        resources.extend(kind_resources)
    snapshot = Snapshot.model_construct(
        target=target,
        correlation_id=correlation_id,
        captured_at=started_at,
        latency_s=round(clock.monotonic() - start, 6),
        resources=tuple(resources),
        kinds=statuses,
        in_flight=(),
    )
    if not options.pending:
        return snapshot
    return snapshot.model_copy(
        update={"in_flight": in_flight(options.pending, snapshot, options.pending_ttl_s)})


def _observe_all(
    observer: Observer, kinds: Sequence[str], options: SenseOptions, clock: Clock, start: float
) -> dict[str, tuple[Observation, float]]:
    pool = ThreadPoolExecutor(max_workers=max(1, min(options.max_workers, len(kinds))))
    futures: dict[str, Future[tuple[Observation, float]]] = {
        kind: pool.submit(_observe_one, observer, kind, options.deadline_s, clock) for kind in kinds
    }
    wait(futures.values(), timeout=options.deadline_s)
    pool.shutdown(wait=False, cancel_futures=True)  # a hung provider call must not hold us
    out: dict[str, tuple[Observation, float]] = {}
    for kind, future in futures.items():
        if future.done() and not future.cancelled():
            out[kind] = future.result()
        else:
            waited = clock.monotonic() - start
            out[kind] = (_failed(kind, f"no answer within {options.deadline_s:g}s"), waited)
    return out


def _observe_one(
    observer: Observer, kind: str, timeout_s: float, clock: Clock
) -> tuple[Observation, float]:
    t0 = clock.monotonic()
    try:
        obs = observer.observe(kind, timeout_s)
    except Exception as exc:  # any failure of one kind only makes that kind incomplete
        obs = _failed(kind, f"{type(exc).__name__}: {exc}")
    return obs, clock.monotonic() - t0


def _doubted(obs: Observation, options: SenseOptions) -> bool:
    """An API that answers "200 OK, nothing here" for a kind that had many resources is more
    likely broken than the fleet gone: believing it would re-create them all. The kind counts
    as unobserved for this cycle (no create, update or delete); a second empty cycle is real."""
    listed_before = options.last_counts.get(obs.kind, 0)
    return (options.doubt_empty_from > 0 and listed_before >= options.doubt_empty_from
            and obs.completeness >= 1.0 and not obs.resources)


def remembered_counts(snapshot: Snapshot) -> dict[str, int]:
    """What the next cycle should compare an empty listing with: every kind listed in full,
    and a doubted kind as empty (so two empty cycles in a row are believed). A kind whose
    listing failed keeps what was remembered before."""
    return {kind: 0 if status.doubted_empty else status.count
            for kind, status in snapshot.kinds.items() if status.complete or status.doubted_empty}


@dataclass(frozen=True)
class ListingCount:
    """One kind's remembered listing size, in two slots: the latest cycle's and the one before,
    so a cycle that senses again (re-pokes, verify) never compares a listing with its own."""

    count: int
    cycle: str
    prev_count: int | None = None
    prev_cycle: str | None = None

    def saved(self, cycle: str, count: int) -> ListingCount:
        if cycle == self.cycle:
            return replace(self, count=count)
        return ListingCount(count, cycle, self.count, self.cycle)

    def seen_by(self, cycle: str) -> int | None:
        return self.prev_count if cycle == self.cycle else self.count


def _failed(kind: str, error: str) -> Observation:
    return Observation(kind=kind, resources=(), completeness=0.0, errors=(error,))


def _judge_kind(
    obs: Observation,
    latency: float,
    options: SenseOptions,
    previous: Snapshot | None,
    now: datetime,
) -> tuple[KindStatus, tuple[ObservedResource, ...]]:
    slow = latency > options.slow_fraction * options.deadline_s
    loaded = bool(strain(obs, options.fidelity))
    fidelity = "degraded" if (loaded or slow or obs.completeness < 1.0) else "full"
    base = KindStatus(
        kind=obs.kind,
        count=len(obs.resources),
        completeness=obs.completeness,
        fidelity=fidelity,
        latency_s=round(latency, 6),
        errors=obs.errors,
        throttled=obs.throttled,
        retries=obs.retries,
        page_latency_s=round(obs.page_latency_s, 6),
    )
    if obs.completeness >= 1.0 or previous is None:
        return base, obs.resources
    fallback = _fallback(obs.kind, previous, options, now)
    if fallback is None:
        return base, obs.resources
    age, old = fallback
    stale = base.model_copy(update={"fidelity": "stale", "stale_age_s": age, "count": len(old)})
    return stale, old


def _fallback(
    kind: str, previous: Snapshot, options: SenseOptions, now: datetime
) -> tuple[float, tuple[ObservedResource, ...]] | None:
    status = previous.kinds.get(kind)
    if status is None or status.completeness < 1.0 or status.fidelity == "stale":
        return None
    age = (now - previous.captured_at).total_seconds()
    if age > options.max_stale_s:
        return None
    return round(age, 3), tuple(r for r in previous.resources if r.key.kind == kind)
