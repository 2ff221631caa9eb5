"""What the engine needs to know about a kind: ordering, urgency classes, risk and duration."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from reconciler.core.model import ActionType, Frozen, Risk

__all__ = ["KindRules", "KindRegistry", "DEFAULT_RULES", "field_matches", "region_of",
           "scope_label"]


class KindRules(Frozen):
    """Rules for one kind. Field names are dotted paths into the spec; a prefix covers children.

    - ``parents``: kinds whose creates/updates must finish before this kind's (clusters before
      services); deletions run the other way round.
    - ``capacity_fields``: a shortfall here is an outage (replicas, desired_count, state).
    - ``cosmetic_fields``: drift here is low urgency (tags, labels).
    - ``risky_fields``: updating these restarts or replaces the resource (medium risk).
    """

    kind: str
    parents: tuple[str, ...] = ()
    capacity_fields: tuple[str, ...] = ()
    cosmetic_fields: tuple[str, ...] = ("tags", "labels")
    risky_fields: tuple[str, ...] = ()
    durations_s: dict[str, float] = Field(
        default_factory=lambda: {"create": 5.0, "update": 2.0, "delete": 3.0}
    )

    def duration(self, action: ActionType) -> float:
        return self.durations_s.get(action, 1.0)

    def update_risk(self, paths: list[str]) -> Risk:
        return "medium" if any(field_matches(p, self.risky_fields) for p in paths) else "low"


KindRegistry = Mapping[str, KindRules]


def field_matches(path: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """True when ``path`` equals a pattern or lies beneath it (``tags`` covers ``tags.env``).

    A ``*`` segment matches any one segment: ``containers.*.image``.
    """
    parts = path.split(".")
    for pattern in patterns:
        pat = pattern.split(".")
        if len(pat) <= len(parts) and all(p in ("*", q) for p, q in zip(pat, parts, strict=False)):
            return True
    return False


def region_of(kind: str) -> str | None:
    """The scope a multi-region or multi-account target's kind names: a region
    (``ec2.Instance@eu-west-1``) or an account's region (``ec2.Instance@222222222222:eu-west-1``);
    None for a plain kind (a single-region target, or the first place of a larger one)."""
    _, sep, region = kind.partition("@")
    return region if sep else None


def scope_label(scope: str | None) -> str:
    """``eu-west-1`` -> ``region eu-west-1``; ``222222222222:eu-west-1`` -> ``account
    222222222222 region eu-west-1``; None -> ``its region``."""
    if scope is None:
        return "its region"
    account, sep, region = scope.rpartition(":")
    return f"account {account} region {region}" if sep else f"region {region}"


def DEFAULT_RULES(kind: str) -> KindRules:  # noqa: N802 - reads as a constant at call sites
    return KindRules(kind=kind)
