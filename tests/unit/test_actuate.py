"""actuate: state machine, bounded concurrency, retries with backoff, rollback, events."""

from __future__ import annotations

import random
import threading

import pytest

from reconciler.catalogue import rules_for
from reconciler.core.actuate import Actuator, backoff_delay
from reconciler.core.compare import compare
from reconciler.core.errors import PermanentError, TemporaryError
from reconciler.core.plan import PlanContext, make_plan
from reconciler.core.policy import Policy
from reconciler.testing import FakeClock, RecordingSink
from tests.builders import NOW, have, key, node, snapshot, want

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


def test_the_last_attempt_is_not_followed_by_a_sleep():
    """The retry bound: max_attempts calls, and a backoff only between two of them."""
    clock = FakeClock()
    applier = ScriptedApplier({"create:sim.Node/n0": [TemporaryError("x")] * 10})
    act, _ = actuator(applier, policy=Policy(max_attempts=3, backoff_base_s=2, jitter=0),
                      clock=clock)
    result = act.run(make(n_nodes=1))
    assert applier.calls == ["create:sim.Node/n0"] * 3 and clock.sleeps == [2.0, 4.0]
    assert result.results[0].error == "temporary: x"


def test_a_temporary_error_past_the_deadline_is_not_retried():
    clock = FakeClock()

    class LateApplier(ScriptedApplier):
        def apply(self, action):
            clock.advance(10)  # the call itself outlives the cycle deadline
            return super().apply(action)

    applier = LateApplier({"create:sim.Node/n0": [TemporaryError("slow")] * 5})
    act, _ = actuator(applier, clock=clock)
    act.deadline = 5.0
    result = act.run(make(n_nodes=1))
    assert result.results[0].state == "failed" and result.results[0].attempts == 1
    assert clock.sleeps == []


def test_dependants_of_a_failed_action_are_skipped_and_never_called():
    applier = ScriptedApplier({"create:sim.Node/a": [PermanentError("quota")]})
    act, sink = actuator(applier, policy=Policy(on_failure="continue", jitter=0))
    plan = dependent_plan()
    result = act.run(plan)
    states = {r.action_id: (r.state, r.error) for r in result.results}
    assert states["create:sim.Node/b"] == ("skipped", "a dependency failed")
    assert states["create:sim.Node/c"] == ("skipped", "a dependency failed")  # b's dependant
    assert states["create:sim.Node/free"][0] == states["create:sim.Node/d"][0] == "succeeded"
    assert "create:sim.Node/b" not in applier.calls and "create:sim.Node/c" not in applier.calls
    assert result.error.startswith("create:sim.Node/a: permanent: quota")


def test_in_rollback_mode_later_waves_are_skipped_with_the_reason():
    applier = ScriptedApplier({"create:sim.Node/a": [PermanentError("quota")]})
    act, _ = actuator(applier, policy=Policy(on_failure="rollback", jitter=0))
    result = act.run(dependent_plan())
    states = {r.action_id: (r.state, r.error) for r in result.results}
    assert states["create:sim.Node/c"] == ("skipped", "an earlier wave failed")
    assert states["create:sim.Node/d"] == ("skipped", "an earlier wave failed")
    assert [r.action_id for r in result.rollback] == ["delete:sim.Node/free#undo"]


def test_progress_events_count_every_action_done_out_of_the_total():
    applier = ScriptedApplier({"create:sim.Node/a": [PermanentError("quota")]})
    act, sink = actuator(applier, policy=Policy(on_failure="continue", max_parallel=1,
                                                jitter=0))
    act.run(dependent_plan())
    ended = [e.detail for e in sink.events if e.type in ("action_completed", "action_failed")]
    # a and free end first (one worker), b is skipped, d ends, c is skipped: 5 in all
    assert [(d["done"], d["total"]) for d in ended] == [(1, 5), (2, 5), (4, 5)]
    assert [d["state"] for d in ended] == ["failed", "succeeded", "succeeded"]
    assert ended[0]["attempts"] == 1 and "quota" in ended[0]["error"]


def test_rollback_actions_add_to_the_total_and_report_the_original_error():
    applier = ScriptedApplier({"create:sim.Node/n1": [PermanentError("original")]})
    act, sink = actuator(applier, policy=Policy(max_parallel=1, jitter=0))
    act.run(make(n_nodes=2))
    (started,) = [e for e in sink.events if e.type == "rollback_initiated"]
    assert started.detail == {"wave": 0, "actions": 1, "point": 0, "waves": [0],
                              "error": "create:sim.Node/n1: permanent: original"}
    last = [e for e in sink.events if e.type == "action_completed"][-1]
    assert last.action_id == "delete:sim.Node/n0#undo"
    assert (last.detail["done"], last.detail["total"]) == (3, 3)


