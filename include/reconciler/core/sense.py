"""Snapshot capture: scope, timestamp, per-kind completeness and fidelity, bounded latency."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime

from reconciler.core.gcpause import without_gc
from reconciler.core.model import KindStatus, Observation, ObservedResource, Snapshot
from reconciler.core.ports import Clock, Observer

__all__ = ["SenseOptions", "sense"]


@dataclass(frozen=True)
class SenseOptions:
    """Bounds of one sense: the deadline, what counts as slow, and how old a fallback may be."""

    deadline_s: float = 60.0
    slow_fraction: float = 0.5
    max_stale_s: float = 600.0
    max_workers: int = 4


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
    incomplete, so no deletion can come from them.
    """
    started_at, start = clock.now(), clock.monotonic()
    observations = _observe_all(observer, kinds, options, clock, start)
    statuses: dict[str, KindStatus] = {}
    resources: list[ObservedResource] = []
    for kind in kinds:
        obs, latency = observations[kind]
        status, kind_resources = _judge_kind(obs, latency, options, previous, started_at)
        statuses[kind] = status
        resources.extend(kind_resources)
    return Snapshot.model_construct(
        target=target,
        correlation_id=correlation_id,
        captured_at=started_at,
        latency_s=round(clock.monotonic() - start, 6),
        resources=tuple(resources),
        kinds=statuses,
    )


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
    fidelity = "degraded" if (obs.throttled or slow or obs.completeness < 1.0) else "full"
    base = KindStatus(
        kind=obs.kind,
        count=len(obs.resources),
        completeness=obs.completeness,
        fidelity=fidelity,
        latency_s=round(latency, 6),
        errors=obs.errors,
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
