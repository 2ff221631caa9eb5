"""The aws provider behind a fault-injecting proxy: throttling, 5xx, resets, lost responses."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from reconciler.core.policy import Policy
from reconciler.providers.aws import NAME_TAG, TARGET_TAG, AwsTemporaryError
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
from tests.support.fault_proxy import FaultProxy, Faults

pytestmark = pytest.mark.integration

# Time is fake (every backoff is recorded, not slept), so bounds can be generous.
STORMY = Policy(max_parallel=8, max_attempts=10, backoff_base_s=0.5, backoff_cap_s=10.0,
                max_iterations=5, on_failure="continue", max_delete_fraction=1.0,
                cycle_deadline_seconds=86_400, sense_deadline_seconds=3_600)


def proxied_rig(proxy: FaultProxy, moto_url: str, **options: Any) -> Rig:
    rig = Rig(provider=make_provider(proxy.url, **options))
    rig.provider = make_provider(proxy.url, clock=rig.clock, **options)
    boto(moto_url, "ec2").create_launch_template(
        LaunchTemplateName=LAUNCH_TEMPLATE, LaunchTemplateData={"ImageId": AMI})
    return rig


def owned_names(url: str) -> Counter[str]:
    """How many live instances carry each of our names (a duplicate shows as a count > 1)."""
    pages = boto(url, "ec2").get_paginator("describe_instances").paginate(Filters=[
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
    names: Counter[str] = Counter()
    for page in pages:
        for reservation in page["Reservations"]:
            for inst in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                if tags.get(TARGET_TAG) == "fleet":
                    names[tags[NAME_TAG]] += 1
    return names


def unowned_state(url: str) -> list[Any]:
    ec2, asg = boto(url, "ec2"), boto(url, "autoscaling")
    found = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["stranger-*"]}])
    instances = sorted((i["InstanceId"], i["State"]["Name"], i["InstanceType"], str(i["Tags"]))
                       for r in found["Reservations"] for i in r["Instances"])
    groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["stranger-group"])
    return [instances, [(g["MinSize"], g["MaxSize"], str(g["Tags"]))
                        for g in groups["AutoScalingGroups"]]]


def add_strangers(url: str) -> None:
    for name in ("stranger-1", "stranger-2"):
        boto(url, "ec2").run_instances(
            ImageId=AMI, InstanceType="t3.nano", MinCount=1, MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance",
                                "Tags": [{"Key": "Name", "Value": name}]}])
    boto(url, "autoscaling").create_auto_scaling_group(
        AutoScalingGroupName="stranger-group", MinSize=0, MaxSize=2, DesiredCapacity=0,
        LaunchTemplate={"LaunchTemplateName": LAUNCH_TEMPLATE}, AvailabilityZones=["us-east-1a"])


def test_a_lost_run_instances_response_never_makes_a_second_instance(
        proxy: FaultProxy, moto_url: str) -> None:
    rig = proxied_rig(proxy, moto_url)
    proxy.reset(Faults(drop_first=frozenset({"RunInstances"})))
    report = rig.cycle([node("web-1"), node("web-2"), node("web-3")], STORMY)
    assert report.outcome.status == "converged", report.outcome.error
    assert proxy.injected["drop:RunInstances"] == 1
    assert proxy.forwarded["RunInstances"] == 3  # the retry found the instance first
    assert owned_names(moto_url) == {"web-1": 1, "web-2": 1, "web-3": 1}
    retried = [r for r in report.actuations[0].results if r.attempts == 2]
    assert len(retried) == 1 and retried[0].outcome == "created"


def test_under_throttling_and_5xx_a_300_resource_fleet_converges_without_harm(
        proxy: FaultProxy, moto_url: str) -> None:
    rig = proxied_rig(proxy, moto_url, max_attempts=2, page_attempts=6, page_size=50)
    add_strangers(moto_url)
    before = unowned_state(moto_url)
    fleet = ([node(f"n-{i:03d}", tags={"i": str(i % 7)}) for i in range(240)]
             + [group(f"g-{i:02d}", desired=0) for i in range(40)]
             + [cluster("c-a"), cluster("c-b")]
             + [service(f"s-{i:02d}", "c-a" if i % 2 else "c-b", count=i % 4)
                for i in range(18)])
    assert len(fleet) == 300
    proxy.reset(Faults(throttle_rate=0.20, error_rate=0.05), seed=3)
    report = rig.cycle(fleet, STORMY)
    assert report.outcome.status == "converged", report.outcome.error
    assert report.outcome.iterations <= STORMY.max_iterations
    injected = sum(proxy.injected.values())
    assert injected > 100, proxy.injected  # the weather was really bad
    proxy.reset()
    assert max(owned_names(moto_url).values()) == 1 and len(owned_names(moto_url)) == 240
    assert unowned_state(moto_url) == before
    assert len(rig.fleet()) == 300


def test_resets_and_latency_are_retried_without_duplicates(proxy: FaultProxy,
                                                           moto_url: str) -> None:
    rig = proxied_rig(proxy, moto_url, max_attempts=2, page_attempts=6)
    proxy.reset(Faults(reset_rate=0.15, latency_s=0.005), seed=5)
    report = rig.cycle([node(f"r-{i}") for i in range(30)], STORMY)
    assert report.outcome.status == "converged", report.outcome.error
    assert sum(v for k, v in proxy.injected.items() if k.startswith("reset:")) > 0
    proxy.reset()
    assert owned_names(moto_url) == {f"r-{i}": 1 for i in range(30)}


def test_when_every_describe_instances_fails_nothing_is_deleted(proxy: FaultProxy,
                                                                moto_url: str) -> None:
    rig = proxied_rig(proxy, moto_url, max_attempts=1, page_attempts=2)
    fleet = [node(f"web-{i}") for i in range(10)]
    assert rig.cycle(fleet, STORMY).outcome.status == "converged"
    proxy.reset(Faults(fail_ops=frozenset({"DescribeInstances"})))
    report = rig.cycle(fleet[:5], STORMY, manual=True)
    assert report.snapshot is not None
    assert report.snapshot.kinds["ec2.Instance"].completeness < 1.0
    assert report.snapshot.kinds["ec2.Instance"].errors
    assert proxy.forwarded["TerminateInstances"] == 0
    assert all("never delete the unobserved" in b.reason or "observed" in b.reason
               for b in report.plans[0].audit.blocked)
    proxy.reset()
    assert len(owned_names(moto_url)) == 10


def test_throttling_in_each_protocol_is_a_temporary_error_with_its_code(
        proxy: FaultProxy, moto_url: str) -> None:
    provider = make_provider(proxy.url, max_attempts=1)
    proxy.reset(Faults(throttle_rate=1.0))
    codes = {}
    for svc, op in (("ec2", "describe_instances"), ("autoscaling", "describe_auto_scaling_groups"),
                    ("ecs", "list_clusters")):
        with pytest.raises(AwsTemporaryError) as caught:
            provider.caller.call(svc, op)
        codes[svc] = (caught.value.code, caught.value.delay)
    assert codes == {"ec2": ("RequestLimitExceeded", 1.0), "autoscaling": ("Throttling", 1.0),
                     "ecs": ("ThrottlingException", 1.0)}
    proxy.reset(Faults(error_rate=1.0))
    with pytest.raises(AwsTemporaryError):
        provider.caller.call("ecs", "list_clusters")
