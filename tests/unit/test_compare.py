"""compare: keyed diff, field-level changes, ignore lists, tolerance, drift and urgency."""

from __future__ import annotations

import pytest

from reconciler.catalogue import rules_for
from reconciler.core.compare import compare, diff_spec
from reconciler.core.policy import Policy, Tolerance
from tests.builders import have, node, snapshot, want, workload

RULES = rules_for()


def run(desired, observed, policy=Policy()):
    return compare(desired, snapshot(*observed), rules=RULES, policy=policy)


def test_identical_fleets_have_no_drift():
    diff, drift = run([want("sim.Workload/web", workload())],
                      [have("sim.Workload/web", workload())])
    assert diff.is_empty and diff.unchanged == 1
    assert drift.urgency == "none" and drift.magnitude == 0


def test_missing_resource_is_an_addition():
    diff, _ = run([want("sim.Node/n1", node())], [])
    assert [a.key.name for a in diff.additions] == ["n1"]


def test_extra_managed_resource_is_a_deletion_but_unmanaged_is_left_alone():
    diff, drift = run([], [have("sim.Node/mine", node()),
                           have("sim.Node/theirs", node(), managed=False)])
    assert [d.key.name for d in diff.deletions] == ["mine"]
    assert drift.urgency == "low"


def test_unmanaged_resource_with_a_desired_name_is_a_conflict_not_a_change():
    diff, drift = run([want("sim.Node/n1", node(zone="b"))],
                      [have("sim.Node/n1", node(), managed=False)])
    assert diff.conflicts and not diff.modifications and not diff.additions
    assert drift.drifted == 1


def test_field_level_changes_name_the_path_with_before_and_after():
    diff, _ = run([want("sim.Workload/web", workload(image="nginx:2"))],
                  [have("sim.Workload/web", workload(image="nginx:1"))])
    (change,) = diff.modifications[0].changes
    assert (change.path, change.before, change.after) == ("containers.app.image", "nginx:1",
                                                          "nginx:2")


def test_fields_only_the_provider_reports_are_not_drift():
    diff, _ = run([want("sim.Node/n1", node())],
                  [have("sim.Node/n1", {**node(), "ip": "10.0.0.1"})])
    assert diff.is_empty


@pytest.mark.parametrize("ignore", [("labels",), ("labels.team",), ("labels.*",)])
def test_ignored_fields_are_not_compared(ignore):
    diff, _ = run([want("sim.Node/n1", node(labels={"team": "a"}), ignore_fields=ignore)],
                  [have("sim.Node/n1", node(labels={"team": "b"}))])
    assert diff.is_empty


def test_policy_ignore_fields_apply_per_kind():
    policy = Policy(ignore_fields={"sim.Workload": ("replicas",)})
    diff, _ = run([want("sim.Workload/w", workload(replicas=5))],
                  [have("sim.Workload/w", workload(replicas=3))], policy)
    assert diff.is_empty


def test_numeric_tolerance_absorbs_small_differences_only():
    slack = {"replicas": 1.0}
    assert diff_spec({"replicas": 5}, {"replicas": 4}, slack=slack) == []
    assert diff_spec({"replicas": 5}, {"replicas": 3}, slack=slack) != []
    policy = Policy(tolerance=Tolerance(numeric={"replicas": 1}))
    diff, _ = run([want("sim.Workload/w", workload(replicas=5))],
                  [have("sim.Workload/w", workload(replicas=4))], policy)
    assert diff.is_empty


def test_named_lists_with_different_members_change_as_a_whole():
    (change,) = diff_spec({"c": [{"name": "a"}, {"name": "b"}]}, {"c": [{"name": "a"}]})
    assert change.path == "c"


