"""actuate: state machine, bounded concurrency, retries with backoff, rollback, events."""

from __future__ import annotations

import random
import threading

import pytest

from reconciler.core.actuate import Actuator, backoff_delay
from reconciler.core.compare import compare
from reconciler.core.errors import PermanentError, TemporaryError
from reconciler.core.plan import PlanContext, make_plan
from reconciler.core.policy import Policy
from reconciler.kinds import rules_for
from reconciler.testing import FakeClock, RecordingSink
from tests.builders import NOW, node, snapshot, want

RULES = rules_for()


class ScriptedApplier:
    """Applies by recording; ``script[action_id]`` lists exceptions to raise first."""

    def __init__(self, script=None, delay=0.0):
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.calls: list[str] = []
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()
        self._delay = delay

    def apply(self, action):
        with self._lock:
            self.calls.append(action.id)
            self.active += 1
            self.peak = max(self.peak, self.active)
            pending = self.script.get(action.id)
            exc = pending.pop(0) if pending else None
        try:
            if self._delay:
                threading.Event().wait(self._delay)
            if exc:
                raise exc
            return "created" if action.type == "create" else "updated"
        finally:
            with self._lock:
                self.active -= 1


def make(n_nodes=3, workloads=0, observed=(), policy=Policy()):
    desired = [want(f"sim.Node/n{i}", node()) for i in range(n_nodes)]
    desired += [want(f"sim.Workload/w{i}", {"replicas": 1}) for i in range(workloads)]
    snap = snapshot(*observed)
    diff, _ = compare(desired, snap, rules=RULES, policy=policy)
    ctx = PlanContext(target="t", correlation_id="c-1", desired_version="v1", policy=policy,
                      rules=RULES, now=NOW)
    return make_plan(diff, snap, ctx)


def actuator(applier, policy=Policy(backoff_base_s=2, backoff_cap_s=30, jitter=0), clock=None):
    sink = RecordingSink()
    act = Actuator(applier=applier, policy=policy, events=sink, clock=clock or FakeClock(),
                   target="t", correlation_id="c-1", rng=random.Random(1))
    return act, sink


def test_all_actions_succeed_and_events_carry_the_correlation_id():
    applier = ScriptedApplier()
    act, sink = actuator(applier)
    result = act.run(make())
    assert result.ok and result.count("succeeded") == 3
    assert sink.types().count("action_started") == 3
    assert sink.types().count("action_completed") == 3
    assert {e.correlation_id for e in sink.events} == {"c-1"}
    assert sink.events[-1].detail["done"] == 3 and sink.events[-1].detail["total"] == 3


def test_temporary_errors_retry_with_exponential_backoff():
    clock = FakeClock()
    applier = ScriptedApplier({"create:sim.Node/n0": [TemporaryError("throttled")] * 2})
    act, _ = actuator(applier, clock=clock)
    result = act.run(make(n_nodes=1))
    assert result.ok and result.results[0].attempts == 3
    assert clock.sleeps == [2.0, 4.0]


def test_backoff_is_capped_and_jitter_only_shortens():
    policy = Policy(backoff_base_s=1, backoff_cap_s=5, jitter=0.5)
    rng = random.Random(0)
    delays = [backoff_delay(a, policy, rng, None) for a in range(1, 10)]
    assert all(0 < d <= 5 for d in delays)
    assert backoff_delay(10, Policy(backoff_base_s=1, backoff_cap_s=5, jitter=0), rng, None) == 5
    assert backoff_delay(1, Policy(jitter=0, backoff_cap_s=30), rng, 12.0) == 12.0


def test_attempts_are_bounded_then_the_action_fails():
    applier = ScriptedApplier({"create:sim.Node/n0": [TemporaryError("x")] * 10})
    act, sink = actuator(applier, policy=Policy(max_attempts=3, jitter=0))
    result = act.run(make(n_nodes=1))
    assert result.results[0].state == "failed" and result.results[0].attempts == 3
    assert "action_failed" in sink.types()


def test_permanent_errors_are_not_retried():
    applier = ScriptedApplier({"create:sim.Node/n0": [PermanentError("quota")]})
    act, _ = actuator(applier)
    result = act.run(make(n_nodes=1))
    assert result.results[0].attempts == 1 and "quota" in result.error


