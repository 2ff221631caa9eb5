"""loop: whole cycles on the simulated provider — statuses, idempotency, safety, breaker, lease."""

from __future__ import annotations

from reconciler.core.policy import Policy, Window
from reconciler.providers.simulated import Faults
from tests.builders import node, want, workload
from tests.loop_support import Rig

FAST = Policy(backoff_base_s=0.1, backoff_cap_s=1, jitter=0)

FLEET = [
    want("sim.Node/n1", node()),
    want("sim.Node/n2", node()),
    want("sim.Workload/web", workload(replicas=3), sla="critical"),
    want("sim.Workload/api", workload(replicas=2)),
]


def seeded(faults=Faults()):
    rig = Rig.make(faults)
    for r in FLEET:
        rig.provider.put(r.key.kind, r.key.name, r.spec)
    return rig


def test_in_sync_fleet_does_nothing():
    rig = seeded()
    report = rig.cycle(FLEET, FAST)
    assert report.outcome.status == "in_sync" and report.outcome.converged
    assert rig.provider.stats.apply_calls == 0


def test_drift_converges_and_a_second_cycle_applies_nothing():
    rig = seeded()
    rig.provider.delete("sim.Node", "n2")
    rig.provider.put("sim.Workload", "web", workload(replicas=1))
    rig.provider.put("sim.Node", "orphan", node())
    report = rig.cycle(FLEET, Policy(max_delete_fraction=0.5, jitter=0))
    assert report.outcome.status == "converged", report.outcome.error
    assert report.outcome.initial_drift.urgency == "critical"
    assert report.outcome.final_drift.drifted == 0
    assert rig.fleet() == {str(r.key): r.spec for r in FLEET}
    calls = rig.provider.stats.apply_calls
    again = rig.cycle(FLEET, FAST)
    assert again.outcome.status == "in_sync" and rig.provider.stats.apply_calls == calls
    assert "converged" in rig.events.types()


def test_dry_run_plans_but_changes_nothing_and_records_nothing():
    rig = seeded()
    rig.provider.delete("sim.Node", "n1")
    report = rig.cycle(FLEET, FAST, dry_run=True)
    assert report.outcome.status == "reported" and report.plans
    assert rig.provider.stats.apply_calls == 0 and not rig.store.cycles


def test_low_urgency_is_reported_unless_policy_auto_applies_it():
    rig = seeded()
    rig.provider.put("sim.Node", "n1", node(labels={"team": "x"}))
    assert rig.cycle(FLEET, FAST).outcome.status == "reported"
    auto = FAST.model_copy(update={"auto_apply": ("low", "high", "critical")})
    assert rig.cycle(FLEET, auto).outcome.status == "converged"


def test_blast_radius_waits_for_approval_of_that_exact_plan():
    rig = seeded()
    for i in range(3):
        rig.provider.put("sim.Node", f"extra{i}", node())
    auto = FAST.model_copy(update={"auto_apply": ("low", "high", "critical")})
    report = rig.cycle(FLEET, auto)
    assert report.outcome.status == "needs_approval"
    assert rig.provider.stats.apply_calls == 0
    approved = rig.cycle(FLEET, auto, approve=report.plans[-1].hash)
    assert approved.outcome.status == "converged"
    assert rig.provider.count("sim.Node") == 2


def test_protected_orphan_is_never_deleted():
    rig = seeded()
    rig.provider.put("sim.Node", "keep", node(), protected=True)
    rig.provider.delete("sim.Node", "n1")  # other drift, so a plan is made and audited
    report = rig.cycle(FLEET, FAST, approve=True, manual=True)
    assert report.outcome.status == "converged"
    assert rig.provider.get("sim.Node", "keep") is not None
    assert any(b.reason.startswith("protected-orphaned") for b in report.plans[0].audit.blocked)


def test_unobserved_kind_never_loses_resources():
    rig = seeded(Faults(fail_kinds=frozenset({"sim.Node"})))
    rig.provider.put("sim.Node", "extra", node())
    report = rig.cycle(FLEET, FAST, approve=True, manual=True)
    assert rig.provider.get("sim.Node", "extra") is not None
    assert report.outcome.status == "failed"
    assert report.snapshot.kinds["sim.Node"].completeness == 0.0


