"""core.guard: the conditions checked before every provider call, whatever the driver."""

from __future__ import annotations

from datetime import timedelta

import pytest

from reconciler.core.actuate import Actuator
from reconciler.core.guard import ActuationGuard, Mandate, Refused
from reconciler.core.model import Action, Approval, OperationResult, Plan
from reconciler.core.planhash import recompute_hash
from reconciler.core.policy import Policy
from reconciler.testing import FakeClock, MemoryStore, RecordingSink
from tests.builders import NOW, node, want
from tests.loop_support import Rig

FAST = Policy(backoff_base_s=0.1, backoff_cap_s=1, jitter=0)


def a_plan(needs_approval: bool = False) -> Plan:
    plan = Rig.make().cycle([want("sim.Node/n1", node())], FAST, dry_run=True).plans[0]
    if needs_approval:
        validation = plan.validation.model_copy(update={"needs_approval": True})
        plan = plan.model_copy(update={"validation": validation})
        plan = plan.model_copy(update={"hash": recompute_hash(plan)})
    return plan


def guard_for(plan: Plan, store: MemoryStore, clock: FakeClock,
              **mandate: object) -> ActuationGuard:
    holder = str(mandate.get("holder", "c-1"))
    assert store.acquire_lease("t", holder, 600)
    fields = {"holder": holder, "fence": store.lease_fence("t", holder), "plan_hash": plan.hash,
              "deadline_at": NOW + timedelta(seconds=100), **mandate}
    return ActuationGuard(store, clock, "t", plan, Mandate(**fields))  # type: ignore[arg-type]


def test_a_plan_within_policy_under_a_held_lease_passes():
    plan, store = a_plan(), MemoryStore()
    guard_for(plan, store, FakeClock()).check(plan.actions[0])
    assert not store.events


@pytest.mark.parametrize(("change", "reason"), [
    ({"fence": 99}, "lease"),
    ({"plan_hash": "0" * 32}, "is not the plan"),
    ({"deadline_at": NOW - timedelta(seconds=1)}, "deadline"),
])
def test_each_broken_condition_is_refused_and_audited(change, reason):
    plan, store = a_plan(), MemoryStore()
    guard = guard_for(plan, store, FakeClock(), **change)
    with pytest.raises(Refused, match=reason):
        guard.check(plan.actions[0])
    assert [e.type for e in store.events] == ["action_refused"]
    assert reason in store.events[0].detail["reason"]


def test_approval_is_of_the_exact_hash_and_only_from_the_store():
    plan, store, clock = a_plan(needs_approval=True), MemoryStore(), FakeClock()
    guard = guard_for(plan, store, clock)
    with pytest.raises(Refused, match="needs approval"):
        guard.check(plan.actions[0])
    store.record_approval(Approval(target="t", plan_hash="f" * 32, actor="x", surface="cli",
                                   at=NOW))
    with pytest.raises(Refused, match="needs approval"):
        guard.check(plan.actions[0])
    store.record_approval(Approval(target="t", plan_hash=plan.hash, actor="alice",
                                   surface="airflow", at=NOW))
    guard.check(plan.actions[0])
    guard.check(plan.actions[0])  # the same cycle, again: its approval
    store.release_lease("t", "c-1")
    later = guard_for(plan, store, clock, holder="c-2")  # another cycle, the same plan
    with pytest.raises(Refused, match="no unspent approval"):
        later.check(plan.actions[0])


def test_a_holder_that_is_not_the_lease_holder_is_refused():
    plan, store, clock = a_plan(), MemoryStore(), FakeClock()
    guard_for(plan, store, clock)  # c-1 holds the lease
    other = ActuationGuard(store, clock, "t", plan, Mandate(
        holder="c-2", fence=1, plan_hash=plan.hash, deadline_at=NOW + timedelta(seconds=9)))
    with pytest.raises(Refused, match="lease"):
        other.check(plan.actions[0])


def test_a_tampered_plan_is_refused_even_with_its_old_hash():
    plan, store = a_plan(), MemoryStore()
    action = plan.actions[0].model_copy(update={"params": {"spec": {"pool": "evil"}}})
    wave = plan.waves[0].model_copy(update={"actions": (action,)})
    tampered = plan.model_copy(update={"waves": (wave,)})
    with pytest.raises(Refused, match="hashes to"):
        guard_for(tampered, store, FakeClock()).check(action)


def test_rollback_gets_its_grace_after_the_deadline_and_forward_actions_do_not():
    plan, store, clock = a_plan(), MemoryStore(), FakeClock()
    guard = guard_for(plan, store, clock, deadline_at=NOW, rollback_grace_s=60)
    undo = plan.actions[0].inverse
    assert undo is not None
    guard.check(undo.model_copy(update={"wave": 0}))
    with pytest.raises(Refused):
        guard.check(plan.actions[0])
    clock.advance(61)
    with pytest.raises(Refused):
        guard.check(undo)


def test_the_actuator_sends_nothing_the_guard_refuses():
    class Recorder:
        sent: list[str] = []

        def apply(self, action: Action) -> OperationResult:
            self.sent.append(action.id)
            return "created"

    plan, store, clock = a_plan(needs_approval=True), MemoryStore(), FakeClock()
    applier = Recorder()
    actuator = Actuator(applier=applier, policy=FAST, events=RecordingSink(), clock=clock,
                        target="t", correlation_id="c-1", guard=guard_for(plan, store, clock))
    result = actuator.run(plan)
    assert applier.sent == [] and result.results[0].state == "failed"
    assert (result.results[0].error or "").startswith("refused: ")
    assert result.results[0].attempts == 1  # a refusal is not retried


def test_the_hash_leaves_out_duration_estimates_so_plan_and_apply_agree():
    plan = a_plan()
    slower = [w.model_copy(update={"actions": tuple(
        a.model_copy(update={"estimated_duration_s": a.estimated_duration_s + 7})
        for a in w.actions)}) for w in plan.waves]
    assert recompute_hash(plan.model_copy(update={"waves": tuple(slower)})) == plan.hash
    stricter = plan.validation.model_copy(update={"needs_approval": True})
    assert recompute_hash(plan.model_copy(update={"validation": stricter})) != plan.hash


def test_a_new_holder_gets_a_new_fence_and_renewal_keeps_it():
    store = MemoryStore()
    assert store.acquire_lease("t", "a", 10)
    first = store.lease_fence("t", "a")
    assert store.acquire_lease("t", "a", 10) and store.lease_fence("t", "a") == first
    store.release_lease("t", "a")
    assert store.lease_fence("t", "a") is None
    assert store.acquire_lease("t", "b", 10)
    assert store.lease_fence("t", "b") == (first or 0) + 1
