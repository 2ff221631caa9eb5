"""An update names the fields it means to change; its undo restores exactly those."""

from __future__ import annotations

from reconciler.catalogue import rules_for
from reconciler.core.compare import compare
from reconciler.core.fields import EVERYTHING, FieldSet, fields_of, masked, merged, update_fields
from reconciler.core.model import Action, ResourceKey
from reconciler.core.plan import PlanContext, make_plan
from reconciler.core.policy import Policy
from reconciler.providers.simulated import SimulatedProvider
from tests.builders import NOW, have, node, snapshot, want, workload

RULES = rules_for()


def update_of(desired, observed, policy=Policy(), suppress=frozenset()):
    snap = snapshot(observed)
    diff, _ = compare([desired], snap, rules=RULES, policy=policy, suppress=suppress)
    ctx = PlanContext(target="t", correlation_id="c", desired_version="v", policy=policy,
                      rules=RULES, now=NOW)
    plan = make_plan(diff, snap, ctx)
    (act,) = plan.actions
    return act, plan


def test_an_update_names_top_level_fields_and_the_exact_map_keys_it_changes():
    act, _ = update_of(
        want("sim.Node/n", node(instance_type="m5.xlarge", labels={"team": "a", "tier": "b"})),
        have("sim.Node/n", node(labels={"team": "x", "owner": "ops"})),
    )
    assert act.params["fields"] == ["instance_type", "labels.owner", "labels.team", "labels.tier"]


def test_ownership_and_protection_are_not_spec_fields():
    act, _ = update_of(want("sim.Node/n", node(), protected=True),
                       have("sim.Node/n", node(), managed=False),
                       Policy(adopt=True))
    assert {c["path"] for c in act.params["changes"]} == {"@owned", "@protected"}
    assert act.params["fields"] == []


def test_a_list_field_is_named_whole():
    act, _ = update_of(want("sim.Workload/w", workload(image="app:v2")),
                       have("sim.Workload/w", workload(image="app:v1")))
    assert act.params["changes"][0]["path"] == "containers.app.image"
    assert act.params["fields"] == ["containers"]


def test_an_ignored_field_is_not_named_and_its_spec_value_is_the_observed_one():
    act, _ = update_of(want("sim.Workload/w", workload(replicas=2, node_pool="big"),
                            ignore_fields=("replicas",)),
                       have("sim.Workload/w", workload(replicas=7)))
    assert act.params["fields"] == ["node_pool"]
    assert act.params["spec"]["replicas"] == 7
    assert act.params["spec"]["node_pool"] == "big"


def test_a_kind_wide_ignored_field_is_left_alone_too():
    policy = Policy(ignore_fields={"sim.Workload": ("replicas",)})
    act, _ = update_of(want("sim.Workload/w", workload(replicas=2, node_pool="big")),
                       have("sim.Workload/w", workload(replicas=7)), policy)
    assert act.params["fields"] == ["node_pool"] and act.params["spec"]["replicas"] == 7


def test_an_ignored_path_inside_a_field_sent_whole_keeps_its_live_value():
    desired = workload(image="app:v2", labels={})
    desired["containers"][0]["cpu"] = 200
    act, _ = update_of(want("sim.Workload/w", desired, ignore_fields=("containers.*.image",)),
                       have("sim.Workload/w", workload(image="app:v1")))
    assert act.params["fields"] == ["containers"]
    (container,) = act.params["spec"]["containers"]
    assert container["image"] == "app:v1" and container["cpu"] == 200


def test_an_ignored_map_key_only_the_fleet_has_stays_in_the_spec():
    act, _ = update_of(want("sim.Node/n", node(labels={"team": "a"}),
                            ignore_fields=("labels.owner",)),
                       have("sim.Node/n", node(labels={"team": "b", "owner": "ops"})))
    assert act.params["fields"] == ["labels.team"]
    assert act.params["spec"]["labels"] == {"team": "a", "owner": "ops"}


def test_a_suppressed_field_is_not_named_and_keeps_its_observed_value():
    act, plan = update_of(want("sim.Workload/w", workload(replicas=2, node_pool="big")),
                          have("sim.Workload/w", workload(replicas=7)),
                          suppress=frozenset({"sim.Workload/w:replicas"}))
    assert act.params["fields"] == ["node_pool"]
    assert act.params["spec"]["replicas"] == 7
    assert [c["path"] for c in act.params["changes"]] == ["node_pool"]


