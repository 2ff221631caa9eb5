"""The convergence constraint: tolerance, stability, monotonic progress, bounds and windows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from reconciler.core import breaker as brk
from reconciler.core.model import CycleStatus, Drift, Frozen, Outcome
from reconciler.core.policy import Policy, Tolerance, Window
from reconciler.core.ports import BreakerStore

__all__ = ["within_tolerance", "made_progress", "Verdict", "judge_pass", "in_window",
           "count_cycle"]


def within_tolerance(drift: Drift, tolerance: Tolerance) -> bool:
    """No drift, or only a tolerated fraction of it and nothing critical."""
    if drift.drifted == 0:
        return True
    return drift.urgency != "critical" and drift.fraction <= tolerance.drift_fraction


def made_progress(before: Drift, after: Drift) -> bool:
    """Progress is monotonic: each pass must strictly lower the drift magnitude."""
    return after.magnitude < before.magnitude


class Verdict(Frozen):
    """What to do after a pass: stop with a status, or go round again."""

    done: bool
    status: CycleStatus | None = None
    reason: str = ""


def judge_pass(
    history: Sequence[Drift],
    *,
    policy: Policy,
    actuation_ok: bool,
    past_deadline: bool,
    iteration: int,
) -> Verdict:
    """Judge the cycle after a plan→actuate→verify pass; ``history`` ends with the verify drift.

    Order matters: a failed actuation, then tolerance (stability is checked by the caller),
    then the deadline (actions it skipped explain a lack of progress), then lack of progress,
    then the iteration bound.
    """
    current, previous = history[-1], history[-2]
    if not actuation_ok:
        return Verdict(done=True, status="failed", reason="an action failed")
    if within_tolerance(current, policy.tolerance):
        return Verdict(done=True, status="converged")
    if past_deadline:
        return Verdict(done=True, status="deadline", reason="cycle deadline reached")
    if not made_progress(previous, current):
        reason = f"drift did not fall ({previous.magnitude:g} -> {current.magnitude:g})"
        return Verdict(done=True, status="no_progress", reason=reason)
    if iteration >= policy.max_iterations:
        return Verdict(done=True, status="max_iterations",
                       reason=f"not converged after {iteration} passes")
    return Verdict(done=False)


def in_window(now: datetime, windows: Sequence[Window]) -> bool:
    """Whether actuation is allowed now. No windows configured means always."""
    if not windows:
        return True
    return any(now.weekday() in w.days and w.start_hour <= now.hour < w.end_hour for w in windows)


def count_cycle(store: BreakerStore, outcome: Outcome, threshold: int, now: datetime) -> bool:
    """Count a cycle that acted against the target's breaker; True when this opened it."""
    seen: list[brk.BreakerState] = []

    def step(current: brk.BreakerState) -> brk.BreakerState:
        seen.append(current)
        return brk.after_cycle(current, outcome.counts_as_failure, threshold, now, outcome.error)

    after = store.update_breaker(outcome.target, step)
    return after.state == "open" and seen[-1].state != "open"
