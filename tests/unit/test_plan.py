"""plan: actions, ordering into waves, safety blocks, approval, validation, hash and audit."""

from __future__ import annotations

from reconciler.core.compare import compare
from reconciler.core.plan import PlanContext, check_preconditions, make_plan
from reconciler.core.policy import Policy
from reconciler.kinds import rules_for
from tests.builders import NOW, have, node, snapshot, want, workload

RULES = rules_for()


def plan_for(desired, observed, policy=Policy(), completeness=None, allow_deletions=True):
    snap = snapshot(*observed, completeness=completeness)
    diff, _ = compare(desired, snap, rules=RULES, policy=policy)
    ctx = PlanContext(target="t", correlation_id="c-1", desired_version="v1", policy=policy,
                      rules=RULES, now=NOW, allow_deletions=allow_deletions)
    return make_plan(diff, snap, ctx)


def ids(plan):
    return [[a.id for a in w.actions] for w in plan.waves]


def test_no_drift_means_an_empty_valid_plan():
    plan = plan_for([want("sim.Node/n", node())], [have("sim.Node/n", node())])
    assert plan.is_empty and plan.validation.ok and not plan.validation.needs_approval


def test_create_update_delete_carry_type_risk_reversibility_and_inverse():
    plan = plan_for(
        [want("sim.Node/new", node()), want("sim.Node/old", node(instance_type="m5.xlarge"))],
        [have("sim.Node/old", node()), have("sim.Node/gone", node()),
         *[have(f"sim.Node/keep{i}", node()) for i in range(10)]],
        policy=Policy(max_delete_fraction=0.5),
    )
    acts = {a.id: a for a in plan.actions}
    create, update, delete = acts["create:sim.Node/new"], acts["update:sim.Node/old"], \
        acts["delete:sim.Node/gone"]
    assert create.reversible and create.inverse and create.inverse.type == "delete"
    assert create.preconditions[0].check == "absent"
    assert update.risk == "medium"  # instance_type is a risky field for nodes
    assert update.inverse and update.inverse.params["spec"]["instance_type"] == "m5.large"
    assert delete.risk == "high" and not delete.reversible and delete.inverse is None
    assert [c["path"] for c in update.params["changes"]] == ["instance_type"]


def test_parents_before_children_and_deletions_last_children_first():
    plan = plan_for(
        [want("sim.Workload/w", workload()), want("sim.Node/n", node()),
         *[want(f"sim.Node/k{i}", node()) for i in range(10)]],
        [have("sim.Workload/old-w", workload()), have("sim.Node/old-n", node()),
         *[have(f"sim.Node/k{i}", node()) for i in range(10)]],
        policy=Policy(max_delete_fraction=1.0),
    )
    assert ids(plan) == [["create:sim.Node/n"], ["create:sim.Workload/w"],
                         ["delete:sim.Workload/old-w"], ["delete:sim.Node/old-n"]]
    assert plan.rollback_points == (0, 1, 2, 3)


def test_declared_depends_on_orders_actions_within_a_kind():
    plan = plan_for([want("sim.Node/b", node(), depends_on=(want("sim.Node/a", node()).key,)),
                     want("sim.Node/a", node())], [])
    assert ids(plan) == [["create:sim.Node/a"], ["create:sim.Node/b"]]
    (b,) = plan.waves[1].actions
    assert b.depends_on == ("create:sim.Node/a",) and b.wave == 1


def test_dependency_cycle_is_rejected():
    a, b = want("sim.Node/a", node()).key, want("sim.Node/b", node()).key
    plan = plan_for([want("sim.Node/a", node(), depends_on=(b,)),
                     want("sim.Node/b", node(), depends_on=(a,))], [])
    assert not plan.validation.ok
    assert "dependency cycle" in plan.validation.errors[0]
    assert "create:sim.Node/a" in plan.validation.errors[0]


