"""Several regions in one target: options, regional kinds, their rules and desired state."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.catalogue import rules_for, split_region
from reconciler.core.errors import InvalidConfig, InvalidDesiredState
from reconciler.core.model import ResourceKey
from reconciler.desired import load_desired_dir
from reconciler.orchestration.runtime import check_kinds
from reconciler.providers.aws import AwsProvider, MultiRegionAwsProvider, aws_provider
from reconciler.providers.aws.session import parse_options

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TWO = {"regions": ["us-east-1", "eu-west-1"], "emulator": True,
       "endpoint_url": "http://127.0.0.1:9"}


@pytest.mark.parametrize(("options", "message"), [
    ({"regions": []}, "regions: name at least one region"),
    ({"regions": ["us-east-1", "us-east-1"]}, "us-east-1 named twice"),
    ({"regions": ["us-east-1", "Europe"]}, "'Europe': not a region name"),
    ({"regions": ["us-east-1"], "region": "eu-west-1"}, "region and regions: set one"),
])
def test_bad_regions_are_rejected_with_the_reason(options: dict[str, object],
                                                  message: str) -> None:
    with pytest.raises(InvalidConfig, match=message):
        parse_options(options)


def test_one_region_in_regions_is_a_plain_provider() -> None:
    provider = aws_provider("t", {**TWO, "regions": ["eu-west-1"]})
    assert isinstance(provider, AwsProvider)
    assert provider.region == "eu-west-1"


def test_several_regions_cannot_go_to_the_one_region_provider() -> None:
    with pytest.raises(InvalidConfig, match="several regions"):
        AwsProvider("t", TWO)


def test_the_first_region_keeps_plain_kinds_and_a_further_one_is_suffixed() -> None:
    provider = aws_provider("t", {**TWO, "kinds": ["ec2.Instance", "ecs.Cluster"]})
    assert isinstance(provider, MultiRegionAwsProvider)
    assert provider.kinds() == {"ec2.Instance", "ecs.Cluster", "ec2.Instance@eu-west-1",
                                "ecs.Cluster@eu-west-1"}


@pytest.mark.parametrize("kind", ["ec2.Instance@us-east-1", "ec2.Instance@ap-south-1",
                                  "ecs.Service@eu-west-1"])
def test_a_kind_of_no_served_region_is_observed_as_incomplete(kind: str) -> None:
    provider = aws_provider("t", {**TWO, "kinds": ["ec2.Instance"]})
    obs = provider.observe(kind, 1.0)
    assert obs.completeness == 0.0
    assert "not served" in obs.errors[0]


def test_a_regional_kind_waits_for_the_parents_of_its_own_region() -> None:
    rules = rules_for(["ecs.Service", "ecs.Service@eu-west-1", "ec2.Instance@eu-west-1"])
    assert rules["ecs.Service"].parents == ("ecs.Cluster",)
    assert rules["ecs.Service@eu-west-1"].parents == ("ecs.Cluster@eu-west-1",)
    assert rules["ecs.Service@eu-west-1"].kind == "ecs.Service@eu-west-1"
    assert rules["ec2.Instance@eu-west-1"].capacity_fields == ("state",)


def test_split_region() -> None:
    assert split_region("ec2.Instance@eu-west-1") == ("ec2.Instance", "eu-west-1")
    assert split_region("ec2.Instance") == ("ec2.Instance", None)


REGIONAL_YAML = """\
resources:
  - kind: ecs.Cluster@eu-west-1
    name: apps
  - kind: ec2.Instance@eu-west-1
    name: web
    depends_on: [ecs.Cluster@eu-west-1/apps]
    spec: {image_id: ami-1, instance_type: t3.micro}
  - kind: ec2.Instance
    name: web
    spec: {image_id: ami-1, instance_type: t3.micro}
"""


def test_desired_state_names_a_further_region_in_the_kind(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text(REGIONAL_YAML)
    desired = load_desired_dir(tmp_path, now=NOW)
    keys = {str(r.key) for r in desired.resources}
    assert keys == {"ecs.Cluster@eu-west-1/apps", "ec2.Instance@eu-west-1/web",
                    "ec2.Instance/web"}
    web = next(r for r in desired.resources if r.key.kind == "ec2.Instance@eu-west-1")
    assert web.depends_on == (ResourceKey(kind="ecs.Cluster@eu-west-1", name="apps"),)
    assert web.spec["instance_type"] == "t3.micro"  # checked by ec2.Instance's schema


def test_a_bad_region_in_a_kind_is_located(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text(REGIONAL_YAML.replace("eu-west-1\n    name: web",
                                                               "EU\n    name: web"))
    with pytest.raises(InvalidDesiredState) as err:
        load_desired_dir(tmp_path, now=NOW)
    (location, message), = err.value.problems
    assert (location.line, location.field) == (4, "resources[1].kind")
    assert "unknown kind 'ec2.Instance@EU'" in message


def test_a_region_the_target_does_not_serve_fails_before_any_action(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text(REGIONAL_YAML.replace("eu-west-1", "us-east-1"))
    desired = load_desired_dir(tmp_path, now=NOW)
    served = aws_provider("t", {**TWO, "kinds": ["ec2.Instance", "ecs.Cluster"]}).kinds()
    with pytest.raises(InvalidDesiredState) as err:
        check_kinds(desired, served)
    lines = sorted((loc.line, msg.split(":")[0]) for loc, msg in err.value.problems)
    assert lines == [(2, "ecs.Cluster@us-east-1/apps"), (4, "ec2.Instance@us-east-1/web")]


def _plan_over(completeness: dict[str, float]) -> list[str]:
    """Deletions planned when every kind of two regions has one orphan."""
    from reconciler.core.compare import compare
    from reconciler.core.gate import BasicGate
    from reconciler.core.plan import PlanContext, make_plan
    from reconciler.core.policy import Policy
    from tests.builders import desired_state, have, node, snapshot

    kinds = ("sim.Node", "sim.Workload", "sim.Node@eu-west-1", "sim.Workload@eu-west-1")
    snap = snapshot(*[have(f"{k}/orphan", node()) for k in kinds], kinds=kinds,
                    completeness=completeness)
    verdict = BasicGate(allow_empty_desired=True).check(snap, desired_state())
    policy = Policy(max_delete_fraction=1.0)
    rules = rules_for(list(kinds))
    diff, _ = compare([], snap, rules=rules, policy=policy)
    ctx = PlanContext(target="t", correlation_id="c", desired_version="v", policy=policy,
                      rules=rules, now=NOW, allow_deletions=verdict.passed)
    return sorted(str(a.target) for a in make_plan(diff, snap, ctx).actions if a.type == "delete")


def test_an_incomplete_kind_blocks_deletions_in_its_region_only() -> None:
    assert _plan_over({"sim.Workload@eu-west-1": 0.5}) == ["sim.Node/orphan",
                                                           "sim.Workload/orphan"]
    assert _plan_over({"sim.Node": 0.0}) == ["sim.Node@eu-west-1/orphan",
                                             "sim.Workload@eu-west-1/orphan"]
    assert _plan_over({}) == sorted(f"{k}/orphan" for k in (
        "sim.Node", "sim.Workload", "sim.Node@eu-west-1", "sim.Workload@eu-west-1"))