def test_an_adapter_bug_fails_one_action_not_the_run():
    applier = ScriptedApplier({"create:sim.Node/n0": [KeyError("boom")]})
    act, _ = actuator(applier)
    result = act.run(make(n_nodes=2))
    assert [r.state for r in result.results].count("failed") == 1


def test_concurrency_never_exceeds_max_parallel():
    applier = ScriptedApplier(delay=0.01)
    act, _ = actuator(applier, policy=Policy(max_parallel=3))
    act.run(make(n_nodes=12))
    assert applier.peak <= 3 and len(applier.calls) == 12


def test_wave_failure_rolls_back_completed_reversible_actions_and_skips_later_waves():
    applier = ScriptedApplier({"create:sim.Node/n2": [PermanentError("no capacity")]})
    act, sink = actuator(applier, policy=Policy(max_parallel=1))
    result = act.run(make(n_nodes=3, workloads=2))
    states = {r.action_id: r.state for r in result.results}
    assert states["create:sim.Node/n2"] == "failed"
    assert states["create:sim.Workload/w0"] == "skipped"
    assert [r.action_id for r in result.rollback] == ["delete:sim.Node/n1#undo",
                                                     "delete:sim.Node/n0#undo"]
    assert all(r.rollback for r in result.rollback)
    assert "rollback_initiated" in sink.types()
    assert result.error.startswith("create:sim.Node/n2: permanent: no capacity")


def test_rollback_failure_never_hides_the_original_error():
    applier = ScriptedApplier({"create:sim.Node/n1": [PermanentError("original")],
                               "delete:sim.Node/n0#undo": [PermanentError("undo broke")]})
    act, _ = actuator(applier, policy=Policy(max_parallel=1))
    result = act.run(make(n_nodes=2))
    assert "original" in result.error
    assert result.rollback[0].state == "failed"


def test_continue_mode_skips_only_dependants():
    applier = ScriptedApplier({"create:sim.Node/n0": [PermanentError("x")]})
    act, _ = actuator(applier, policy=Policy(on_failure="continue"))
    plan = make(n_nodes=2)
    result = act.run(plan)
    assert result.count("succeeded") == 1 and not result.rollback


def test_actions_after_the_deadline_are_skipped():
    clock = FakeClock()
    act, _ = actuator(ScriptedApplier(), clock=clock)
    act.deadline = -1.0
    result = act.run(make(n_nodes=2))
    assert result.count("skipped") == 2


@pytest.mark.parametrize("max_parallel", [1, 4])
def test_results_keep_plan_order(max_parallel):
    act, _ = actuator(ScriptedApplier(), policy=Policy(max_parallel=max_parallel))
    plan = make(n_nodes=6)
    result = act.run(plan)
    assert [r.action_id for r in result.results] == [a.id for a in plan.actions]


def test_each_result_is_written_as_its_action_ends_so_a_crash_hides_nothing():
    """A worker killed in the middle of a batch: the actions that ended before are on record
    (rollback reads them), not lost with the batch's in-memory results."""
    from reconciler.core.actuate import Actuator
    from reconciler.core.model import Action
    from reconciler.core.policy import Policy
    from reconciler.testing import FakeClock, MemoryStore, RecordingSink
    from tests.builders import node, want
    from tests.loop_support import Rig

    class DiesOnSecond:
        calls = 0

        def apply(self, action: Action) -> str:
            self.calls += 1
            if self.calls == 2:
                raise KeyboardInterrupt("worker killed")
            return "created"

    plan = Rig.make().cycle([want("sim.Node/a", node()), want("sim.Node/b", node())],
                            Policy(jitter=0), dry_run=True).plans[0]
    store = MemoryStore()
    actuator = Actuator(applier=DiesOnSecond(), policy=Policy(max_parallel=1, jitter=0),
                        events=RecordingSink(), clock=FakeClock(), target="t",
                        correlation_id="c-1", results_log=store)
    with pytest.raises(KeyboardInterrupt):
        actuator.run(plan)
    assert [(r.action_id, r.state) for r in store.results] == [("create:sim.Node/a",
                                                                "succeeded")]