def dependent_plan():
    """Wave 0: a, free; wave 1: b (needs a), d (needs free); wave 2: c (needs b)."""
    desired = [want("sim.Node/a", node()), want("sim.Node/free", node()),
               want("sim.Node/b", node(), depends_on=(key("sim.Node/a"),)),
               want("sim.Node/c", node(), depends_on=(key("sim.Node/b"),)),
               want("sim.Node/d", node(), depends_on=(key("sim.Node/free"),))]
    snap = snapshot()
    policy = Policy()
    diff, _ = compare(desired, snap, rules=RULES, policy=policy)
    ctx = PlanContext(target="t", correlation_id="c-1", desired_version="v1", policy=policy,
                      rules=RULES, now=NOW)
    plan = make_plan(diff, snap, ctx)
    assert [[a.id for a in w.actions] for w in plan.waves] == [
        ["create:sim.Node/a", "create:sim.Node/free"], ["create:sim.Node/b", "create:sim.Node/d"],
        ["create:sim.Node/c"]]
    return plan


def test_jitter_shortens_the_delay_by_a_random_share_rounded_to_microseconds():
    policy = Policy(backoff_base_s=2, backoff_cap_s=30, jitter=0.5)
    share = random.Random(0).random()
    assert backoff_delay(1, policy, random.Random(0), None) == round(2 * (1 - 0.5 * share), 6)
    assert backoff_delay(1, policy, random.Random(0), None) != 2 * (1 - 0.5 * share)


def test_the_first_failure_of_a_wave_is_the_error():
    applier = ScriptedApplier({"create:sim.Node/n0": [PermanentError("first")],
                               "create:sim.Node/n1": [PermanentError("second")]})
    act, _ = actuator(applier, policy=Policy(max_parallel=1, on_failure="continue"))
    assert act.run(make(n_nodes=2)).error == "create:sim.Node/n0: permanent: first"


def test_an_action_at_the_deadline_is_skipped_with_no_attempt():
    act, sink = actuator(ScriptedApplier())
    act.deadline = 0.0  # the fake clock starts at 0: the deadline is now
    (result,) = act.run(make(n_nodes=1)).results
    assert (result.state, result.attempts, result.error) == ("skipped", 0,
                                                             "cycle deadline reached")
    assert sink.events == []


def test_duration_is_measured_on_the_monotonic_clock_from_the_action_start():
    clock = FakeClock()
    clock.advance(100.0)

    class Slow(ScriptedApplier):
        def apply(self, action):
            clock.advance(0.1234567)
            return super().apply(action)

    act, _ = actuator(Slow(), clock=clock)
    (result,) = act.run(make(n_nodes=1)).results
    assert result.duration_s == 0.123457


def test_rollback_in_another_process_counts_its_own_actions():
    """rollback_actions without run(): a later task undoing a wave whose batches ran apart."""
    plan = make(n_nodes=1)
    act, sink = actuator(ScriptedApplier())
    act.rollback_actions(0, plan.actions, "create:sim.Node/x: permanent: no")
    (done,) = [e for e in sink.events if e.type == "action_completed"]
    assert done.action_id == "delete:sim.Node/n0#undo"
    assert (done.detail["done"], done.detail["total"]) == (1, 1)


def test_a_rollback_point_is_named_never_taken_for_the_wave_by_position():
    """``wave`` and ``point`` are both wave numbers: ``point`` is keyword-only so a caller
    cannot swap them (``rollback_actions(2, undo, error, 1)`` is refused)."""
    act, _ = actuator(ScriptedApplier())
    with pytest.raises(TypeError):
        act.rollback_actions(2, [], "e", 1)  # type: ignore[misc]
    assert act.rollback_actions(2, [], "e", point=1) == []


def test_with_a_ledger_only_a_create_claims_a_token_and_a_delete_ends_a_pending_create():
    from reconciler.core.model import PendingCreate
    from reconciler.testing import MemoryStore

    ledger = MemoryStore()
    stale = PendingCreate(key=key("sim.Node/old"), token="tok", base_token="b",
                          correlation_id="c-0", started_at=NOW)
    kept = PendingCreate(key=key("sim.Node/n0"), token="kept", base_token="x",
                         correlation_id="c-0", started_at=NOW)
    ledger.begin_create("t", stale)
    ledger.begin_create("t", kept)
    plan = make(n_nodes=1, observed=[have("sim.Node/old", node()),
                                     have("sim.Node/n0", node(zone="z"))],
                policy=Policy(max_delete_fraction=1.0))
    assert [a.id for a in plan.actions] == ["update:sim.Node/n0", "delete:sim.Node/old"]
    sent = []

    class Recording(ScriptedApplier):
        def apply(self, action):
            sent.append((action.id, action.idempotency_token))
            return super().apply(action)

    act, _ = actuator(Recording())
    act.ledger = ledger
    result = act.run(plan)
    assert result.ok
    assert sorted(sent) == sorted((a.id, a.idempotency_token) for a in plan.actions)
    assert set(ledger.pending) == {("t", key("sim.Node/n0"))}  # an update ends no create


def test_one_worker_means_one_call_at_a_time():
    applier = ScriptedApplier(delay=0.01)
    act, _ = actuator(applier, policy=Policy(max_parallel=1))
    act.run(make(n_nodes=3))
    assert applier.peak == 1


def test_an_action_marked_irreversible_is_never_undone_even_with_an_inverse():
    (create,) = make(n_nodes=1).actions
    act, sink = actuator(ScriptedApplier())
    undone = act.rollback_actions(0, [create.model_copy(update={"reversible": False})], "e")
    assert undone == [] and sink.events[-1].detail["actions"] == 0
