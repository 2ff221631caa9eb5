"""plan: actions, ordering into waves, safety blocks, approval, validation, hash and audit."""

from __future__ import annotations

from reconciler.catalogue import rules_for
from reconciler.core.compare import compare
from reconciler.core.plan import PlanContext, check_preconditions, make_plan
from reconciler.core.policy import Policy
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
    kept = plan_for([], [have("sim.Node/p", node(), protected=True)])  # "protected-orphaned"
    assert kept.is_empty and kept.audit.blocked and not only_conflicts(kept)


def test_deletions_are_allowed_unless_the_context_says_otherwise():
    snap = snapshot(have("sim.Node/x", node()))
    diff, _ = compare([], snap, rules=RULES, policy=Policy(max_delete_fraction=1.0))
    ctx = PlanContext(target="t", correlation_id="c-1", desired_version="v1",
                      policy=Policy(max_delete_fraction=1.0), rules=RULES, now=NOW)
    assert [a.id for a in make_plan(diff, snap, ctx).actions] == ["delete:sim.Node/x"]


def test_a_blocked_change_does_not_stop_the_changes_after_it():
    plan = plan_for([want("sim.Workload/w", workload()), want("sim.Node/n", node()),
                     want("sim.Workload/v", workload(replicas=1)),
                     want("sim.Node/m", node(zone="b"))],
                    [have("sim.Workload/v", workload()), have("sim.Node/m", node())],
                    completeness={"sim.Workload": 0.5})
    assert [a.id for a in plan.actions] == ["create:sim.Node/n", "update:sim.Node/m"]
    assert [(b.key.name, b.change) for b in plan.audit.blocked] == [("w", "create"),
                                                                    ("v", "update")]


def test_idempotency_tokens_are_32_hex_characters():
    plan = plan_for([want("sim.Node/a", node())], [])
    assert len(plan.actions[0].idempotency_token) == 32


def test_deleting_exactly_the_allowed_fraction_needs_no_approval():
    observed = [have(f"sim.Node/n{i}", node()) for i in range(10)]
    plan = plan_for([want(f"sim.Node/n{i}", node()) for i in range(8)], observed,
                    policy=Policy(max_delete_fraction=0.2))
    assert len(plan.actions) == 2 and not plan.validation.needs_approval


def test_a_partly_observed_kind_names_how_much_was_seen():
    plan = plan_for([], [have("sim.Node/x", node())], completeness={"sim.Node": 0.5},
                    policy=Policy(completeness_threshold=0.0))
    (blocked,) = plan.audit.blocked
    assert blocked.reason.startswith("sim.Node not fully observed (50%)")


def test_a_plan_context_is_frozen():
    import dataclasses

    import pytest

    ctx = PlanContext(target="t", correlation_id="c-1", desired_version="v1", policy=Policy(),
                      rules=RULES, now=NOW)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.target = "other"  # type: ignore[misc]


def test_a_measured_estimate_is_used_rounded_to_milliseconds():
    snap = snapshot()
    diff, _ = compare([want("sim.Node/n", node())], snap, rules=RULES, policy=Policy())
    ctx = PlanContext(target="t", correlation_id="c-1", desired_version="v1", policy=Policy(),
                      rules=RULES, now=NOW, estimates={("sim.Node", "create"): 1.23456})
    plan = make_plan(diff, snap, ctx)
    (act,) = plan.actions
    assert act.estimated_duration_s == 1.235 and plan.audit.estimated_duration_s == 1.235


def test_updates_are_reversible_and_counted_as_updates_not_deletions():
    observed = [have(f"sim.Node/n{i}", node(), protected=True) for i in range(3)]
    observed += [have(f"sim.Node/k{i}", node()) for i in range(7)]
    plan = plan_for([want(f"sim.Node/n{i}", node(zone="b"), protected=True) for i in range(3)]
                    + [want(f"sim.Node/k{i}", node()) for i in range(7)], observed,
                    policy=Policy(max_delete_fraction=0.1))
    assert [a.type for a in plan.actions] == ["update"] * 3
    assert all(a.reversible for a in plan.actions)
    assert plan.validation.ok and not plan.validation.needs_approval
    assert plan.audit.counts == {"create": 0, "update": 3, "delete": 0, "blocked": 0}


def test_kind_order_follows_the_parents_not_the_names():
    """A child kind whose name sorts before its parent's: barriers are per kind, not ranges."""
    from reconciler.core.kinds import KindRules

    rules = {"a.Child": KindRules(kind="a.Child", parents=("b.Parent",)),
             "b.Parent": KindRules(kind="b.Parent")}
    policy = Policy(max_delete_fraction=1.0)
    kinds = ("a.Child", "b.Parent")
    desired = [want("a.Child/c", {"x": 1}), want("b.Parent/p", {"x": 1})]
    observed = [have("a.Child/old", {"x": 1}), have("b.Parent/old", {"x": 1})]
    snap = snapshot(*observed, kinds=kinds)
    diff, _ = compare(desired, snap, rules=rules, policy=policy)
    ctx = PlanContext(target="t", correlation_id="c-1", desired_version="v1", policy=policy,
                      rules=rules, now=NOW)
    plan = make_plan(diff, snap, ctx)
    assert plan.validation.ok
    assert ids(plan) == [["create:b.Parent/p"], ["create:a.Child/c"],
                         ["delete:a.Child/old"], ["delete:b.Parent/old"]]


def test_every_resource_changed_since_the_plan_fails_its_precondition():
    names = [f"n{i}" for i in range(8)]
    plan = plan_for([want(f"sim.Node/{n}", node(zone="b")) for n in names],
                    [have(f"sim.Node/{n}", node()) for n in names])
    moved = snapshot(*[have(f"sim.Node/{n}", node(zone=f"z{n}")) for n in names])
    failures = check_preconditions(plan, moved)
    assert len(failures) == 8 and all("changed since the plan was made" in f for f in failures)


def test_only_deletions_count_against_the_blast_radius_and_only_above_it():
    observed = [have(f"sim.Node/n{i}", node()) for i in range(10)]
    creates = plan_for([want(f"sim.Node/n{i}", node()) for i in range(11)], observed,
                       policy=Policy(max_delete_fraction=0.0))
    assert [a.type for a in creates.actions] == ["create"]
    assert creates.validation.ok and not creates.validation.needs_approval
    one = plan_for([want(f"sim.Node/n{i}", node()) for i in range(9)], observed,
                   policy=Policy(max_delete_fraction=0.5))
    assert len(one.actions) == 1 and not one.validation.needs_approval
