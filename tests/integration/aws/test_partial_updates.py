"""Against moto: an update sends only what its plan changes; ignored fields keep live values."""

from __future__ import annotations

import pytest

from reconciler.core.model import DesiredResource
from tests.integration.aws.support import Rig, boto, cluster, group, node, service

pytestmark = pytest.mark.integration


def ignoring(resource: DesiredResource, *fields: str) -> DesiredResource:
    return resource.model_copy(update={"ignore_fields": fields})


def test_fixing_max_size_leaves_the_autoscalers_desired_capacity_alone(
    rig: Rig, moto_url: str
) -> None:
    desired = [ignoring(group("workers", desired=1), "desired_capacity")]
    assert rig.cycle(desired).outcome.status == "converged"
    asg = boto(moto_url, "autoscaling")
    asg.update_auto_scaling_group(AutoScalingGroupName="workers", DesiredCapacity=4)  # autoscaler
    asg.update_auto_scaling_group(AutoScalingGroupName="workers", MaxSize=7)  # a hand edit
    report = rig.cycle(desired)
    assert report.outcome.status == "converged", report.outcome.error
    (update,) = report.plans[0].actions
    assert update.params["fields"] == ["max_size"]
    (live,) = asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=["workers"])["AutoScalingGroups"]
    assert live["MaxSize"] == 10 and live["DesiredCapacity"] == 4
    assert rig.provider.stats.mutations["autoscaling.update_auto_scaling_group"] == 1
    assert rig.cycle(desired).outcome.status == "in_sync"


def test_a_new_image_leaves_the_services_scaled_desired_count_alone(
    rig: Rig, moto_url: str
) -> None:
    desired = [cluster("apps"), ignoring(service("api", "apps", count=2), "desired_count")]
    assert rig.cycle(desired).outcome.status == "converged"
    ecs = boto(moto_url, "ecs")
    ecs.update_service(cluster="apps", service="api", desiredCount=5)  # an autoscaler
    desired[1] = ignoring(service("api", "apps", count=2, image="nginx:1.28"), "desired_count")
    report = rig.cycle(desired)
    assert report.outcome.status == "converged", report.outcome.error
    (update,) = report.plans[0].actions
    assert update.params["fields"] == ["containers"]
    (live,) = ecs.describe_services(cluster="apps", services=["api"])["services"]
    assert live["desiredCount"] == 5
    assert live["taskDefinition"].endswith(":2")
    assert rig.fleet()["ecs.Service/api"]["containers"][0]["image"] == "nginx:1.28"
    assert rig.cycle(desired).outcome.status == "in_sync"


def test_a_resize_keeps_an_ignored_state_and_never_touches_an_ignored_tag(
    rig: Rig, moto_url: str
) -> None:
    desired = [ignoring(node("app-1", tags={"team": "web"}), "state", "tags.owner")]
    assert rig.cycle(desired).outcome.status == "converged"
    iid = rig.provider.observe("ec2.Instance", 30).resources[0].provider_id
    ec2 = boto(moto_url, "ec2")
    ec2.stop_instances(InstanceIds=[iid])  # someone parks it
    ec2.create_tags(Resources=[iid], Tags=[{"Key": "owner", "Value": "ops"}])
    desired = [ignoring(node("app-1", instance_type="m5.large", tags={"team": "api"}),
                        "state", "tags.owner")]
    report = rig.cycle(desired)
    assert report.outcome.status == "converged", report.outcome.error
    assert report.plans[0].actions[0].params["fields"] == ["instance_type", "tags.team"]
    live = rig.fleet()["ec2.Instance/app-1"]
    assert live["instance_type"] == "m5.large" and live["state"] == "stopped"
    assert live["tags"] == {"team": "api", "owner": "ops"}
    assert rig.provider.stats.mutations["ec2.start_instances"] == 0