def test_a_sudden_empty_listing_recreates_nothing_until_a_second_cycle_agrees():
    rig = seeded()
    policy = FAST.model_copy(update={"doubt_empty_from": 2})  # FLEET has two nodes
    assert rig.cycle(FLEET, policy).outcome.status == "in_sync"
    rig.provider.faults = Faults(empty_kinds=frozenset({"sim.Node"}))  # "200 OK", nothing in it
    for _ in range(2):  # dry runs record nothing, so they do not wear the doubt down
        assert rig.cycle(FLEET, policy, dry_run=True).snapshot.kinds["sim.Node"].doubted_empty
    doubted = rig.cycle(FLEET, policy, approve=True)
    assert doubted.snapshot.kinds["sim.Node"].doubted_empty
    assert rig.provider.stats.apply_calls == 0  # no creates on a listing nobody believes
    assert doubted.outcome.status == "failed" and "sim.Node observed 0%" in doubted.outcome.error
    believed = rig.cycle(FLEET, policy, approve=True)
    assert not believed.snapshot.kinds["sim.Node"].doubted_empty
    assert rig.provider.stats.apply_calls > 0  # believed now: idempotent creates go out
    assert sorted(k for k in rig.fleet() if k.startswith("sim.Node/")) == \
        ["sim.Node/n1", "sim.Node/n2"]  # and duplicate nothing


def test_failing_cycles_open_the_breaker_which_stays_open_until_reset():
    rig = seeded(Faults(fail_actions=frozenset({"sim.Node/n1"})))
    rig.provider.delete("sim.Node", "n1")
    policy = FAST.model_copy(update={"breaker_failures": 2})
    statuses = [rig.cycle(FLEET, policy).outcome.status for _ in range(3)]
    assert statuses == ["failed", "failed", "breaker_open"]
    assert rig.store.load_breaker("t").state == "open" and "breaker_opened" in rig.events.types()
    calls = rig.provider.stats.apply_calls
    assert rig.cycle(FLEET, policy).outcome.status == "breaker_open"
    assert rig.provider.stats.apply_calls == calls
    rig.provider.faults = Faults()
    assert rig.cycle(FLEET, policy, reset_breaker=True).outcome.status == "converged"
    assert rig.store.load_breaker("t").state == "closed"


def test_a_held_lease_makes_the_second_cycle_back_off():
    rig = seeded()
    rig.provider.delete("sim.Node", "n1")
    assert rig.store.acquire_lease("t", "someone-else", 600)
    report = rig.cycle(FLEET, FAST)
    assert report.outcome.status == "busy" and rig.provider.stats.apply_calls == 0


class Liar:
    """Says every apply worked but changes nothing: the cycle must notice and stop."""

    def __init__(self, inner):
        self.inner = inner

    def kinds(self):
        return self.inner.kinds()

    def observe(self, kind, timeout_s):
        return self.inner.observe(kind, timeout_s)

    def apply(self, action):
        return "updated"


def test_no_progress_stops_the_cycle_early():
    rig = seeded()
    rig.provider.delete("sim.Node", "n1")
    rig.provider = Liar(rig.provider)
    report = rig.cycle(FLEET, FAST.model_copy(update={"max_iterations": 5}))
    assert report.outcome.status == "no_progress" and report.outcome.iterations == 1


def test_settling_period_is_waited_for_before_converged():
    rig = seeded()
    rig.provider.delete("sim.Node", "n1")
    report = rig.cycle(FLEET, FAST.model_copy(update={"settle_seconds": 30}))
    assert report.outcome.status == "converged" and 30 in rig.clock.sleeps


def test_drift_that_comes_back_inside_the_settling_period_is_not_converged():
    """Another controller undoes the fix while we wait to see it hold: not converged."""
    from reconciler.testing import FakeClock

    rig = seeded()
    rig.provider.delete("sim.Node", "n1")

    class Reverting(FakeClock):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            if seconds == 30:
                rig.provider.delete("sim.Node", "n1")

    rig.clock = Reverting()
    report = rig.cycle(FLEET, FAST.model_copy(update={"settle_seconds": 30}))
    assert report.outcome.status == "failed", report.outcome
    assert "came back within the settling period" in (report.outcome.error or "")
    assert report.outcome.counts_as_failure


