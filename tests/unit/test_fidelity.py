"""fidelity under load: throttles, retries and page latency degrade a snapshot, and a degraded
snapshot changes the cycle: no deletions, fewer actions at once, slower pokes."""

from __future__ import annotations

import threading

from reconciler.catalogue import rules_for
from reconciler.core.compare import compare
from reconciler.core.fidelity import degraded, parallel_for, poke_interval, strain
from reconciler.core.model import KindStatus, Observation
from reconciler.core.plan import PlanContext, make_plan
from reconciler.core.policy import FidelityPolicy, Policy
from reconciler.core.sense import SenseOptions, sense
from reconciler.orchestration.actuation import batches_for
from reconciler.providers.aws.calls import AwsStats
from reconciler.providers.simulated import Faults
from reconciler.testing import FakeClock
from tests.builders import NOW, have, node, snapshot, want
from tests.loop_support import Rig
from tests.unit.test_actuate import ScriptedApplier, actuator

RULES = rules_for()
KINDS = ("sim.Node", "sim.Workload")


def loaded(snap, kind="sim.Node", **facts):
    status = snap.kinds[kind].model_copy(update=facts)
    return snap.model_copy(update={"kinds": {**snap.kinds, kind: status}})


def test_a_kind_under_load_names_each_reason_and_a_quiet_one_none():
    limits = FidelityPolicy(throttles=2, retries=3, page_latency_s=1.0)
    quiet = KindStatus(kind="k", count=1, completeness=1.0, fidelity="full", latency_s=0.1,
                       throttled=1, retries=2, page_latency_s=1.0)
    assert strain(quiet, limits) == ()
    busy = quiet.model_copy(update={"throttled": 2, "retries": 3, "page_latency_s": 1.5})
    assert [r.split()[1] for r in strain(busy, limits)] == ["throttled", "retried", "pages"]


def test_degradation_caps_parallelism_blocks_deletions_and_slows_pokes():
    policy = Policy(max_parallel=8, fidelity=FidelityPolicy(max_parallel=2, poke_factor=4))
    assert not degraded(snapshot(), policy).degraded
    deg = degraded(loaded(snapshot(), throttled=5), policy)
    assert deg.degraded and deg.max_parallel == 2 and not deg.allow_deletions
    assert deg.poke_factor == 4 and poke_interval(10.0, deg.poke_factor) == 40.0
    # never more than the policy's own parallelism
    assert degraded(loaded(snapshot(), throttled=5), Policy(max_parallel=1)).max_parallel == 1


def test_sense_marks_a_kind_degraded_only_past_the_policy_thresholds():
    class Observer:
        def observe(self, kind, timeout_s):
            return Observation(kind=kind, resources=(), completeness=1.0,
                               retries=4 if kind == "sim.Node" else 1, page_latency_s=0.2)

    options = SenseOptions(deadline_s=5.0, fidelity=FidelityPolicy(retries=3))
    snap = sense(Observer(), list(KINDS), target="t", correlation_id="c", clock=FakeClock(),
                 options=options)
    assert snap.kinds["sim.Node"].fidelity == "degraded"
    assert snap.kinds["sim.Node"].retries == 4 and snap.kinds["sim.Node"].page_latency_s == 0.2
    assert snap.kinds["sim.Workload"].fidelity == "full" and snap.fidelity == "degraded"


def plan_for(snap, policy=Policy()):
    desired = [want("sim.Node/n0", node())]
    diff, _ = compare(desired, snap, rules=RULES, policy=policy)
    ctx = PlanContext(target="t", correlation_id="c", desired_version="v1", policy=policy,
                      rules=RULES, now=NOW)
    return make_plan(diff, snap, ctx)


def test_a_plan_from_a_degraded_snapshot_deletes_nothing_and_says_why():
    fleet = snapshot(have("sim.Node/old", node()), *(have(f"sim.Node/k{i}", node())
                                                     for i in range(9)))
    policy = Policy(max_delete_fraction=1.0)
    full = plan_for(fleet, policy)
    assert full.audit.counts["delete"] == 10 and not full.degradation.degraded
    plan = plan_for(loaded(fleet, throttled=3), policy)
    assert plan.audit.counts["delete"] == 0 and plan.audit.counts["create"] == 1
    reasons = {b.reason for b in plan.audit.blocked}
    assert len(reasons) == 1 and reasons.pop().startswith("observation degraded: sim.Node "
                                                          "throttled 3x")
    assert plan.degradation.max_parallel == 2 and parallel_for(plan, policy) == 2


