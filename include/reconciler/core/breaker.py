"""Per-target circuit breaker: opens after K failed cycles and stays open until a manual reset."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from reconciler.core.model import Frozen

__all__ = ["BreakerState", "after_cycle", "reset", "allows_actuation"]


class BreakerState(Frozen):
    target: str
    state: Literal["closed", "open", "half_open"] = "closed"
    consecutive_failures: int = 0
    opened_at: datetime | None = None
    reason: str | None = None


def allows_actuation(breaker: BreakerState) -> bool:
    return breaker.state != "open"


def after_cycle(
    breaker: BreakerState, failed: bool, threshold: int, now: datetime, reason: str | None = None
) -> BreakerState:
    """The breaker after one cycle. Half-open is a trial: one failure re-opens it at once.

    An open breaker stays open whatever happens; only :func:`reset` moves it.
    """
    if breaker.state == "open":
        return breaker
    if not failed:
        return BreakerState(target=breaker.target)
    failures = breaker.consecutive_failures + 1
    if breaker.state == "half_open" or failures >= threshold:
        return breaker.model_copy(
            update={"state": "open", "consecutive_failures": failures, "opened_at": now,
                    "reason": reason}
        )
    return breaker.model_copy(update={"consecutive_failures": failures, "reason": reason})


def reset(breaker: BreakerState) -> BreakerState:
    """Manual reset: an open breaker goes half-open, letting exactly one trial cycle through."""
    if breaker.state == "closed":
        return breaker
    return BreakerState(target=breaker.target, state="half_open")
