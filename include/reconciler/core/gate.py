"""Snapshot gate verdicts, and the built-in structural checks every gate starts from."""

from __future__ import annotations

from collections import Counter

from reconciler.core.kinds import region_of
from reconciler.core.model import DesiredState, Frozen, Snapshot

__all__ = ["GateVerdict", "basic_checks", "BasicGate", "managed_bound", "regional"]


class GateVerdict(Frozen):
    """A quality verdict. A failing gate blocks deletions; it never silently passes."""

    passed: bool
    failures: tuple[str, ...] = ()
    suite: str = "basic"

    @property
    def blocks_deletions(self) -> bool:
        return not self.passed


def regional(snapshot: Snapshot) -> bool:
    """Whether the snapshot spans several regions (some kind is ``kind@region``). Then an
    incomplete kind must not fail the whole gate: the plan blocks deletions in that kind's
    region only (core.plan), so a failing region blocks deletions there and nowhere else."""
    return any(region_of(kind) is not None for kind in snapshot.kinds)


# the managed-count bound: far more managed resources than desired means the snapshot (or the
# desired state) is not what it seems — a wrong account, a truncated file — so no deletions
MANAGED_BOUND_FACTOR, MANAGED_BOUND_SLACK = 2, 10


def managed_bound(desired: DesiredState) -> int:
    return MANAGED_BOUND_FACTOR * len(desired.resources) + MANAGED_BOUND_SLACK


def basic_checks(snapshot: Snapshot, desired: DesiredState, *,
                 allow_empty_desired: bool = False) -> list[str]:
    """The one rule set every gate holds, in plain Python; the great-expectations gate
    (orchestration.quality) states the same rules as suites, and a test holds the two equal.

    Snapshot ids unique; every kind fully observed (single region); desired ids unique and, unless
    ``policy.allow_empty_desired``, at least one; managed resources within ``managed_bound``."""
    failures: list[str] = []
    keys = Counter((r.key.kind, r.key.name) for r in snapshot.resources)
    dupes = [f"{k}/{n}" for (k, n), c in keys.items() if c > 1]
    if dupes:
        failures.append(f"snapshot has duplicate ids: {', '.join(sorted(dupes)[:5])}")
    for kind, status in sorted(snapshot.kinds.items()):
        if status.completeness < 1.0 and not regional(snapshot):
            failures.append(f"{kind}: completeness {status.completeness:.2f} < 1")
    wanted = Counter((r.key.kind, r.key.name) for r in desired.resources)
    twice = [f"{k}/{n}" for (k, n), c in wanted.items() if c > 1]
    if twice:
        failures.append(f"desired state has duplicate ids: {', '.join(sorted(twice)[:5])}")
    if not desired.resources and not allow_empty_desired:
        failures.append("desired state is empty (policy.allow_empty_desired is off)")
    managed = sum(1 for r in snapshot.resources if r.managed)
    if managed > managed_bound(desired):
        failures.append(f"snapshot: {managed} managed resources, more than the expected bound "
                        f"{managed_bound(desired)} ({MANAGED_BOUND_FACTOR} x desired + "
                        f"{MANAGED_BOUND_SLACK})")
    return failures


class BasicGate:
    """The gate without great-expectations (the CLI's default): the same rules, no GX import."""

    def __init__(self, allow_empty_desired: bool = False) -> None:
        self.allow_empty_desired = allow_empty_desired

    def check(self, snapshot: Snapshot, desired: DesiredState) -> GateVerdict:
        failures = basic_checks(snapshot, desired, allow_empty_desired=self.allow_empty_desired)
        return GateVerdict(passed=not failures, failures=tuple(failures))
