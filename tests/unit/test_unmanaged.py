"""Unmanaged resources: what no target owns is listed with a coverage figure, never acted on."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from reconciler.catalogue import rules_for
from reconciler.core import compare as compare_mod
from reconciler.core.compare import compare, coverage
from reconciler.core.model import KindCoverage, ResourceKey
from reconciler.core.plan import PlanContext, make_plan
from reconciler.core.policy import Policy, UnmanagedIgnore
from reconciler.output.render import coverage_lines, render_diff
from tests.builders import NOW, have, node, snapshot, want
from tests.strategies import desired_from, fleets

RULES = rules_for()


def run(desired, observed, policy=Policy(), **kw):
    return compare(desired, snapshot(*observed, **kw), rules=RULES, policy=policy)


def test_a_hand_made_resource_nothing_desires_is_listed_as_unmanaged_not_as_drift():
    diff, drift = run([want("sim.Node/n1", node())],
                      [have("sim.Node/n1", node()),
                       have("sim.Node/by-hand", node(), managed=False)])
    assert diff.unmanaged == (ResourceKey(kind="sim.Node", name="by-hand"),)
    assert diff.is_empty and not diff.conflicts and drift.urgency == "none"


def test_a_resource_another_target_owns_is_neither_managed_nor_unmanaged_here():
    diff, _ = run([], [have("sim.Node/theirs", node(), managed=False, foreign_owner="other")])
    assert diff.unmanaged == () and not diff.deletions
    assert diff.coverage["sim.Node"] == KindCoverage(managed=0, unmanaged=0, ignored=0)


def test_coverage_counts_managed_over_managed_plus_unmanaged_per_kind():
    owned = [have(f"sim.Node/n{i}", node()) for i in range(3)]
    diff, _ = run([], [*owned, have("sim.Node/x", node(), managed=False)])
    cov = diff.coverage["sim.Node"]
    assert (cov.managed, cov.unmanaged, cov.fraction) == (3, 1, 0.75)
    assert diff.coverage["sim.Workload"].fraction == 1.0  # observed, empty: nothing left out


def test_a_conflict_counts_as_unmanaged_in_coverage_but_is_listed_as_a_conflict():
    diff, _ = run([want("sim.Node/n1", node(zone="b"))],
                  [have("sim.Node/n1", node(), managed=False)])
    assert diff.conflicts == (ResourceKey(kind="sim.Node", name="n1"),)
    assert diff.unmanaged == () and diff.coverage["sim.Node"].unmanaged == 1


def test_the_list_is_sorted_and_capped_but_coverage_counts_every_one(monkeypatch):
    monkeypatch.setattr(compare_mod, "UNMANAGED_LISTED", 3)
    strays = [have(f"sim.Node/s{i}", node(), managed=False) for i in (4, 1, 3, 0, 2)]
    diff, _ = run([], strays)
    assert [k.name for k in diff.unmanaged] == ["s0", "s1", "s2"]
    assert diff.coverage["sim.Node"].unmanaged == 5


def test_only_kinds_in_scope_are_counted():
    diff, _ = compare([], snapshot(have("sim.Node/x", node(), managed=False)), rules=RULES,
                      policy=Policy(), kinds=["sim.Workload"])
    assert diff.unmanaged == () and set(diff.coverage) == {"sim.Workload"}


@pytest.mark.parametrize("ignore, ignored", [
    ({"names": ["scratch-*"]}, {"scratch-1"}),
    ({"names": ["sim.Node/*-tmp"]}, {"b-tmp"}),
    ({"tags": {"team": "data"}}, {"a"}),
    ({"tags": {"team": "*"}}, {"a", "b-tmp"}),
    ({"tags": {"team": "data", "env": "dev"}}, set()),  # a selector: every tag must match
])
def test_ignore_rules_hide_unowned_resources_by_name_glob_or_tag_selector(ignore, ignored):
    strays = [have("sim.Node/a", node(tags={"team": "data"}), managed=False),
              have("sim.Node/b-tmp", node(tags={"team": "web"}), managed=False),
              have("sim.Node/scratch-1", node(), managed=False)]
    diff, _ = run([], strays, policy=Policy(unmanaged_ignore=UnmanagedIgnore(**ignore)))
    assert {k.name for k in diff.unmanaged} == {"a", "b-tmp", "scratch-1"} - ignored
    cov = diff.coverage["sim.Node"]
    assert (cov.unmanaged, cov.ignored) == (3 - len(ignored), len(ignored))


def test_ignore_rules_never_touch_what_the_target_owns():
    policy = Policy(unmanaged_ignore=UnmanagedIgnore(names=["*"]))
    diff, _ = run([], [have("sim.Node/mine", node())], policy=policy)
    assert [d.key.name for d in diff.deletions] == ["mine"]
    assert diff.coverage["sim.Node"].managed == 1


@pytest.mark.parametrize("bad", [{"names": [""]}, {"tags": {" ": "x"}}, {"kinds": ["x"]},
                                 {"names": "scratch-*"}])
def test_bad_ignore_rules_are_rejected_with_the_field(bad):
    with pytest.raises(ValidationError, match="unmanaged_ignore"):
        Policy.model_validate({"unmanaged_ignore": bad})


def test_coverage_of_no_resources_is_complete():
    assert coverage([], Policy(), ["k"]) == {"k": KindCoverage()}
    assert KindCoverage().fraction == 1.0


def test_plan_output_shows_question_mark_lines_and_the_coverage_figure():
    owned = [have(f"sim.Node/n{i:04}", node()) for i in range(1140)]
    strays = [have(f"sim.Node/z{i:03}", node(), managed=False) for i in range(100)]
    diff, _ = run([], [*owned, *strays])
    lines = render_diff(diff)
    marks = [line for line in lines if line.lstrip().startswith("?")]
    assert marks[0] == "  ? sim.Node/z000  (not owned by any target: not managed, never touched)"
    assert marks[-1] == "  ? ... 80 more sim.Node unmanaged (use --json)"
    assert coverage_lines(diff) == ["Coverage: sim.Node: 1,140 of 1,240 managed (92%)"]


def test_a_coverage_figure_is_never_rounded_to_a_full_hundred_percent():
    diff, _ = run([], [*(have(f"sim.Node/n{i}", node()) for i in range(999)),
                       have("sim.Node/x", node(), managed=False)])
    assert coverage_lines(diff) == ["Coverage: sim.Node: 999 of 1,000 managed (>99%)"]


def test_kinds_without_unowned_resources_print_no_coverage_line():
    diff, _ = run([], [have("sim.Node/n1", node())])
    assert coverage_lines(diff) == [] and not any("?" in line for line in render_diff(diff))


_names = st.sampled_from([f"{p}{i}" for p in ("n", "w", "x") for i in range(8)])


@settings(derandomize=True, max_examples=80, deadline=None)
@given(fleets, fleets, st.sets(_names, max_size=6), st.booleans(), st.booleans())
def test_unmanaged_resources_never_appear_in_any_plan_action(desired, current, strays, adopt,
                                                            partial):
    """Whatever the policy: with ``adopt``, only a desired name held by an unowned resource is
    adopted; an unowned resource nothing desires stays unmanaged and untouched."""
    unowned = {f"sim.Node/{s}" for s in strays}
    observed = [have(k, v) for k, v in sorted(current.items()) if k not in unowned]
    observed += [have(k, node(), managed=False) for k in sorted(unowned)]
    policy = Policy(adopt=adopt, max_delete_fraction=1.0, completeness_threshold=0.0,
                    auto_apply=("low", "high", "critical"))
    snap = snapshot(*observed, completeness={"sim.Node": 0.5} if partial else None)
    diff, _ = compare(desired_from(desired), snap, rules=RULES, policy=policy)
    plan = make_plan(diff, snap, PlanContext(target="t", correlation_id="c", desired_version="v",
                                             policy=policy, rules=RULES, now=NOW))
    touched = {str(a.target) for a in plan.actions}
    assert {str(k) for k in diff.unmanaged} == unowned - desired.keys()
    assert not touched & {str(k) for k in diff.unmanaged}
    for key in touched & unowned:  # only adoption reaches an unowned resource
        assert adopt and key in desired
        assert all(a.type == "update" and a.params.get("adopt")
                   for a in plan.actions if str(a.target) == key)


@pytest.mark.parametrize("owner, managed, foreign", [
    ("t", True, None), ("other", False, "other"), (None, False, None)])
def test_aws_marks_what_another_target_owns_so_it_is_not_reported_as_unmanaged(
        owner, managed, foreign):
    from reconciler.providers.aws.base import observed
    from reconciler.providers.aws.tags import Ownership

    seen = observed("ec2.Instance", "web", {}, Ownership(owner, "web", False), managed, "i-1")
    assert seen.foreign_owner == foreign
    diff, _ = compare([], snapshot(seen, kinds=("ec2.Instance",)), rules=RULES, policy=Policy())
    assert [str(k) for k in diff.unmanaged] == ([] if owner else ["ec2.Instance/web"])


def test_a_kind_seen_but_not_named_in_scope_is_counted_from_zero():
    observed = [have("sim.Node/mine", node()), have("sim.Node/stray", node(), managed=False),
                have("sim.Node/tmp", node(), managed=False)]
    policy = Policy(unmanaged_ignore=UnmanagedIgnore(names=["tmp"]))
    assert coverage(observed, policy) == {
        "sim.Node": KindCoverage(managed=1, unmanaged=1, ignored=1)}


def test_a_diff_lists_the_first_thousand_unmanaged_and_counts_them_all():
    """The README's figure: `--json` lists up to 1,000 unmanaged keys per diff."""
    strays = [have(f"sim.Node/s{i:04}", node(), managed=False) for i in range(1001)]
    diff, _ = run([], strays)
    assert len(diff.unmanaged) == compare_mod.UNMANAGED_LISTED == 1000
    assert diff.unmanaged[-1].name == "s0999" and diff.coverage["sim.Node"].unmanaged == 1001
