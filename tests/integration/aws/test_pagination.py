"""Every listing pages: over a thousand node groups, and instances in many small pages."""

from __future__ import annotations

import pytest

from reconciler.providers.aws import NAME_TAG, TARGET_TAG
from tests.integration.aws.support import LAUNCH_TEMPLATE, Rig, boto, group, make_provider, node

pytestmark = pytest.mark.integration


def test_more_than_a_thousand_groups_are_observed_across_pages(rig: Rig, moto_url: str) -> None:
    asg = boto(moto_url, "autoscaling")
    names = [f"g-{i:04d}" for i in range(1100)]
    for name in names:  # seeded behind the reconciler's back, already in line with the spec
        tags = [{"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": k,
                 "Value": v, "PropagateAtLaunch": False}
                for k, v in ((TARGET_TAG, "fleet"), (NAME_TAG, name))]
        asg.create_auto_scaling_group(
            AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateName": LAUNCH_TEMPLATE,
                                                       "Version": "$Default"},
            MinSize=0, MaxSize=10, DesiredCapacity=0, AvailabilityZones=["us-east-1a"],
            Tags=tags)
    asg.update_auto_scaling_group(AutoScalingGroupName="g-1099", MaxSize=5)  # one drifted
    rig.provider.stats.reset()
    observed = rig.provider.observe("autoscaling.Group", 60)
    assert observed.completeness == 1.0 and len(observed.resources) == 1100
    assert rig.provider.stats.calls["autoscaling.describe_auto_scaling_groups"] == 11
    report = rig.cycle([group(n) for n in names])
    assert report.outcome.status == "converged", report.outcome.error
    assert report.outcome.actions_succeeded == 1
    assert rig.provider.stats.mutations["autoscaling.update_auto_scaling_group"] == 1


def test_instances_are_read_in_pages_of_the_configured_size(moto_url: str) -> None:
    provider = make_provider(moto_url, page_size=5)
    Rig(provider=provider).cycle([node(f"n-{i:02d}") for i in range(23)])
    provider.stats.reset()
    seen = provider.observe("ec2.Instance", 60)
    assert len(seen.resources) == 23 and seen.completeness == 1.0
    assert provider.stats.calls["ec2.describe_instances"] == 5  # ceil(23 / 5) reservations
