"""Ownership and protection: nothing unowned is touched, nothing protected is deleted."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.core.errors import PermanentError
from reconciler.core.model import Action, ResourceKey
from reconciler.core.policy import Policy
from reconciler.providers.aws import PROTECTED_TAG, TARGET_TAG
from tests.integration.aws.support import (
    AMI,
    LAUNCH_TEMPLATE,
    Rig,
    boto,
    cluster,
    group,
    make_provider,
    node,
    service,
)

pytestmark = pytest.mark.integration
DELETE_ALL = Policy(max_delete_fraction=1.0, backoff_base_s=0.1)


def unowned_instance(url: str, name: str) -> str:
    made = boto(url, "ec2").run_instances(
        ImageId=AMI, InstanceType="t3.nano", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": "Name", "Value": name}]}])
    return str(made["Instances"][0]["InstanceId"])


def describe(url: str, iid: str) -> dict[str, Any]:
    found = boto(url, "ec2").describe_instances(InstanceIds=[iid])
    inst = found["Reservations"][0]["Instances"][0]
    return {"state": inst["State"]["Name"], "type": inst["InstanceType"],
            "tags": sorted((t["Key"], t["Value"]) for t in inst.get("Tags", []))}


def action(kind: str, name: str, type_: str, **params: Any) -> Action:
    key = ResourceKey(kind=kind, name=name)
    return Action(id=f"{type_}:{key}", type=type_, target=key, params=params,
                  idempotency_token=f"{name}-{type_}".ljust(32, "0")[:32])


def test_unowned_look_alikes_are_conflicts_and_never_touched(rig: Rig, moto_url: str) -> None:
    twin, stranger = unowned_instance(moto_url, "web-1"), unowned_instance(moto_url, "legacy")
    boto(moto_url, "autoscaling").create_auto_scaling_group(
        AutoScalingGroupName="workers", LaunchTemplate={"LaunchTemplateName": LAUNCH_TEMPLATE},
        MinSize=0, MaxSize=1, DesiredCapacity=0, AvailabilityZones=["us-east-1a"])
    before = describe(moto_url, twin), describe(moto_url, stranger)
    report = rig.cycle([node("web-1"), node("web-2"), group("workers", desired=0)], DELETE_ALL,
                       manual=True)
    assert report.diff is not None
    assert {str(k) for k in report.diff.conflicts} == {"ec2.Instance/web-1",
                                                       "autoscaling.Group/workers"}
    assert (describe(moto_url, twin), describe(moto_url, stranger)) == before
    groups = boto(moto_url, "autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    assert groups[0]["MaxSize"] == 1 and not groups[0]["Tags"]
    assert set(rig.fleet()) == {"ec2.Instance/web-2"}  # the rest was created as usual
    # the hand-made stranger nothing desires: reported as unmanaged, counted, never touched
    assert [str(k) for k in report.diff.unmanaged] == ["ec2.Instance/legacy"]
    assert report.diff.coverage["ec2.Instance"].unmanaged == 2  # the twin is not ours either


def test_an_unowned_instance_without_a_name_tag_is_unmanaged_under_its_id(rig: Rig,
                                                                        moto_url: str) -> None:
    bare = boto(moto_url, "ec2").run_instances(ImageId=AMI, InstanceType="t3.nano", MinCount=1,
                                               MaxCount=1)["Instances"][0]["InstanceId"]
    before = describe(moto_url, bare)
    report = rig.cycle([node("web-1")], DELETE_ALL, manual=True)
    assert report.outcome.status == "converged"
    assert report.diff is not None
    assert [str(k) for k in report.diff.unmanaged] == [f"ec2.Instance/{bare}"]
    assert describe(moto_url, bare) == before  # listed, never touched
    # and it can be adopted under that name, as `reconcile import` would write it
    adopted = rig.cycle([node("web-1"), node(bare, instance_type="t3.nano")],
                        Policy(adopt=True, backoff_base_s=0.1), manual=True)
    assert adopted.outcome.status == "converged", adopted.outcome.error
    assert dict(describe(moto_url, bare)["tags"])[TARGET_TAG] == "fleet"
    assert rig.provider.stats.mutations["ec2.run_instances"] == 1  # web-1 only


def test_another_targets_resources_are_not_ours_to_delete(rig: Rig, moto_url: str) -> None:
    other = make_provider(moto_url, target="other")
    Rig(provider=other).cycle([node("db-1"), cluster("shared")])
    report = rig.cycle([node("web-1")], DELETE_ALL, manual=True)
    assert report.outcome.status == "converged"
    assert set(Rig(provider=other).fleet()) == {"ec2.Instance/db-1", "ecs.Cluster/shared"}
    assert report.diff is not None and report.diff.unmanaged == ()  # another target's: not ours
    assert report.diff.coverage["ec2.Instance"].unmanaged == 0


def test_adopt_takes_ownership_of_an_unowned_twin_instead_of_creating(rig: Rig,
                                                                     moto_url: str) -> None:
    twin = unowned_instance(moto_url, "web-1")
    report = rig.cycle([node("web-1", instance_type="t3.nano", tags={"team": "web"})],
                       Policy(adopt=True, backoff_base_s=0.1), manual=True)
    assert report.outcome.status == "converged", report.outcome.error
    tags = dict(describe(moto_url, twin)["tags"])
    assert tags[TARGET_TAG] == "fleet" and tags["team"] == "web"
    assert rig.provider.stats.mutations["ec2.run_instances"] == 0


def test_an_instance_owned_by_another_target_is_never_adopted(rig: Rig, moto_url: str) -> None:
    make_provider(moto_url, target="other").apply(
        action("ec2.Instance", "web-1", "create",
               spec=node("web-1").spec, protected=False))
    with pytest.raises(PermanentError, match="owned by target 'other'"):
        rig.provider.apply(action("ec2.Instance", "web-1", "update", spec=node("web-1").spec,
                                  adopt=True))


def test_protected_resources_survive_removal_from_the_desired_state(rig: Rig) -> None:
    fleet = [node("ledger", protected=True), cluster("apps"),
             service("pay", "apps", protected=True), group("workers")]
    rig.cycle(fleet)
    assert rig.provider.observe("ec2.Instance", 30).resources[0].protected
    report = rig.cycle([cluster("apps")], DELETE_ALL, manual=True)
    blocked = {str(b.key): b.reason for b in report.plans[0].audit.blocked}
    assert "protected" in blocked["ec2.Instance/ledger"]
    assert "protected" in blocked["ecs.Service/pay"]
    assert set(rig.fleet()) == {"ec2.Instance/ledger", "ecs.Service/pay", "ecs.Cluster/apps"}


@pytest.mark.parametrize("kind,make", [
    ("ec2.Instance", lambda: node("keep", protected=True)),
    ("autoscaling.Group", lambda: group("keep", protected=True)),
    ("ecs.Cluster", lambda: cluster("keep", protected=True)),
])
def test_the_provider_refuses_to_delete_a_protected_resource_even_if_asked(
        rig: Rig, kind: str, make: Any) -> None:
    rig.cycle([make()])
    with pytest.raises(PermanentError, match="protected"):
        rig.provider.apply(action(kind, "keep", "delete"))
    assert f"{kind}/keep" in rig.fleet()


def test_unprotecting_is_an_explicit_step_before_deletion(rig: Rig, moto_url: str) -> None:
    rig.cycle([node("ledger", protected=True)])
    spec = node("ledger").spec
    outcome = rig.provider.apply(action("ec2.Instance", "ledger", "update", spec=spec,
                                        protected=False))
    assert outcome == "updated"
    assert not rig.provider.observe("ec2.Instance", 30).resources[0].protected
    assert rig.provider.apply(action("ec2.Instance", "ledger", "delete")) == "deleted"
    assert rig.provider.apply(action("ec2.Instance", "ledger", "delete")) == "unchanged"


def test_protection_tag_is_set_at_creation(rig: Rig, moto_url: str) -> None:
    rig.cycle([node("ledger", protected=True)])
    (ledger,) = rig.provider.observe("ec2.Instance", 30).resources
    assert (PROTECTED_TAG, "true") in describe(moto_url, str(ledger.provider_id))["tags"]


def test_services_of_look_alike_clusters_and_deleted_services_are_filtered(
        rig: Rig, moto_url: str) -> None:
    ecs = boto(moto_url, "ecs")
    rig.cycle([cluster("apps"), service("api", "apps")])
    ecs.create_cluster(clusterName="apps-staging")
    ecs.register_task_definition(family="x", containerDefinitions=[
        {"name": "a", "image": "busybox", "memory": 64}])
    ecs.create_service(cluster="apps-staging", serviceName="api-staging", taskDefinition="x",
                       desiredCount=1)
    ecs.create_service(cluster="apps", serviceName="gone", taskDefinition="x", desiredCount=0)
    ecs.delete_service(cluster="apps", service="gone")  # moto keeps it, INACTIVE
    seen = rig.provider.observe("ecs.Service", 30).resources
    where = sorted((r.key.name, r.spec["cluster"], r.managed) for r in seen)
    assert where == [("api", "apps", True), ("api-staging", "apps-staging", False)]
