"""Two regions in one target against moto (one endpoint serves every region): both converge,
and a region that cannot be listed blocks deletions there only."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.core.model import DesiredResource, ResourceKey
from reconciler.core.policy import Policy
from reconciler.output.render import render_report
from reconciler.providers.aws import TARGET_TAG, MultiRegionAwsProvider, aws_provider
from reconciler.testing import FakeClock
from tests.integration.aws.support import TARGET, Rig, boto, cluster, node, service
from tests.support.fault_proxy import FaultProxy, Faults

pytestmark = pytest.mark.integration

EU = "eu-west-1"
POLICY = Policy(backoff_base_s=0.1, jitter=0.0, max_delete_fraction=1.0, on_failure="continue")


def in_eu(resource: DesiredResource) -> DesiredResource:
    key = ResourceKey(kind=f"{resource.key.kind}@{EU}", name=resource.key.name)
    deps = tuple(ResourceKey(kind=f"{d.kind}@{EU}", name=d.name) for d in resource.depends_on)
    return resource.model_copy(update={"key": key, "depends_on": deps})


def two_region_rig(proxy: FaultProxy) -> Rig:
    clock = FakeClock()
    provider = aws_provider(
        TARGET, {"endpoint_url": proxy.url, "emulator": True, "regions": ["us-east-1", EU],
                 "wait_interval_s": 0.0, "max_attempts": 1, "page_attempts": 2},
        sleep=clock.sleep, monotonic=clock.monotonic)
    assert isinstance(provider, MultiRegionAwsProvider)
    return Rig(provider=provider, clock=clock)


def owned_instances(url: str, region: str) -> dict[str, str]:
    """Live instances this target owns in ``region``: name -> instance type."""
    ec2 = _client(url, "ec2", region)
    found: dict[str, str] = {}
    for page in ec2.get_paginator("describe_instances").paginate(Filters=[
            {"Name": "instance-state-name", "Values": ["pending", "running"]}]):
        for reservation in page["Reservations"]:
            for inst in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                if tags.get(TARGET_TAG) == TARGET:
                    found[tags["Name"]] = inst["InstanceType"]
    return found


def _client(url: str, service_name: str, region: str) -> Any:
    import boto3

    return boto3.client(service_name, endpoint_url=url, region_name=region,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_resources_in_two_regions_converge_each_in_its_own_region(
        proxy: FaultProxy, moto_url: str) -> None:
    rig = two_region_rig(proxy)
    desired = [node("web-1"), node("web-2", "t3.small"), in_eu(node("web-1", "t3.large")),
               in_eu(cluster("apps")), in_eu(service("api", "apps"))]
    report = rig.cycle(desired, POLICY)
    assert report.outcome.status == "converged", render_report(report)
    # one name in two regions is two resources, each where the desired state put it
    assert owned_instances(moto_url, "us-east-1") == {"web-1": "t3.micro", "web-2": "t3.small"}
    assert owned_instances(moto_url, EU) == {"web-1": "t3.large"}
    eu_ecs = _client(moto_url, "ecs", EU)
    assert eu_ecs.list_clusters()["clusterArns"][0].endswith("cluster/apps")
    assert boto(moto_url, "ecs").list_clusters()["clusterArns"] == []
    # the service waited for the cluster of its own region
    waves = [{str(a.target) for a in w.actions} for w in report.plans[0].waves]
    cluster_wave = next(i for i, w in enumerate(waves) if "ecs.Cluster@eu-west-1/apps" in w)
    service_wave = next(i for i, w in enumerate(waves) if "ecs.Service@eu-west-1/api" in w)
    assert cluster_wave < service_wave
    # one report names both regions' resources
    text = render_report(report)
    assert "ec2.Instance/web-1" in text and "ec2.Instance@eu-west-1/web-1" in text
    again = rig.cycle(desired, POLICY)
    assert again.outcome.status == "in_sync"  # nothing left to do in either region
    assert again.diff is not None and again.diff.unchanged == len(desired)


@pytest.mark.parametrize(("failing", "working"), [(EU, "us-east-1"), ("us-east-1", EU)])
def test_a_region_that_cannot_be_listed_blocks_deletions_there_only(
        proxy: FaultProxy, moto_url: str, failing: str, working: str) -> None:
    rig = two_region_rig(proxy)
    fleet = [node("a"), node("b"), in_eu(node("a")), in_eu(node("b"))]
    assert rig.cycle(fleet, POLICY).outcome.status == "converged"
    proxy.reset(Faults(fail_regions=frozenset({failing})))
    report = rig.cycle([fleet[0], fleet[2]], POLICY, manual=True)
    assert report.snapshot is not None
    kinds = report.snapshot.kinds
    blind = "ec2.Instance" if failing == "us-east-1" else f"ec2.Instance@{EU}"
    seen = f"ec2.Instance@{EU}" if failing == "us-east-1" else "ec2.Instance"
    assert kinds[seen].completeness == 1.0
    assert kinds[blind].completeness == 0.0 and kinds[blind].errors
    # the working region's orphan is deleted, the failing region's is not touched
    assert proxy.forwarded["TerminateInstances"] == 1, render_report(report)
    proxy.reset()
    assert owned_instances(moto_url, working) == {"a": "t3.micro"}
    assert owned_instances(moto_url, failing) == {"a": "t3.micro", "b": "t3.micro"}
