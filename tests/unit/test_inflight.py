"""Creates in flight: one client token per create attempt, and a lagging listing is waited for.

The fake below keeps AWS's two create rules that moto does not (EC2 API reference, "Ensuring
idempotency" and "Eventual consistency"): a repeated client token answers with what it made
first and makes nothing, even after that resource is gone; a new resource is listed only
``lag_s`` after it was made.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from reconciler.core.errors import PermanentError, TemporaryError
from reconciler.core.inflight import claim_create, in_flight, settled_creates
from reconciler.core.model import (
    Action,
    KindStatus,
    Observation,
    ObservedResource,
    OperationResult,
    PendingCreate,
    ResourceKey,
)
from reconciler.core.policy import Policy
from reconciler.testing import FakeClock, MemoryStore
from tests.builders import NOW, key, node, snapshot, want
from tests.loop_support import Rig

FAST = Policy(backoff_base_s=0.1, backoff_cap_s=1, jitter=0, in_flight_poll_seconds=2)
FLEET = [want("sim.Node/n1", node()), want("sim.Node/n2", node())]


@dataclass
class AwsLikeFleet:
    """sim.Node resources under AWS's token and listing rules, on a fake clock."""

    clock: FakeClock
    lag_s: float = 0.0
    lose_first_response: bool = False
    live: dict[ResourceKey, tuple[str, dict[str, Any], float]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # token -> id it made
    launches: Counter[ResourceKey] = field(default_factory=Counter)
    sent_tokens: list[str] = field(default_factory=list)
    n: int = 0

    def kinds(self) -> frozenset[str]:
        return frozenset({"sim.Node", "sim.Workload"})

    def observe(self, kind: str, timeout_s: float) -> Observation:
        now = self.clock.monotonic()
        listed = tuple(ObservedResource(key=k, spec=spec, provider_id=pid)
                       for k, (pid, spec, made) in sorted(self.live.items(), key=str)
                       if k.kind == kind and now - made >= self.lag_s)
        return Observation(kind=kind, resources=listed, completeness=1.0)

    def apply(self, action: Action) -> OperationResult:
        if action.type == "delete":
            return "deleted" if self.live.pop(action.target, None) else "unchanged"
        if action.type == "update":
            pid, _, made = self.live[action.target]
            self.live[action.target] = (pid, dict(action.params["spec"]), made)
            return "updated"
        self.sent_tokens.append(action.idempotency_token)
        if action.idempotency_token in self.tokens:
            return "created"  # AWS: the first response again; nothing launched
        self.n += 1
        pid = f"i-{self.n}"
        self.tokens[action.idempotency_token] = pid
        self.live[action.target] = (pid, dict(action.params["spec"]), self.clock.monotonic())
        self.launches[action.target] += 1
        if self.lose_first_response and self.n == 1:
            raise TemporaryError("connection reset after the request was sent")
        return "created"

    def terminate(self, name: str) -> None:
        del self.live[key(f"sim.Node/{name}")]


def rig_with(fleet_of: Any) -> tuple[Rig, AwsLikeFleet]:
    clock = FakeClock()
    fleet = fleet_of(clock)
    return Rig(provider=fleet, clock=clock), fleet  # type: ignore[arg-type]


def test_an_instance_terminated_by_hand_is_created_again_with_a_new_token():
    rig, fleet = rig_with(AwsLikeFleet)
    assert rig.cycle(FLEET, FAST).outcome.status == "converged"
    first_id = fleet.live[key("sim.Node/n1")][0]
    fleet.terminate("n1")
    report = rig.cycle(FLEET, FAST)
    assert report.outcome.status == "converged", report.outcome.error
    assert fleet.live[key("sim.Node/n1")][0] != first_id
    assert fleet.launches[key("sim.Node/n1")] == 2
    assert len(set(fleet.sent_tokens)) == 3  # n1, n2, and n1 again under a new token


def test_a_listing_that_lags_is_waited_for_and_makes_no_second_instance():
    rig, fleet = rig_with(lambda clock: AwsLikeFleet(clock, lag_s=15))
    report = rig.cycle(FLEET, FAST)
    assert report.outcome.status == "converged", report.outcome.error
    assert set(fleet.launches.values()) == {1}
    assert sum(rig.clock.sleeps) >= 15
    assert not rig.store.pending  # listed: the attempts are over
    again = rig.cycle(FLEET, FAST)
    assert again.outcome.status == "in_sync" and set(fleet.launches.values()) == {1}


def test_a_lost_create_response_is_retried_with_the_same_token():
    rig, fleet = rig_with(lambda clock: AwsLikeFleet(clock, lose_first_response=True))
    report = rig.cycle(FLEET[:1], FAST)
    assert report.outcome.status == "converged", report.outcome.error
    assert fleet.launches[key("sim.Node/n1")] == 1
    assert len(fleet.sent_tokens) == 2 and len(set(fleet.sent_tokens)) == 1


def test_a_create_still_in_flight_from_an_earlier_cycle_is_not_sent_again():
    rig, fleet = rig_with(lambda clock: AwsLikeFleet(clock, lag_s=10_000))
    short = FAST.model_copy(update={"cycle_deadline_seconds": 60})
    first = rig.cycle(FLEET[:1], short)
    assert first.outcome.status == "deadline" and "not listed" in (first.outcome.error or "")
    second = rig.cycle(FLEET[:1], short)
    assert second.outcome.status == "deadline"
    assert fleet.launches[key("sim.Node/n1")] == 1 and len(fleet.sent_tokens) == 1
    assert not second.plans or second.plans[0].is_empty


def test_a_pending_create_never_listed_expires_and_the_next_create_gets_a_new_token():
    rig, fleet = rig_with(lambda clock: AwsLikeFleet(clock, lag_s=10_000))
    policy = FAST.model_copy(update={"cycle_deadline_seconds": 60, "create_pending_seconds": 100})
    rig.cycle(FLEET[:1], policy)
    fleet.live.clear()  # it never shows up: say it died before anyone listed it
    rig.clock.advance(200)
    fleet.lag_s = 0
    report = rig.cycle(FLEET[:1], policy)
    assert report.outcome.status == "converged", report.outcome.error
    assert len(set(fleet.sent_tokens)) == 2


def test_a_dry_run_reports_a_create_in_flight_without_planning_it_again():
    rig, fleet = rig_with(lambda clock: AwsLikeFleet(clock, lag_s=10_000))
    rig.cycle(FLEET[:1], FAST.model_copy(update={"cycle_deadline_seconds": 30}))
    report = rig.cycle(FLEET[:1], FAST, dry_run=True)
    assert report.diff is not None and report.diff.in_flight == (key("sim.Node/n1"),)
    assert not report.diff.additions and report.outcome.status == "reported"
    assert len(fleet.sent_tokens) == 1


# -- the rule itself ---------------------------------------------------------------------

def create(name: str = "n1", token: str = "base-1") -> Action:
    return Action(id=f"create:sim.Node/{name}", type="create", target=key(f"sim.Node/{name}"),
                  params={"spec": node()}, idempotency_token=token)


def claim(store: MemoryStore, action: Action, cid: str = "c-1", seed: int = 0) -> str:
    sent = claim_create(store, "t", action, correlation_id=cid, now=NOW,
                        rng=random.Random(seed))
    return sent.idempotency_token


def test_every_retry_of_an_attempt_sends_the_same_token_and_a_new_attempt_a_new_one():
    store = MemoryStore()
    first = claim(store, create())
    assert first != "base-1" and len(first) == 32
    assert claim(store, create(), cid="c-2", seed=9) == first  # a retry, another worker
    store.end_creates("t", [key("sim.Node/n1")])
    assert claim(store, create(), cid="c-3", seed=0) != first


def test_a_create_with_another_spec_waits_while_the_earlier_one_is_in_flight():
    store = MemoryStore()
    claim(store, create(token="spec-a"))
    with pytest.raises(TemporaryError, match="in flight"):
        claim(store, create(token="spec-b"))


def test_a_create_refused_for_good_ends_its_attempt():
    from reconciler.core.actuate import Actuator
    from reconciler.testing import RecordingSink

    class Refusing:
        def apply(self, action: Action) -> OperationResult:
            raise PermanentError("InvalidAMIID.NotFound")

    store, clock = MemoryStore(), FakeClock()
    actuator = Actuator(applier=Refusing(), policy=FAST, events=RecordingSink(), clock=clock,
                        target="t", correlation_id="c-1", ledger=store)
    plan = Rig.make().cycle(FLEET[:1], FAST, dry_run=True).plans[0]
    result = actuator.run(plan)
    assert result.results[0].state == "failed" and not store.pending


def pending(name: str, age_s: float) -> tuple[ResourceKey, PendingCreate]:
    from datetime import timedelta

    k = key(f"sim.Node/{name}")
    return k, PendingCreate(key=k, token="t", base_token="b", correlation_id="c",
                            started_at=NOW - timedelta(seconds=age_s))


def test_listed_or_expired_records_end_and_the_rest_are_in_flight():
    records = dict([pending("listed", 5), pending("lagging", 5), pending("old", 700)])
    snap = snapshot(ObservedResource(key=key("sim.Node/listed"), spec=node()),
                    kinds=("sim.Node",))
    assert in_flight(records, snap, 600) == (key("sim.Node/lagging"),)
    assert settled_creates(records, snap, 600) == [key("sim.Node/listed"), key("sim.Node/old")]


def test_a_stale_listing_never_ends_a_record():
    records = dict([pending("listed", 5)])
    snap = snapshot(ObservedResource(key=key("sim.Node/listed"), spec=node()),
                    kinds=("sim.Node",))
    stale = KindStatus(kind="sim.Node", count=1, completeness=0.0, fidelity="stale",
                       latency_s=0.0)
    snap = snap.model_copy(update={"kinds": {"sim.Node": stale}})
    assert settled_creates(records, snap, 600) == []