def test_the_undo_restores_only_the_same_fields_from_the_observed_values():
    act, _ = update_of(want("sim.Node/n", node(instance_type="m5.xlarge", labels={"team": "a"}),
                            ignore_fields=("state",)),
                       have("sim.Node/n", node(state="stopped", labels={"owner": "ops"})))
    undo = act.inverse
    assert undo is not None and undo.type == "update"
    assert undo.params["fields"] == act.params["fields"] == [
        "instance_type", "labels.owner", "labels.team"]
    assert undo.params["spec"]["instance_type"] == "m5.large"
    assert undo.params["spec"]["labels"] == {"owner": "ops"}


def test_the_plan_hash_is_deterministic_and_follows_the_observed_ignored_value():
    def plan_hash(observed_replicas):
        _, plan = update_of(want("sim.Workload/w", workload(replicas=2, node_pool="big"),
                                 ignore_fields=("replicas",)),
                            have("sim.Workload/w", workload(replicas=observed_replicas)))
        return plan.hash

    assert plan_hash(7) == plan_hash(7)
    assert plan_hash(7) != plan_hash(8)  # the spec it carries holds what it saw


def test_a_plan_with_fields_round_trips_through_json():
    _, plan = update_of(want("sim.Node/n", node(labels={"a": "1"}), ignore_fields=("state",)),
                        have("sim.Node/n", node(state="stopped")))
    assert type(plan).model_validate_json(plan.model_dump_json()) == plan


# -- the field set a provider reads ---------------------------------------------------------

def action(params, type_="update"):
    return Action(id="a", type=type_, target=ResourceKey(kind="sim.Node", name="n"),
                  params=params, idempotency_token="tok")


def test_a_field_set_tells_whole_fields_from_single_keys():
    fields = FieldSet.of(["max_size", "tags.env", "tags.app.io/name"])
    assert fields.touches("max_size") and fields.touches("tags")
    assert not fields.touches("desired_capacity")
    assert fields.keys_of("tags") == {"env", "app.io/name"}
    assert fields.keys_of("max_size") is None and fields.keys_of("labels") == frozenset()


def test_a_key_with_dots_is_named_whole():
    named = update_fields(["tags.app.io/name"], {"tags": {"app.io/name": "x"}}, {"tags": {}})
    assert named == ("tags.app.io/name",)


def test_a_create_sets_everything():
    assert fields_of(action({"spec": node()}, "create")) is EVERYTHING


def test_an_old_update_without_fields_falls_back_to_its_changes():
    old = action({"spec": node(), "changes": [{"path": "labels.team"}, {"path": "@protected"}]})
    fields = fields_of(old)
    assert not fields.everything and fields.keys_of("labels") == {"team"}
    assert not fields.touches("state")


def test_an_old_undo_with_neither_fields_nor_changes_restores_its_whole_spec():
    assert fields_of(action({"spec": node()})) is EVERYTHING


def test_merging_sets_named_fields_and_keys_and_removes_those_the_spec_lacks():
    stored = {"a": 1, "b": 2, "labels": {"x": "1", "y": "2"}, "gone": 0}
    spec = {"a": 9, "b": 8, "labels": {"x": "9"}}
    out = merged(stored, spec, FieldSet.of(["a", "gone", "labels.x", "labels.y"]))
    assert out == {"a": 9, "b": 2, "labels": {"x": "9"}}


def test_masking_takes_observed_values_only_where_told():
    desired = {"n": 1, "m": {"k": "a"}}
    out = masked(desired, {"n": 5, "m": {"k": "b"}}, lambda p: p == "n")
    assert out == {"n": 5, "m": {"k": "a"}}


# -- the simulated provider merges only the named fields ------------------------------------

def test_the_simulated_provider_updates_only_the_named_fields_and_keys():
    with SimulatedProvider(":memory:") as sim:
        sim.put("sim.Node", "n", node(state="stopped", labels={"owner": "ops", "team": "b"}))
        act, _ = update_of(
            want("sim.Node/n", node(instance_type="m5.xlarge", labels={"team": "a"}),
                 ignore_fields=("state", "labels.owner")),
            have("sim.Node/n", node(state="stopped", labels={"owner": "ops", "team": "b"})))
        unmasked = act.model_copy(update={"params": {
            **act.params, "spec": node(instance_type="m5.xlarge", labels={"team": "a"})}})
        assert sim.apply(unmasked) == "updated"
        stored = sim.get("sim.Node", "n").spec
        assert stored["state"] == "stopped" and stored["instance_type"] == "m5.xlarge"
        assert stored["labels"] == {"owner": "ops", "team": "a"}
        assert sim.apply(act.inverse) == "updated"
        assert sim.get("sim.Node", "n").spec == node(
            state="stopped", labels={"owner": "ops", "team": "b"})
