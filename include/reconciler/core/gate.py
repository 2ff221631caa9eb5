"""Snapshot gate verdicts, and the built-in structural checks every gate starts from."""

from __future__ import annotations

from collections import Counter

from reconciler.core.kinds import region_of
from reconciler.core.model import DesiredState, Frozen, Snapshot

__all__ = ["GateVerdict", "basic_checks", "BasicGate", "regional"]


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


def basic_checks(snapshot: Snapshot, desired: DesiredState) -> list[str]:
    failures: list[str] = []
    keys = Counter((r.key.kind, r.key.name) for r in snapshot.resources)
    dupes = [f"{k}/{n}" for (k, n), c in keys.items() if c > 1]
    if dupes:
        failures.append(f"snapshot has duplicate ids: {', '.join(sorted(dupes)[:5])}")
    for kind, status in sorted(snapshot.kinds.items()):
        if status.completeness < 1.0 and not regional(snapshot):
            failures.append(f"{kind}: completeness {status.completeness:.2f} < 1")
    return failures


class BasicGate:
    """The gate used when great-expectations is not wanted (the CLI's default)."""

    def check(self, snapshot: Snapshot, desired: DesiredState) -> GateVerdict:
        failures = basic_checks(snapshot, desired)
        return GateVerdict(passed=not failures, failures=tuple(failures))
