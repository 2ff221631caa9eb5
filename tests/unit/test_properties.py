"""Properties of whole cycles (hypothesis, derandomized so every run checks the same cases)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reconciler.catalogue import rules_for
from reconciler.core.compare import compare
from reconciler.core.model import Plan, Snapshot
from reconciler.core.plan import PlanContext, make_plan
from reconciler.core.policy import Policy
from reconciler.providers.simulated import Faults
from tests.builders import NOW, have, snapshot
from tests.loop_support import Rig
from tests.strategies import desired_from, fleets

SETTINGS = settings(derandomize=True, max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
EAGER = Policy(auto_apply=("low", "high", "critical"), max_delete_fraction=1.0, max_attempts=10,
               backoff_base_s=0.01, backoff_cap_s=0.1, jitter=0, max_iterations=3,
               allow_empty_desired=True)  # random fleets include an empty desired state
UNOWNED = {"sim.Node/theirs": {"pool": "x"}}


def rig_with(current, faults=Faults(), seed=0):
    rig = Rig.make(faults, seed=seed)
    for key, spec in current.items():
        kind, name = key.split("/")
        rig.provider.put(kind, name, spec)
    rig.provider.put("sim.Node", "theirs", UNOWNED["sim.Node/theirs"], managed=False)
    return rig


@SETTINGS
@given(fleets, fleets, st.floats(0, 0.2), st.floats(0, 0.2), st.integers(0, 2**16))
def test_a_cycle_converges_under_transient_faults_and_a_second_applies_nothing(
    desired, current, fail, lose, seed
):
    faults = Faults(failure_rate=fail, lose_response_rate=lose, throttle_rate=0.1)
    rig = rig_with(current, faults, seed)
    report = rig.cycle(desired_from(desired), EAGER, approve=True)
    assert report.outcome.converged, report.outcome
    assert report.outcome.iterations <= EAGER.max_iterations
    assert rig.fleet() == desired
    assert rig.provider.get("sim.Node", "theirs").spec == UNOWNED["sim.Node/theirs"]
    rig.provider.faults = Faults()
    calls = rig.provider.stats.apply_calls
    again = rig.cycle(desired_from(desired), EAGER, approve=True)
    assert again.outcome.status == "in_sync" and rig.provider.stats.apply_calls == calls


@SETTINGS
@given(fleets, fleets, st.data())
def test_a_wave_failure_with_rollback_restores_the_wave_to_its_starting_state(
    desired, current, data
):
    probe = rig_with(current)
    planned = probe.cycle(desired_from(desired), EAGER, dry_run=True).plans
    forward = [a for a in (planned[0].actions if planned else ()) if a.reversible]
    event("has reversible actions" if forward else "nothing reversible to fail")
    if not forward:
        return
    victim = data.draw(st.sampled_from(forward))
    rig = rig_with(current, Faults(fail_actions=frozenset({str(victim.target)})))
    before = rig.fleet()
    report = rig.cycle(desired_from(desired), EAGER.model_copy(
        update={"max_parallel": data.draw(st.integers(1, 4))}), approve=True)
    assert report.outcome.status == "failed"
    after = rig.fleet()
    touched = [a for a in report.plans[0].actions if a.wave >= victim.wave]
    for act in touched:
        key = str(act.target)
        assert after.get(key) == before.get(key), (key, act.id)


@SETTINGS
@given(fleets, fleets, st.dictionaries(st.sampled_from(["sim.Node", "sim.Workload"]),
                                       st.floats(0, 1), max_size=2))
def test_no_delete_is_ever_planned_for_an_incomplete_kind(desired, current, completeness):
    snap = snapshot(*[have(k, v) for k, v in sorted(current.items())], completeness=completeness)
    plan = _plan(desired, snap)
    for act in plan.actions:
        if act.type == "delete":
            assert snap.is_complete(act.target.kind)


@SETTINGS
@given(fleets, fleets)
def test_models_round_trip_through_json(desired, current):
    snap = snapshot(*[have(k, v) for k, v in sorted(current.items())])
    plan = _plan(desired, snap)
    assert Plan.model_validate_json(plan.model_dump_json()) == plan
    assert Snapshot.model_validate_json(snap.model_dump_json()) == snap
    rig = rig_with(current, seed=random.Random(len(desired)).randint(0, 99))
    report = rig.cycle(desired_from(desired), EAGER, approve=True)
    out = report.outcome
    assert type(out).model_validate_json(out.model_dump_json()) == out


def _plan(desired, snap):
    policy = EAGER.model_copy(update={"completeness_threshold": 0.0})
    diff, _ = compare(desired_from(desired), snap, rules=rules_for(), policy=policy)
    ctx = PlanContext(target="t", correlation_id="c", desired_version="v", policy=policy,
                      rules=rules_for(), now=NOW)
    return make_plan(diff, snap, ctx)
