"""Per-target policy: the knobs of planning, actuation and convergence, validated.

Numbers and flags are strict: ``max_parallel: true`` or ``'4'`` is a mistake to report, not 1
or 4 (ints are accepted where a float is expected)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, field_validator, model_validator

from reconciler.core.model import Frozen, Urgency

__all__ = ["Tolerance", "Window", "FidelityPolicy", "UnmanagedIgnore", "Policy"]


class Tolerance(Frozen):
    """Drift that counts as converged: a drifted fraction, and numeric slack per field."""

    drift_fraction: StrictFloat = Field(default=0.0, ge=0.0, le=1.0)
    numeric: dict[str, StrictFloat] = Field(default_factory=dict)


class Window(Frozen):
    """A weekly maintenance window in UTC: days (0=Monday) and an hour range [start, end)."""

    days: tuple[StrictInt, ...] = (0, 1, 2, 3, 4, 5, 6)
    start_hour: StrictInt = Field(default=0, ge=0, le=23)
    end_hour: StrictInt = Field(default=24, ge=1, le=24)


class FidelityPolicy(Frozen):
    """When one sense counts as observed under load (core.fidelity), and what the cycle then
    does instead: a kind listed with at least ``throttles`` throttling errors, ``retries``
    retried calls, or pages slower than ``page_latency_s`` on average degrades the snapshot."""

    throttles: StrictInt = Field(default=1, ge=1, le=10_000)
    retries: StrictInt = Field(default=3, ge=1, le=10_000)
    page_latency_s: StrictFloat = Field(default=5.0, gt=0.0, le=600.0)
    max_parallel: StrictInt = Field(default=2, ge=1, le=1024)  # at most this many actions at once
    # sensors poke this much less often
    poke_factor: StrictFloat = Field(default=3.0, ge=1.0, le=20.0)
    block_deletions: StrictBool = True


class UnmanagedIgnore(Frozen):
    """Unowned resources not worth reporting as unmanaged (core.compare): one carrying every
    tag of ``tags`` (a value ``*`` matches any value), or whose name or ``kind/name`` matches
    a glob of ``names``. Ignoring only hides a resource from the report: none is ever acted on."""

    tags: dict[str, str] = Field(default_factory=dict, max_length=50)
    names: tuple[str, ...] = Field(default=(), max_length=200)

    @field_validator("tags")
    @classmethod
    def _tag_keys(cls, tags: dict[str, str]) -> dict[str, str]:
        if any(not k.strip() for k in tags):
            raise ValueError("a tag key must not be empty")
        return tags

    @field_validator("names")
    @classmethod
    def _patterns(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if any(not n.strip() for n in names):
            raise ValueError("a name pattern must not be empty")
        return names

    def ignores(self, kind: str, name: str, spec: dict[str, Any]) -> bool:
        if self.names and any(fnmatchcase(name, p) or fnmatchcase(f"{kind}/{name}", p)
                              for p in self.names):
            return True
        if not self.tags:
            return False
        tags = spec.get("tags")
        if not isinstance(tags, dict):
            return False
        return all(k in tags and (v == "*" or tags[k] == v) for k, v in self.tags.items())


class Policy(Frozen):
    """How one target is reconciled. Every limit is bounded so no loop can run away."""

    max_parallel: StrictInt = Field(default=8, ge=1, le=1024)
    max_attempts: StrictInt = Field(default=3, ge=1, le=20)
    backoff_base_s: StrictFloat = Field(default=1.0, ge=0.0, le=600.0)
    backoff_cap_s: StrictFloat = Field(default=30.0, ge=0.0, le=3600.0)
    jitter: StrictFloat = Field(default=0.5, ge=0.0, le=1.0)
    max_delete_fraction: StrictFloat = Field(default=0.2, ge=0.0, le=1.0)
    completeness_threshold: StrictFloat = Field(default=1.0, ge=0.0, le=1.0)
    # A complete listing that comes back empty is doubted for one cycle when the previous
    # cycle listed at least this many of the kind (0: believe every empty listing).
    doubt_empty_from: StrictInt = Field(default=3, ge=0)
    sense_deadline_seconds: StrictFloat = Field(default=60.0, gt=0.0, le=3600.0)
    settle_seconds: StrictFloat = Field(default=0.0, ge=0.0, le=3600.0)
    cycle_deadline_seconds: StrictFloat = Field(default=900.0, gt=0.0, le=86400.0)
    # A create the fleet has not listed after this long is taken as having made nothing: the
    # next create of that resource is a new attempt with a new client token (core.inflight).
    # rollback of a failed wave may still act this long after the cycle deadline
    rollback_grace_seconds: StrictFloat = Field(default=120.0, ge=0.0, le=3600.0)
    create_pending_seconds: StrictFloat = Field(default=600.0, gt=0.0, le=86400.0)
    in_flight_poll_seconds: StrictFloat = Field(default=2.0, gt=0.0, le=300.0)
    max_iterations: StrictInt = Field(default=3, ge=1, le=50)
    breaker_failures: StrictInt = Field(default=3, ge=1, le=100)
    auto_apply: tuple[Urgency, ...] = ("high", "critical")
    tolerance: Tolerance = Field(default_factory=Tolerance)
    ignore_fields: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    on_failure: Literal["rollback", "continue"] = "rollback"
    # the plan's rollback points: before every wave, or only before the whole plan
    rollback: Literal["wave", "plan"] = "wave"
    fidelity: FidelityPolicy = Field(default_factory=FidelityPolicy)
    approve_irreversible: StrictBool = False
    allow_empty_desired: StrictBool = False
    adopt: StrictBool = False
    unmanaged_ignore: UnmanagedIgnore = Field(default_factory=UnmanagedIgnore)
    flap_cycles: StrictInt = Field(default=3, ge=0, le=50)  # 0: never suspect another controller
    batch_size: StrictInt = Field(default=50, ge=1, le=10000)
    windows: tuple[Window, ...] = ()

    @model_validator(mode="after")
    def _backoff_cap_covers_base(self) -> Policy:
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff_cap_s must be >= backoff_base_s")
        return self
