"""A fleet as wanted and as seen: desired resources and state, observed resources, snapshots."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from reconciler.core.model.base import Fidelity, Frozen, ResourceKey, SlaTier

__all__ = [
    "DesiredResource", "DesiredState", "ObservedResource", "Observation", "KindStatus",
    "Snapshot",
]


class DesiredResource(Frozen):
    """One resource as the user declared it, with where it was declared."""

    key: ResourceKey
    spec: dict[str, Any]
    depends_on: tuple[ResourceKey, ...] = ()
    sla: SlaTier = "standard"
    protected: bool = False
    ignore_fields: tuple[str, ...] = ()
    tolerance: dict[str, float] = Field(default_factory=dict)
    source_file: str | None = None
    source_line: int | None = None


class DesiredState(Frozen):
    """The declared fleet of one target at one version."""

    resources: tuple[DesiredResource, ...]
    version: str
    source_uri: str
    loaded_at: datetime


class ObservedResource(Frozen):
    """One resource as the provider reported it."""

    key: ResourceKey
    spec: dict[str, Any]
    managed: bool = True
    protected: bool = False
    provider_id: str | None = None
    # unmanaged here but owned by this other target: not "unmanaged" in coverage (core.compare)
    foreign_owner: str | None = None


class Observation(Frozen):
    """What a provider returns for one kind: resources plus how much of the listing it got."""

    kind: str
    resources: tuple[ObservedResource, ...]
    completeness: float = Field(ge=0.0, le=1.0)
    errors: tuple[str, ...] = ()
    # load while listing (core.fidelity): throttling errors, retried calls, seconds per page
    throttled: int = Field(default=0, ge=0)
    retries: int = Field(default=0, ge=0)
    page_latency_s: float = Field(default=0.0, ge=0.0)  # mean; 0 when not measured


class KindStatus(Frozen):
    """How well one kind was observed in a snapshot."""

    kind: str
    count: int
    completeness: float = Field(ge=0.0, le=1.0)
    fidelity: Fidelity
    latency_s: float
    errors: tuple[str, ...] = ()
    stale_age_s: float | None = None
    doubted_empty: bool = False  # listed empty while the last cycle listed many: not believed
    throttled: int = 0  # the load facts of its listing (Observation), kept for core.fidelity
    retries: int = 0
    page_latency_s: float = 0.0

    @property
    def complete(self) -> bool:
        return self.completeness >= 1.0 and self.fidelity != "stale"


class Snapshot(Frozen):
    """The observed fleet at one moment, with per-kind completeness and fidelity."""

    target: str
    correlation_id: str
    captured_at: datetime
    latency_s: float
    resources: tuple[ObservedResource, ...]
    kinds: dict[str, KindStatus]
    in_flight: tuple[ResourceKey, ...] = ()  # created, not listed yet (core.inflight)

    @property
    def fidelity(self) -> Fidelity:
        levels: tuple[Fidelity, ...] = ("full", "degraded", "stale")
        worst = max((levels.index(k.fidelity) for k in self.kinds.values()), default=0)
        return levels[worst]

    @property
    def completeness(self) -> float:
        return min((k.completeness for k in self.kinds.values()), default=1.0)

    def is_complete(self, kind: str) -> bool:
        status = self.kinds.get(kind)
        return status is not None and status.complete
