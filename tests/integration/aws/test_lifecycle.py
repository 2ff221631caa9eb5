"""Whole cycles through the aws provider against moto's server: create, converge, stay idle."""

from __future__ import annotations

import pytest

from reconciler.core.policy import Policy
from tests.integration.aws.support import (
    AMI,
    Rig,
    boto,
    cluster,
    group,
    node,
    service,
)

pytestmark = pytest.mark.integration


def fleet_spec() -> list:
    return [
        node("web-1", tags={"team": "web"}),
        node("web-2", tags={"team": "web"}),
        node("batch-1", instance_type="m5.large", state="stopped"),
        group("workers", desired=0, tags={"team": "batch"}),
        cluster("apps", tags={"env": "test"}),
        service("api", "apps", count=2),
        service("checkout", "apps", count=3, image="shop:2"),
    ]


def test_a_cycle_creates_the_whole_fleet_from_empty(rig: Rig) -> None:
    report = rig.cycle(fleet_spec())
    assert report.outcome.status == "converged", report.outcome.error
    fleet = rig.fleet()
    assert set(fleet) == {"ec2.Instance/web-1", "ec2.Instance/web-2", "ec2.Instance/batch-1",
                          "autoscaling.Group/workers", "ecs.Cluster/apps", "ecs.Service/api",
                          "ecs.Service/checkout"}
    assert fleet["ec2.Instance/batch-1"]["state"] == "stopped"
    assert fleet["ecs.Service/checkout"]["containers"][0]["image"] == "shop:2"
    assert rig.provider.stats.mutations["ec2.run_instances"] == 3


def test_a_second_cycle_applies_nothing_and_makes_no_mutating_call(rig: Rig) -> None:
    rig.cycle(fleet_spec())
    rig.provider.stats.reset()
    report = rig.cycle(fleet_spec())
    assert report.outcome.status == "in_sync"
    assert report.plans == [] and report.outcome.actions_succeeded == 0
    assert rig.provider.stats.mutating_calls == 0
    assert rig.provider.stats.total_calls > 0  # it did look


def test_drift_of_every_kind_is_converged_in_one_cycle(rig: Rig, moto_url: str) -> None:
    rig.cycle(fleet_spec())
    ec2, ecs, asg = boto(moto_url, "ec2"), boto(moto_url, "ecs"), boto(moto_url, "autoscaling")
    seen = rig.provider.observe("ec2.Instance", 30)
    by_name = {r.key.name: r.provider_id for r in seen.resources}
    ec2.terminate_instances(InstanceIds=[by_name["web-1"]])
    ec2.create_tags(Resources=[by_name["web-2"]], Tags=[{"Key": "team", "Value": "oops"}])
    ecs.update_service(cluster="apps", service="checkout", desiredCount=1)
    asg.update_auto_scaling_group(AutoScalingGroupName="workers", MaxSize=3)
    desired = fleet_spec()
    desired[2] = node("batch-1", instance_type="m5.xlarge", state="stopped")  # resize
    desired[5] = service("api", "apps", count=2, image="nginx:1.28")  # new image
    report = rig.cycle(desired)
    assert report.outcome.status == "converged", report.outcome.error
    fleet = rig.fleet()
    assert fleet["ec2.Instance/web-2"]["tags"] == {"team": "web"}
    assert fleet["ec2.Instance/batch-1"]["instance_type"] == "m5.xlarge"
    assert fleet["ec2.Instance/batch-1"]["state"] == "stopped"
    assert fleet["ecs.Service/checkout"]["desired_count"] == 3
    assert fleet["ecs.Service/api"]["containers"][0]["image"] == "nginx:1.28"
    assert fleet["ecs.Service/api"]["task_definition"].endswith(":2")  # a new revision
    assert fleet["autoscaling.Group/workers"]["max_size"] == 10
    assert fleet["ec2.Instance/web-1"]["instance_id"] != by_name["web-1"]  # a new instance
    assert rig.cycle(desired).outcome.status == "in_sync"


def test_an_instance_type_change_is_stop_modify_start(rig: Rig) -> None:
    rig.cycle([node("app-1")])
    report = rig.cycle([node("app-1", instance_type="m5.large")])
    assert report.outcome.status == "converged"
    (update,) = report.plans[0].actions
    assert update.risk == "medium"
    calls = rig.provider.stats.mutations
    assert calls["ec2.stop_instances"] == calls["ec2.start_instances"] == 1
    assert calls["ec2.modify_instance_attribute"] == 1
    assert rig.fleet()["ec2.Instance/app-1"]["state"] == "running"


def test_removed_resources_are_deleted_children_first(rig: Rig, moto_url: str) -> None:
    rig.cycle(fleet_spec())
    policy = Policy(max_delete_fraction=1.0, backoff_base_s=0.1)
    report = rig.cycle([node("web-1", tags={"team": "web"})], policy, manual=True)
    assert report.outcome.status == "converged", report.outcome.error
    assert set(rig.fleet()) == {"ec2.Instance/web-1"}
    order = [a.target.kind for a in report.plans[0].actions]
    assert order.index("ecs.Service") < order.index("ecs.Cluster")
    calls = rig.provider.stats.mutations
    assert calls["ecs.update_service"] == 2 and calls["ecs.delete_service"] == 2  # scale to 0
    # moto keeps deleted services (INACTIVE): the provider must not see them
    assert boto(moto_url, "ecs").list_services(cluster="apps")["serviceArns"]
    assert rig.cycle([node("web-1", tags={"team": "web"})]).outcome.status == "in_sync"


def test_a_changed_image_id_is_refused_not_replaced(rig: Rig) -> None:
    rig.cycle([node("app-1")])
    changed = node("app-1")
    changed = changed.model_copy(update={"spec": {**changed.spec, "image_id": "ami-0000001"}})
    report = rig.cycle([changed])
    assert report.outcome.status == "failed"
    errors = [r.error for a in report.actuations for r in a.results if r.error]
    assert any("needs a new instance" in e for e in errors)
    assert rig.fleet()["ec2.Instance/app-1"]["image_id"] == AMI