def test_deadline_bounds_the_cycle():
    rig = seeded(Faults(latency_s=2.0))
    rig.provider.delete("sim.Node", "n1")
    rig.provider.delete("sim.Node", "n2")
    report = rig.cycle(FLEET, FAST.model_copy(update={"cycle_deadline_seconds": 3,
                                                      "max_parallel": 1}))
    assert report.outcome.status == "deadline" and not report.outcome.converged
    assert report.outcome.actions_skipped > 0


def test_closed_window_reports_without_acting():
    rig = seeded()
    rig.provider.delete("sim.Node", "n1")
    never = FAST.model_copy(update={"windows": (Window(days=()),)})
    report = rig.cycle(FLEET, never)
    assert report.outcome.status == "window_closed" and rig.provider.stats.apply_calls == 0


def test_transient_faults_still_converge_within_the_bound():
    rig = seeded(Faults(failure_rate=0.3, throttle_rate=0.2, lose_response_rate=0.1))
    for r in FLEET:
        rig.provider.delete(r.key.kind, r.key.name)
    report = rig.cycle(FLEET, FAST.model_copy(update={"max_attempts": 6}))
    assert report.outcome.status == "converged", report.outcome.error
    assert rig.fleet() == {str(r.key): r.spec for r in FLEET}


def test_history_and_audit_are_recorded_with_the_correlation_id():
    rig = seeded()
    rig.provider.delete("sim.Node", "n1")
    report = rig.cycle(FLEET, FAST)
    cid = report.outcome.correlation_id
    assert rig.store.cycles[("t", cid)].status == "converged"
    assert {p.correlation_id for p in rig.store.plans} == {cid}
    assert rig.store.results and all(r.state == "succeeded" for r in rig.store.results)


def test_a_field_another_controller_keeps_reverting_is_left_alone_and_reported():
    rig = seeded()
    policy = FAST.model_copy(update={"flap_cycles": 3})
    statuses = []
    for _ in range(5):
        rig.provider.put("sim.Workload", "api", workload(replicas=7))  # an autoscaler's say
        statuses.append(rig.cycle(FLEET, policy).outcome)
    assert [o.status for o in statuses] == ["converged"] * 3 + ["in_sync"] * 2
    assert statuses[2].changed_fields == ("sim.Workload/api:replicas",)
    assert statuses[3].flapping == ("sim.Workload/api:replicas",)
    assert statuses[4].flapping == ("sim.Workload/api:replicas",)  # still fighting: still off
    assert rig.provider.get("sim.Workload", "api").spec["replicas"] == 7
    assert "oscillation_detected" in rig.events.types()


def test_a_suppressed_field_is_released_when_the_fleet_agrees_again():
    rig = seeded()
    policy = FAST.model_copy(update={"flap_cycles": 2})
    for _ in range(3):
        rig.provider.put("sim.Workload", "api", workload(replicas=7))
        rig.cycle(FLEET, policy)
    rig.provider.put("sim.Workload", "api", workload(replicas=2))  # the other side gave up
    assert rig.cycle(FLEET, policy).outcome.flapping == ()
    rig.provider.put("sim.Workload", "api", workload(replicas=5))  # a one-off change later
    outcome = rig.cycle(FLEET, policy).outcome
    assert outcome.status == "converged" and outcome.changed_fields


def test_ignore_fields_resolve_a_fight():
    rig = seeded()
    fleet = [r if r.key.name != "api" else r.model_copy(update={"ignore_fields": ("replicas",)})
             for r in FLEET]
    rig.provider.put("sim.Workload", "api", workload(replicas=7))
    assert rig.cycle(fleet, FAST).outcome.status == "in_sync"


def test_a_protected_orphan_is_kept_and_reported_without_failing_the_cycle():
    rig = seeded()
    rig.provider.put("sim.Node", "vault", node(), protected=True)
    policy = FAST.model_copy(update={"breaker_failures": 1})
    report = rig.cycle(FLEET, policy, manual=True)
    assert report.outcome.status == "in_sync" and report.outcome.converged
    assert [str(k) for k in report.diff.protected_orphans] == ["sim.Node/vault"]
    assert rig.provider.get("sim.Node", "vault") is not None
    assert rig.store.load_breaker("t").state == "closed"


