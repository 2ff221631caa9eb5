"""Property: whatever happens between provider calls (approvals of this or another plan, the
lease taken over and back, the deadline passing), no call is sent unless, at that moment, the
cycle holds the lease under its fencing token, a plan needing approval has an unspent approval
of its exact hash, and the deadline (plus the rollback grace, for an undo) has not passed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.actuate import Actuator
from reconciler.core.guard import ActuationGuard, Mandate
from reconciler.core.model import Action, Approval, OperationResult, Plan
from reconciler.core.planhash import recompute_hash
from reconciler.core.policy import Policy
from reconciler.testing import FakeClock, MemoryStore, RecordingSink
from tests.builders import NOW, node, want
from tests.loop_support import Rig

EVENTS = st.sampled_from(["nothing", "approve", "approve_other", "take_lease", "lease_back",
                          "late", "fail_next"])


def plan_of(n: int, needs_approval: bool) -> Plan:
    desired = [want(f"sim.Node/n{i}", node()) for i in range(n)]
    plan = Rig.make().cycle(desired, Policy(jitter=0), dry_run=True).plans[0]
    validation = plan.validation.model_copy(update={"needs_approval": needs_approval})
    plan = plan.model_copy(update={"validation": validation})
    return plan.model_copy(update={"hash": recompute_hash(plan)})


@dataclass
class World:
    """The store, the clock and a provider that checks the rule at every call it receives."""

    store: MemoryStore
    clock: FakeClock
    plan: Plan
    fence: int
    deadline: float = 100.0
    grace: float = 30.0
    events: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def apply(self, action: Action) -> OperationResult:
        self._check(action)
        self.sent.append(action.id)
        event = self.events.pop(0) if self.events else "nothing"
        getattr(self, f"_{event}")()
        if event == "fail_next":
            raise _Fail()
        return "deleted" if action.type == "delete" else "created"

    def _check(self, action: Action) -> None:
        now = self.clock.monotonic()
        limit = self.deadline + (self.grace if action.id.endswith("#undo") else 0)
        if self.store.lease_fence("t", "c-1") != self.fence:
            self.violations.append(f"{action.id}: sent without the lease")
        approved = self.store.approvals.get(("t", self.plan.hash))
        if self.plan.validation.needs_approval and (
                approved is None or approved.used_by not in (None, "c-1")):
            self.violations.append(f"{action.id}: sent without an approval of the plan")
        if now >= limit:
            self.violations.append(f"{action.id}: sent after the deadline")

    def _nothing(self) -> None: ...

    def _fail_next(self) -> None: ...

    def _approve(self) -> None:
        self.store.record_approval(Approval(target="t", plan_hash=self.plan.hash, actor="a",
                                            surface="cli", at=NOW))

    def _approve_other(self) -> None:
        self.store.record_approval(Approval(target="t", plan_hash="0" * 32, actor="m",
                                            surface="cli", at=NOW))

    def _take_lease(self) -> None:
        self.store.leases.pop("t", None)
        self.store.acquire_lease("t", "intruder", 10_000)

    def _lease_back(self) -> None:
        self.store.leases.pop("t", None)
        self.store.acquire_lease("t", "c-1", 10_000)  # the same holder, but a new fence

    def _late(self) -> None:
        self.clock.advance(60)


class _Fail(Exception):
    """An adapter bug: the action fails (rollback of its wave follows)."""


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 6), needs_approval=st.booleans(), approved_first=st.booleans(),
       events=st.lists(EVENTS, max_size=8))
def test_no_provider_call_breaks_the_mandate(n, needs_approval, approved_first, events):
    store, clock = MemoryStore(), FakeClock()
    plan = plan_of(n, needs_approval)
    assert store.acquire_lease("t", "c-1", 10_000)
    world = World(store, clock, plan, store.lease_fence("t", "c-1") or 0, events=list(events))
    if approved_first:
        world._approve()
    mandate = Mandate(holder="c-1", fence=world.fence, plan_hash=plan.hash,
                      deadline_at=NOW + timedelta(seconds=world.deadline),
                      rollback_grace_s=world.grace)
    guard = ActuationGuard(store, clock, "t", plan, mandate)
    actuator = Actuator(applier=world, policy=Policy(max_parallel=1, jitter=0, max_attempts=1),
                        events=RecordingSink(), clock=clock, target="t", correlation_id="c-1",
                        guard=guard)
    result = actuator.run(plan)
    assert world.violations == []
    sent = [r.action_id for r in (*result.results, *result.rollback) if r.attempts and
            not (r.error or "").startswith("refused:")]
    assert sorted(sent) == sorted(world.sent)  # every call not refused reached the provider