def test_the_actuator_runs_a_degraded_plan_with_fewer_actions_at_once():
    desired = [want(f"sim.Node/n{i}", node()) for i in range(12)]
    policy = Policy(max_parallel=6, fidelity=FidelityPolicy(max_parallel=2))
    snap = loaded(snapshot(), retries=9)
    diff, _ = compare(desired, snap, rules=RULES, policy=policy)
    plan = make_plan(diff, snap, PlanContext(target="t", correlation_id="c",
                                             desired_version="v1", policy=policy, rules=RULES,
                                             now=NOW))
    applier = ScriptedApplier(delay=0.02)
    act, _ = actuator(applier, policy=policy)
    assert act.run(plan).ok and len(applier.calls) == 12
    assert applier.peak <= 2
    full = plan.model_copy(update={"degradation": degraded(snapshot(), policy)})
    applier = ScriptedApplier(delay=0.02)
    actuator(applier, policy=policy)[0].run(full)
    assert applier.peak > 2  # the same plan observed at full fidelity runs wider


def test_airflow_batches_of_a_degraded_wave_are_at_most_its_parallelism():
    desired = [want(f"sim.Node/n{i}", node()) for i in range(30)]
    policy = Policy(fidelity=FidelityPolicy(max_parallel=2))
    for snap, most in ((snapshot(), 6), (loaded(snapshot(), throttled=1), 2)):
        diff, _ = compare(desired, snap, rules=RULES, policy=policy)
        plan = make_plan(diff, snap, PlanContext(target="t", correlation_id="c",
                                                 desired_version="v1", policy=policy,
                                                 rules=RULES, now=NOW))
        batches = batches_for(plan, "ref", batch_size=5)
        assert len(batches) == most
        assert sum(b.end - b.start for b in batches) == 30


def test_the_simulated_provider_reports_its_injected_throttles_and_latency():
    from reconciler.providers.simulated import seed_demo
    from tests.builders import desired_state

    rig = Rig.make(Faults(throttle_rate=0.9, latency_s=0.01), seed=3)
    seed_demo(rig.provider, desired_state(*(want(f"sim.Node/n{i}", node()) for i in range(120))))
    obs = rig.provider.observe("sim.Node", 60.0)  # three pages, each attempt throttled at 90%
    assert obs.throttled > 0 and obs.retries > 0 and obs.page_latency_s >= 0.01


class Throttled:
    """The simulated provider, each listing throttled ``throttled`` times; from listing
    ``show_from`` on it lists what it holds (before, nothing: creates in flight)."""

    def __init__(self, provider, throttled=2, show_from=0):
        self.provider, self.throttled, self.show_from, self.seen = provider, throttled, show_from, 0

    def __getattr__(self, name):
        return getattr(self.provider, name)

    def observe(self, kind, timeout_s):
        obs = self.provider.observe(kind, timeout_s)
        self.seen += 1
        shown = obs.resources if self.seen >= self.show_from else ()
        return obs.model_copy(update={"resources": shown, "throttled": self.throttled})


def test_a_cycle_under_load_deletes_nothing_and_its_outcome_says_so():
    rig = Rig.make()
    rig.cycle([want("sim.Node/a", node()), want("sim.Node/b", node())])
    rig.provider = Throttled(rig.provider)
    report = rig.cycle([want("sim.Node/a", node())], Policy(max_delete_fraction=1.0),
                       manual=True)
    assert "sim.Node/b" in rig.fleet()
    assert report.outcome.fidelity == "degraded" and report.outcome.degraded
    blocked = [b.reason for p in report.plans for b in p.audit.blocked]
    assert blocked and all(r.startswith("observation degraded") for r in blocked)
    finished = [e for e in rig.events.events if e.type == "cycle_finished"][-1]
    assert finished.detail["fidelity"] == "degraded" and finished.detail["degraded"]


def test_the_cli_polls_for_creates_in_flight_less_often_under_load():
    for throttles, first in ((100, 2.0), (1, 6.0)):
        rig = Rig.make()
        rig.provider = Throttled(rig.provider, show_from=7)
        policy = Policy(in_flight_poll_seconds=2.0,
                        fidelity=FidelityPolicy(throttles=throttles, poke_factor=3))
        rig.cycle([want("sim.Node/a", node())], policy)
        assert rig.clock.sleeps and rig.clock.sleeps[0] == first


def test_aws_stats_tell_each_listing_thread_its_own_load():
    stats = AwsStats()
    seen = {}

    def listing(name, throttles):
        with stats.tally() as load:
            for _ in range(throttles):
                stats.failed("ThrottlingException", "ec2.describe_instances")
            stats.retried_by_sdk({"ResponseMetadata": {"RetryAttempts": 2}})
            stats.page_read(0.5)
        seen[name] = load

    threads = [threading.Thread(target=listing, args=(n, t)) for n, t in (("a", 1), ("b", 3))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (seen["a"].throttles, seen["b"].throttles) == (1, 3)
    assert seen["a"].retries == 2 and seen["b"].page_latency_s == 0.5
    assert stats.total_throttles == 4