def test_no_delete_for_an_incomplete_kind():
    plan = plan_for([], [have("sim.Node/x", node())] + [have(f"sim.Node/k{i}", node())
                                                         for i in range(10)],
                    completeness={"sim.Node": 0.9}, policy=Policy(completeness_threshold=0.5))
    assert not [a for a in plan.actions if a.type == "delete"]
    assert {b.reason.split(" ")[0] for b in plan.audit.blocked} == {"sim.Node"}
    assert plan.audit.counts["blocked"] == 11


def test_kind_below_the_completeness_threshold_gets_no_actions_at_all():
    plan = plan_for([want("sim.Node/n", node())], [], completeness={"sim.Node": 0.5})
    assert plan.is_empty and plan.audit.blocked[0].change == "create"


def test_protected_and_unowned_resources_are_never_deleted():
    plan = plan_for([], [have("sim.Node/p", node(), protected=True),
                         have("sim.Node/u", node(), managed=False)],
                    policy=Policy(max_delete_fraction=1.0))
    assert plan.is_empty
    assert [b.reason.split(":")[0] for b in plan.audit.blocked] == ["protected-orphaned"]


def test_failed_quality_gate_blocks_deletions_only():
    plan = plan_for([want("sim.Node/n", node())], [have("sim.Node/x", node())],
                    policy=Policy(max_delete_fraction=1.0), allow_deletions=False)
    assert [a.type for a in plan.actions] == ["create"]


def test_deletions_beyond_the_blast_radius_need_approval():
    observed = [have(f"sim.Node/n{i}", node()) for i in range(10)]
    plan = plan_for([want(f"sim.Node/n{i}", node()) for i in range(7)], observed,
                    policy=Policy(max_delete_fraction=0.2))
    assert plan.validation.ok and plan.validation.needs_approval
    assert "deletes 3 of 10" in plan.validation.approval_reasons[0]


def test_irreversible_actions_need_approval_when_policy_says_so():
    observed = [have(f"sim.Node/n{i}", node()) for i in range(10)]
    plan = plan_for([want(f"sim.Node/n{i}", node()) for i in range(9)], observed,
                    policy=Policy(approve_irreversible=True))
    assert plan.validation.needs_approval


def test_plan_is_deterministic_tokens_and_hash_are_stable():
    args = ([want("sim.Node/a", node()), want("sim.Workload/w", workload())], [])
    p1, p2 = plan_for(*args), plan_for(*args)
    assert p1.hash == p2.hash
    assert [a.idempotency_token for a in p1.actions] == [a.idempotency_token for a in p2.actions]
    assert len({a.idempotency_token for a in p1.actions}) == 2
    assert len(p1.actions[0].idempotency_token) <= 64


def test_audit_counts_and_estimates():
    plan = plan_for([want(f"sim.Node/n{i}", node()) for i in range(10)], [],
                    policy=Policy(max_parallel=4))
    assert plan.audit.counts["create"] == 10
    assert plan.audit.estimated_duration_s == 4.0 * 3  # ceil(10/4) batches of 4 s
    assert plan.audit.desired_version == "v1" and plan.audit.correlation_id == "c-1"


def test_stale_plan_preconditions_fail_on_a_changed_fleet():
    plan = plan_for([want("sim.Node/n", node(zone="b")), want("sim.Node/m", node())],
                    [have("sim.Node/n", node())])
    assert check_preconditions(plan, snapshot(have("sim.Node/n", node()))) == []
    moved = snapshot(have("sim.Node/n", node(zone="c")), have("sim.Node/m", node()))
    failures = check_preconditions(plan, moved)
    assert any("changed since" in f for f in failures) and any("exists now" in f for f in failures)


def test_plan_round_trips_through_json():
    plan = plan_for([want("sim.Node/a", node())], [have("sim.Node/b", node())],
                    policy=Policy(max_delete_fraction=1.0))
    assert type(plan).model_validate_json(plan.model_dump_json()) == plan


def test_adoption_is_an_update_flagged_adopt():
    plan = plan_for([want("sim.Node/n", node())], [have("sim.Node/n", node(), managed=False)],
                    policy=Policy(adopt=True))
    (act,) = plan.actions
    assert act.type == "update" and act.params["adopt"] is True


