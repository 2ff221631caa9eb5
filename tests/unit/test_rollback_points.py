"""rollback points: the plan names them (policy ``rollback``), and a failure restores the
fleet to the latest one at or before the failed wave, whatever the driver."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.catalogue import rules_for
from reconciler.core.actuate import Actuator
from reconciler.core.compare import compare
from reconciler.core.errors import PermanentError
from reconciler.core.plan import PlanContext, make_plan
from reconciler.core.policy import Policy
from reconciler.core.rollback import restore_point, rollback_points
from reconciler.core.sense import sense
from reconciler.providers.simulated import SimulatedProvider, seed_demo
from reconciler.testing import FakeClock, RecordingSink
from tests.builders import NOW, desired_state, node, want, workload

RULES = rules_for()
KINDS = ["sim.Node", "sim.Workload"]


def test_the_plan_names_a_point_before_every_wave_or_only_before_the_plan():
    assert rollback_points(3, Policy()) == (0, 1, 2)
    assert rollback_points(3, Policy(rollback="plan")) == (0,)
    assert rollback_points(0, Policy(rollback="plan")) == ()


class Failing:
    """The provider, but the forward action ``fail`` is refused for good."""

    def __init__(self, provider, fail):
        self.provider, self.fail = provider, fail

    def apply(self, action):
        if action.id == self.fail:
            raise PermanentError("refused")
        return self.provider.apply(action)


def world(initial):
    provider = SimulatedProvider(":memory:", rng=random.Random(0), page_size=50)
    seed_demo(provider, desired_state(*initial))
    return provider


def fleet(provider):
    return {str(r.key): r.spec for r in provider.resources()}


def planned(provider, desired, policy):
    snap = sense(provider, KINDS, target="t", correlation_id="c", clock=FakeClock())
    diff, _ = compare(desired, snap, rules=RULES, policy=policy)
    return make_plan(diff, snap, PlanContext(target="t", correlation_id="c",
                                             desired_version="v1", policy=policy, rules=RULES,
                                             now=NOW))


def run(provider, plan, policy, fail=""):
    sink = RecordingSink()
    result = Actuator(applier=Failing(provider, fail), policy=policy, events=sink,
                      clock=FakeClock(), target="t", correlation_id="c",
                      rng=random.Random(0)).run(plan)
    return result, sink


def chain(n_nodes, workloads):
    """Nodes in a dependency chain (one wave each), then workloads (a wave after them)."""
    out = [want("sim.Node/n0", node())]
    out += [want(f"sim.Node/n{i}", node(), depends_on=(want(f"sim.Node/n{i - 1}", {}).key,))
            for i in range(1, n_nodes)]
    return out + [want(f"sim.Workload/w{i}", workload()) for i in range(workloads)]


def test_rollback_plan_undoes_every_wave_of_the_pass_and_the_audit_names_the_point():
    initial = [want("sim.Node/n1", node(state="stopped"))]
    desired = chain(3, 2)
    for policy, point, left in (
            (Policy(max_parallel=1, jitter=0), 3, {"sim.Node/n0", "sim.Node/n1",
                                                   "sim.Node/n2"}),
            (Policy(max_parallel=1, jitter=0, rollback="plan"), 0, {"sim.Node/n1"})):
        provider = world(initial)
        plan = planned(provider, desired, policy)
        assert len(plan.waves) == 4
        result, sink = run(provider, plan, policy, fail="create:sim.Workload/w1")
        assert result.error and restore_point(plan, 3) == point
        assert set(fleet(provider)) == left
        started = [e for e in sink.events if e.type == "rollback_initiated"]
        assert [(e.detail["wave"], e.detail["point"]) for e in started] == [(3, point)]
        if point == 0:  # n1 was updated (stopped -> running): the undo restored it
            assert fleet(provider)["sim.Node/n1"]["state"] == "stopped"
            assert [r.action_id for r in result.rollback][-1] == "delete:sim.Node/n0#undo"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_nodes=st.integers(1, 4), workloads=st.integers(0, 3),
       stopped=st.sets(st.integers(0, 3)), per=st.sampled_from(["wave", "plan"]),
       data=st.data())
def test_after_a_failure_the_fleet_is_what_it_was_at_the_restored_point(
        n_nodes, workloads, stopped, per, data):
    """Every action is reversible here (no deletions): the fleet after rollback equals a fleet
    on which only the waves before the restored point ran."""
    policy = Policy(max_parallel=2, jitter=0, rollback=per)
    initial = [want(f"sim.Node/n{i}", node(state="stopped")) for i in sorted(stopped)
               if i < n_nodes]
    desired = chain(n_nodes, workloads)
    provider = world(initial)
    plan = planned(provider, desired, policy)
    fail = data.draw(st.sampled_from([a for a in plan.actions]))
    result, _ = run(provider, plan, policy, fail=fail.id)
    assert result.error and all(r.state == "succeeded" for r in result.rollback)
    point = restore_point(plan, fail.wave)
    reference = world(initial)
    run(reference, plan.model_copy(update={"waves": plan.waves[:point]}), policy)
    assert fleet(provider) == fleet(reference)