@pytest.mark.parametrize(
    ("sla", "observed", "desired", "urgency"),
    [
        ("critical", workload(replicas=1), workload(replicas=3), "critical"),
        ("standard", workload(replicas=1), workload(replicas=3), "high"),
        ("best_effort", workload(replicas=1), workload(replicas=3), "low"),
        ("critical", workload(replicas=5), workload(replicas=3), "high"),
        ("critical", workload(image="a"), workload(image="b"), "high"),
        ("critical", workload(labels={"x": "1"}), workload(labels={"x": "2"}), "low"),
    ],
)
def test_urgency_follows_sla_tier_and_kind_of_drift(sla, observed, desired, urgency):
    _, drift = run([want("sim.Workload/w", desired, sla=sla)], [have("sim.Workload/w", observed)])
    assert drift.urgency == urgency


def test_missing_critical_resource_is_critical():
    _, drift = run([want("sim.Workload/w", workload(), sla="critical")], [])
    assert drift.urgency == "critical"


def test_stopped_node_that_should_run_is_a_capacity_shortfall():
    _, drift = run([want("sim.Node/n", node(), sla="critical")],
                   [have("sim.Node/n", node(state="stopped"))])
    assert drift.urgency == "critical"


def test_magnitude_weights_by_urgency_and_fraction_counts_resources():
    _, drift = run(
        [want("sim.Workload/a", workload(), sla="critical"),
         want("sim.Node/b", node(labels={"k": "v"})), want("sim.Node/c", node())],
        [have("sim.Node/b", node()), have("sim.Node/c", node())],
    )
    assert drift.by_urgency == {"critical": 1, "low": 1}
    assert drift.magnitude == 11.0
    assert drift.fraction == pytest.approx(2 / 3, abs=1e-5)


def test_only_kinds_in_scope_are_compared():
    diff, _ = compare([want("sim.Node/n", node())], snapshot(have("sim.Workload/w", workload())),
                      rules=RULES, policy=Policy(), kinds=["sim.Node"])
    assert [a.key.name for a in diff.additions] == ["n"] and not diff.deletions


def test_extra_keys_in_a_declared_map_are_drift_and_removal_has_after_none():
    (change,) = diff_spec({"labels": {}}, {"labels": {"team": "x"}})
    assert (change.path, change.before, change.after) == ("labels.team", "x", None)


def test_adopt_turns_a_conflict_into_an_ownership_change():
    diff, _ = run([want("sim.Node/n1", node())], [have("sim.Node/n1", node(), managed=False)],
                  Policy(adopt=True))
    assert not diff.conflicts
    (mod,) = diff.modifications
    assert [c.path for c in mod.changes] == ["@owned"]


def test_a_high_urgency_resource_weighs_three_as_the_readme_says():
    _, drift = run([want("sim.Workload/a", workload()),
                    want("sim.Node/b", node(zone="b"))],
                   [have("sim.Node/b", node(), managed=False)])
    assert drift.by_urgency == {"high": 2} and drift.urgency == "high"
    assert drift.magnitude == 6.0 and drift.fraction == 1.0 and drift.total == 2


def test_compare_takes_its_options_by_name_only():
    with pytest.raises(TypeError):
        compare([], snapshot(), RULES, Policy())  # type: ignore[misc]


def test_an_empty_scope_has_no_drift_fraction():
    _, drift = run([], [])
    assert (drift.fraction, drift.total, drift.magnitude) == (0.0, 0, 0.0)


def test_the_drift_fraction_is_rounded_to_six_places():
    desired = [want(f"sim.Node/n{i}", node()) for i in range(7)]
    _, drift = run(desired, [have(f"sim.Node/n{i}", node()) for i in range(1, 7)])
    assert drift.fraction == 0.142857


def test_a_create_in_flight_waits_but_a_listed_one_is_compared():
    from reconciler.core.model import ResourceKey

    pending = (ResourceKey.parse("sim.Node/new"), ResourceKey.parse("sim.Node/old"))
    snap = snapshot(have("sim.Node/old", node())).model_copy(update={"in_flight": pending})
    diff, _ = compare([want("sim.Node/new", node()), want("sim.Node/old", node(zone="b"))],
                      snap, rules=RULES, policy=Policy())
    assert diff.in_flight == (pending[0],) and not diff.additions
    assert [m.key.name for m in diff.modifications] == ["old"]