def test_the_validator_refuses_to_delete_what_the_snapshot_shows_protected_or_unowned():
    """Defence in depth: a diff made from an older snapshot cannot carry a deletion past the
    snapshot the plan is validated against."""
    observed = [have("sim.Node/p", node()), have("sim.Node/u", node()),
                *[have(f"sim.Node/k{i}", node()) for i in range(8)]]
    policy = Policy(max_delete_fraction=1.0)
    diff, _ = compare([want(f"sim.Node/k{i}", node()) for i in range(8)], snapshot(*observed),
                      rules=RULES, policy=policy)
    now = snapshot(have("sim.Node/p", node(), protected=True),
                   have("sim.Node/u", node(), managed=False), *observed[2:])
    ctx = PlanContext(target="t", correlation_id="c-1", desired_version="v1", policy=policy,
                      rules=RULES, now=NOW)
    plan = make_plan(diff, now, ctx)
    assert not plan.validation.ok
    assert sorted(plan.validation.errors) == [
        "refusing to delete protected or unowned sim.Node/p",
        "refusing to delete protected or unowned sim.Node/u"]


def test_a_kind_missing_from_the_snapshot_counts_as_unobserved():
    policy = Policy(max_delete_fraction=1.0)
    diff, _ = compare([want("sim.Node/n", node())], snapshot(have("sim.Node/x", node())),
                      rules=RULES, policy=policy)
    blind = snapshot(have("sim.Node/x", node()), kinds=("sim.Workload",))
    ctx = PlanContext(target="t", correlation_id="c-1", desired_version="v1", policy=policy,
                      rules=RULES, now=NOW)
    plan = make_plan(diff, blind, ctx)
    assert plan.is_empty
    reasons = {b.change: b.reason for b in plan.audit.blocked}
    assert reasons["create"] == "sim.Node observed 0% < threshold 100%"
    assert reasons["delete"] == ("sim.Node not fully observed (0%); never delete the "
                                 "unobserved")


def test_the_audit_keeps_the_highest_risk_whatever_the_order():
    medium_then_low = plan_for([want("sim.Node/n", node(zone="b")), want("sim.Workload/w",
                                                                          workload())],
                               [have("sim.Node/n", node())])
    assert [a.risk for a in medium_then_low.actions] == ["medium", "low"]
    assert medium_then_low.audit.max_risk == "medium"
    with_delete = plan_for([want("sim.Node/n", node(zone="b"))],
                           [have("sim.Node/n", node()), have("sim.Node/x", node())],
                           policy=Policy(max_delete_fraction=1.0))
    assert [a.risk for a in with_delete.actions] == ["medium", "high"]
    assert with_delete.audit.max_risk == "high"


def test_a_kind_above_the_completeness_threshold_gets_its_actions():
    plan = plan_for([want("sim.Node/n", node())], [], completeness={"sim.Node": 0.9},
                    policy=Policy(completeness_threshold=0.5))
    assert [a.id for a in plan.actions] == ["create:sim.Node/n"] and not plan.audit.blocked


def test_the_undo_of_a_create_is_an_irreversible_delete():
    (create,) = plan_for([want("sim.Node/n", node())], []).actions
    assert create.inverse is not None and create.inverse.type == "delete"
    assert create.inverse.reversible is False and create.inverse.risk == "high"


def test_only_conflicts_is_false_when_anything_else_is_blocked():
    from reconciler.core.plan import only_conflicts

    conflict = plan_for([want("sim.Node/n", node())], [have("sim.Node/n", node(),
                                                            managed=False)])
    assert only_conflicts(conflict)
    # "app.Thing observed 0% ..." sorts before "conflict: ..."
    snap = snapshot()
    diff, _ = compare([want("app.Thing/t", {"size": 1})], snap, rules=RULES, policy=Policy(),
                      kinds=["app.Thing"])
    ctx = PlanContext(target="t", correlation_id="c-1", desired_version="v1", policy=Policy(),
                      rules=RULES, now=NOW)
    unseen = make_plan(diff, snap, ctx)
    assert unseen.is_empty and unseen.audit.blocked and not only_conflicts(unseen)
    assert not only_conflicts(plan_for([want("sim.Node/n", node())], []))