def test_deleting_a_protected_resource_takes_two_explicit_steps():
    rig = seeded()
    rig.provider.put("sim.Node", "vault", node(), protected=True)
    vault = want("sim.Node/vault", node(), protected=True)
    step1 = [*FLEET, vault.model_copy(update={"protected": False})]
    report = rig.cycle(step1, FAST, manual=True)
    assert report.outcome.status == "converged"
    assert [c.path for m in report.diff.modifications for c in m.changes] == ["@protected"]
    assert report.outcome.initial_drift.urgency == "low"
    assert rig.provider.get("sim.Node", "vault").protected is False
    rig.cycle(FLEET, FAST.model_copy(update={"max_delete_fraction": 1.0}), manual=True)
    assert rig.provider.get("sim.Node", "vault") is None


def test_a_desired_name_held_by_an_unowned_resource_is_blocked_not_a_failure():
    rig = seeded()
    rig.provider.delete("sim.Node", "n2")
    rig.provider.put("sim.Node", "n2", node(), managed=False)  # someone else's n2
    rig.provider.put("sim.Workload", "web", workload(replicas=1))
    policy = FAST.model_copy(update={"breaker_failures": 2})
    first = rig.cycle(FLEET, policy)
    assert first.outcome.status == "blocked", first.outcome.error
    assert "sim.Node/n2" in (first.outcome.error or "")
    assert rig.fleet()["sim.Workload/web"]["replicas"] == 3  # the rest converged
    blocked = first.plans[-1].audit.blocked
    assert [(str(b.key), b.change) for b in blocked] == [("sim.Node/n2", "create")]
    assert "conflict" in blocked[0].reason and "policy.adopt" in blocked[0].reason
    for _ in range(3):
        assert rig.cycle(FLEET, policy).outcome.status == "blocked"
    assert rig.store.load_breaker("t").state == "closed"  # never counted as a failed cycle
    assert not first.outcome.counts_as_failure


def test_a_cli_cycle_audits_its_action_events_and_who_approved_which_plan():
    rig = seeded()
    rig.provider.put("sim.Node", "stray-1", node())
    rig.provider.put("sim.Node", "stray-2", node())
    policy = FAST.model_copy(update={"max_delete_fraction": 0.1})
    asked = rig.cycle(FLEET, policy, manual=True, actor="cli:alice")
    assert asked.outcome.status == "needs_approval"
    plan_hash = asked.plans[-1].hash
    done = rig.cycle(FLEET, policy, manual=True, actor="cli:alice", approve=plan_hash)
    assert done.outcome.status == "converged", done.outcome.error
    [approval] = [o for o in rig.store.operator if o["what"] == "plan_approved"]
    assert approval["actor"] == "cli:alice" and approval["detail"]["plan_hash"] == plan_hash
    audited = [e.type for e in rig.store.events if e.correlation_id == "c-2"]
    assert audited.count("action_started") == 2 and audited.count("action_completed") == 2


def test_with_policy_adopt_a_name_held_by_an_unowned_resource_is_taken_over():
    """The simulated provider adopts as AWS does: only an update that asks to (policy.adopt)."""
    rig = seeded()
    rig.provider.delete("sim.Node", "n2")
    rig.provider.put("sim.Node", "n2", node(), managed=False)  # someone else's, as desired
    policy = FAST.model_copy(update={"adopt": True})
    first = rig.cycle(FLEET, policy)
    assert first.outcome.status == "converged", first.outcome.error
    assert rig.provider.get("sim.Node", "n2").managed
    assert rig.cycle(FLEET, policy).outcome.status == "in_sync"


def test_a_confirmed_plan_that_changed_before_the_cycle_applies_nothing():
    """A human confirmed plan A at a terminal; the fleet moved, the cycle's plan is B: the core
    applies nothing (the confirmation is bound to the plan hash, not to the command)."""
    rig = seeded()
    rig.provider.delete("sim.Node", "n2")
    shown = rig.cycle(FLEET, FAST, dry_run=True).plans[0]
    rig.provider.delete("sim.Node", "n1")  # meanwhile
    moved = rig.cycle(FLEET, FAST, manual=True, confirmed=shown.hash)
    assert moved.outcome.status == "reported" and "changed since it was confirmed" in (
        moved.outcome.error or "")
    assert rig.provider.get("sim.Node", "n2") is None and rig.provider.get("sim.Node", "n1") is None
    shown = rig.cycle(FLEET, FAST, dry_run=True).plans[0]
    same = rig.cycle(FLEET, FAST, manual=True, confirmed=shown.hash)
    assert same.outcome.status == "converged"
