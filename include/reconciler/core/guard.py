"""The actuation guard: checked immediately before every mutating provider call, by any driver.

A rule that holds only because of how tasks are wired is not a rule: a task can be cleared,
marked successful by hand or retried long after its turn. So the conditions under which a plan
may touch the fleet are checked where the mutation happens (``Actuator._apply``), against the
store, not against what an earlier task said:

- the caller still holds the target's lease, with the fencing token it was given (a holder
  whose lease expired or was taken over is refused, even if it still believes it holds it);
- the plan's hash, recomputed from its content, is the hash the caller was told to run;
- a plan that needs approval has an approval record in the store for that exact hash, not
  spent by another cycle (the first cycle to act on an approval spends it);
- the cycle's deadline has not passed (rollback gets ``rollback_grace_s`` more, so a failed
  wave is still undone);
- an update's fields still hold what the plan saw, on a fresh read of its resource
  (core.fresh), when the provider can read one resource (``Reader``).

Every refusal raises :class:`Refused` (a permanent error: the action fails, nothing is sent)
and is recorded as an ``action_refused`` event in the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from reconciler.core.errors import PermanentError
from reconciler.core.fresh import changed_since_plan
from reconciler.core.model import Action, Approval, Event, Plan
from reconciler.core.planhash import recompute_hash
from reconciler.core.ports import Clock, GuardStore, Reader

__all__ = ["Approval", "Mandate", "ActuationGuard", "Refused"]


class Refused(PermanentError):
    """The guard refused a provider call; nothing was sent."""


@dataclass(frozen=True)
class Mandate:
    """What one actuation runs under: whose lease, which plan, until when."""

    holder: str  # the lease holder: the cycle's correlation id
    fence: int  # the fencing token the lease was acquired with
    plan_hash: str  # the hash the caller was told to run
    deadline_at: datetime  # no new forward action after this
    rollback_grace_s: float = 120.0


class ActuationGuard:
    """Checks a :class:`Mandate` for one plan before each provider call (see module doc)."""

    def __init__(self, store: GuardStore, clock: Clock, target: str, plan: Plan,
                 mandate: Mandate, reader: Reader | None = None) -> None:
        self.store, self.clock, self.target, self.mandate = store, clock, target, mandate
        self.reader = reader
        self._plan_problem = _plan_problem(plan, mandate)
        self._needs_approval = plan.validation.needs_approval

    def check(self, action: Action) -> None:
        """Raise :class:`Refused` (and audit it) unless ``action`` may be sent now."""
        reason = self._reason(action)
        if reason is None:
            return
        self.store.record_event(Event(
            type="action_refused", target=self.target, correlation_id=self.mandate.holder,
            at=self.clock.now(), action_id=action.id,
            detail={"reason": reason, "plan_hash": self.mandate.plan_hash}), actor="guard")
        raise Refused(f"refused: {reason}")

    def _reason(self, action: Action) -> str | None:
        m = self.mandate
        if self._plan_problem:
            return self._plan_problem
        fence = self.store.lease_fence(self.target, m.holder)
        if fence != m.fence:
            return ("the target's lease is no longer held by this cycle (expired or taken by "
                    "another cycle)")
        if self._needs_approval and self.store.claim_approval(
                self.target, m.plan_hash, m.holder) is None:
            return (f"plan {m.plan_hash} needs approval and no unspent approval is recorded "
                    "for it")
        grace = m.rollback_grace_s if action.id.endswith("#undo") else 0.0
        if self.clock.now() >= m.deadline_at + timedelta(seconds=grace):
            return f"the cycle deadline passed at {m.deadline_at:%F %T} UTC"
        return self._stale(action)

    def _stale(self, action: Action) -> str | None:
        if self.reader is None or action.type != "update":
            return None
        try:
            fresh = self.reader.read(action)
        except LookupError:
            return None  # this kind cannot be read one by one: its provider's apply checks
        stale = changed_since_plan(action, fresh)
        return None if stale is None else f"stale plan: {stale}"


def _plan_problem(plan: Plan, mandate: Mandate) -> str | None:
    actual = recompute_hash(plan)
    if actual != plan.hash:
        return f"the plan's content hashes to {actual}, not to its recorded hash {plan.hash}"
    if plan.hash != mandate.plan_hash:
        return f"plan {plan.hash} is not the plan {mandate.plan_hash} this actuation may run"
    return None