def test_adoption_records_ownership_going_from_false_to_true_as_config_drift():
    diff, drift = run([want("sim.Node/n1", node())], [have("sim.Node/n1", node(), managed=False)],
                      Policy(adopt=True))
    (change,) = diff.modifications[0].changes
    assert (change.before, change.after) == (False, True)
    assert drift.urgency == "high"  # not cosmetic, though "@owned" sorts before "@protected"


def test_a_resource_tolerance_adds_to_the_policy_slack():
    policy = Policy(tolerance=Tolerance(numeric={"cpu": 1}))
    diff, _ = run([want("sim.Workload/w", workload(replicas=5), tolerance={"replicas": 1})],
                  [have("sim.Workload/w", workload(replicas=4))], policy)
    assert diff.is_empty
    assert diff_spec({"replicas": 5}, {"replicas": 4.5}, slack={"replicas": 1.0}) == []


def test_slack_never_applies_to_a_value_that_is_not_a_number():
    (change,) = diff_spec({"replicas": 5}, {"replicas": "five"}, slack={"replicas": 1.0})
    assert (change.before, change.after) == ("five", 5)
    (gone,) = diff_spec({"replicas": 5}, {}, slack={"replicas": 1.0})
    assert (gone.path, gone.before) == ("replicas", None)


def test_a_declared_map_against_a_missing_or_scalar_value_is_one_change():
    (missing,) = diff_spec({"labels": {"a": "1"}}, {})
    assert (missing.path, missing.before, missing.after) == ("labels", None, {"a": "1"})
    (scalar,) = diff_spec({"labels": "none"}, {"labels": {"a": "1"}})
    assert (scalar.path, scalar.before) == ("labels", {"a": "1"})


def test_a_named_list_with_an_extra_observed_member_changes_as_a_whole():
    (change,) = diff_spec({"c": [{"name": "a"}]}, {"c": [{"name": "a"}, {"name": "b"}]})
    assert change.path == "c"


def test_lists_of_strings_or_unnamed_maps_compare_whole():
    (tags,) = diff_spec({"tags": ["username"]}, {"tags": ["hostname"]})
    assert tags.path == "tags"
    (items,) = diff_spec({"c": [{"x": 1}]}, {"c": [{"x": 2}]})
    assert items.path == "c"


def test_a_capacity_field_the_fleet_lacks_is_a_shortfall():
    spec = workload(replicas=3)
    observed = {k: v for k, v in spec.items() if k != "replicas"}
    _, drift = run([want("sim.Workload/w", spec, sla="critical")],
                   [have("sim.Workload/w", observed)])
    assert drift.urgency == "critical"


@pytest.mark.parametrize("state", ["stopped", "pending"])
def test_a_node_leaving_running_is_config_drift_not_a_shortfall(state):
    _, drift = run([want("sim.Node/n", node(state=state), sla="critical")],
                   [have("sim.Node/n", node())])
    assert drift.urgency == "high"


def test_an_out_of_scope_desired_resource_does_not_hide_the_ones_after_it():
    diff, _ = compare([want("sim.Workload/w", workload()), want("sim.Node/n", node())],
                      snapshot(), rules=RULES, policy=Policy(), kinds=["sim.Node"])
    assert [a.key.name for a in diff.additions] == ["n"]


@pytest.mark.parametrize(("wanted", "held"), [(True, False), (False, True)])
def test_protecting_and_unprotecting_are_both_changes(wanted, held):
    diff, drift = run([want("sim.Node/n", node(), protected=wanted)],
                      [have("sim.Node/n", node(), protected=held)])
    (change,) = diff.modifications[0].changes
    assert (change.path, change.before, change.after) == ("@protected", held, wanted)
    assert drift.urgency == "low"
