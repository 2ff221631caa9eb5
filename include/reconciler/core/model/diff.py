"""What differs between desired and observed: the diff, its modifications, coverage and drift."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from reconciler.core.model.base import Frozen, ResourceKey, Urgency
from reconciler.core.model.fleet import DesiredResource, ObservedResource

__all__ = [
    "FieldChange", "Modification", "KindCoverage", "Diff", "Drift",
]


class FieldChange(Frozen):
    path: str
    before: Any = None
    after: Any = None


class Modification(Frozen):
    key: ResourceKey
    changes: tuple[FieldChange, ...]
    desired: DesiredResource
    observed: ObservedResource


class KindCoverage(Frozen):
    """How much of one kind in the target's scope the target owns: resources no target owns
    are ``unmanaged``, those matching ``policy.unmanaged_ignore`` are ``ignored`` (not counted)."""

    managed: int = Field(default=0, ge=0)
    unmanaged: int = Field(default=0, ge=0)
    ignored: int = Field(default=0, ge=0)

    @property
    def seen(self) -> int:
        return self.managed + self.unmanaged

    @property
    def fraction(self) -> float:
        """managed / (managed + unmanaged); 1.0 when the kind holds neither."""
        return self.managed / self.seen if self.seen else 1.0


class Diff(Frozen):
    """Desired versus observed, keyed: what to add, change and remove, and what already matches."""

    additions: tuple[DesiredResource, ...] = ()
    modifications: tuple[Modification, ...] = ()
    deletions: tuple[ObservedResource, ...] = ()
    unchanged: int = 0
    conflicts: tuple[ResourceKey, ...] = ()
    suppressed: tuple[str, ...] = ()  # "kind/name:path" left alone: another controller fights it
    protected_orphans: tuple[ResourceKey, ...] = ()  # not desired, but protected: kept, reported
    in_flight: tuple[ResourceKey, ...] = ()  # created, not listed yet: neither missing nor done
    # owned by no target, not desired, not ignored: reported, never acted on. Sorted, capped at
    # core.compare.UNMANAGED_LISTED; ``coverage`` counts them all.
    unmanaged: tuple[ResourceKey, ...] = ()
    coverage: dict[str, KindCoverage] = Field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not (self.additions or self.modifications or self.deletions)


class Drift(Frozen):
    """How far the fleet is from the desired state, and how urgently it needs fixing."""

    magnitude: float = 0.0
    fraction: float = 0.0
    urgency: Urgency = "none"
    by_urgency: dict[str, int] = Field(default_factory=dict)
    drifted: int = 0
    total: int = 0
