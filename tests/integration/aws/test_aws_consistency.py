"""Whole cycles against AWS's client-token and eventual-consistency rules (kept by the proxy):
a hand-terminated instance comes back as a new one, and a lagging listing makes no duplicate."""

from __future__ import annotations

from collections import defaultdict

import pytest

from reconciler.providers.aws import NAME_TAG, TARGET_TAG
from tests.integration.aws.support import TARGET, Rig, boto, node
from tests.support.fault_proxy import AwsRules, FaultProxy

pytestmark = pytest.mark.integration

LIVE = ["pending", "running", "stopping", "stopped"]


def live_owned(moto_url: str) -> dict[str, list[str]]:
    """Live instances of our target in moto (asked directly), ``name -> [instance ids]``."""
    found: dict[str, list[str]] = defaultdict(list)
    pages = boto(moto_url, "ec2").get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": LIVE}])
    for page in pages:
        for reservation in page["Reservations"]:
            for inst in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                if tags.get(TARGET_TAG) == TARGET:
                    found[tags[NAME_TAG]].append(inst["InstanceId"])
    return dict(found)


def test_an_instance_terminated_by_hand_is_re_created_the_same_day(rig: Rig,
                                                                   moto_url: str) -> None:
    assert rig.cycle([node("web-1")]).outcome.status == "converged"
    [first] = live_owned(moto_url)["web-1"]
    boto(moto_url, "ec2").terminate_instances(InstanceIds=[first])
    statuses = []
    for _ in range(4):
        report = rig.cycle([node("web-1")])
        statuses.append(report.outcome.status)
        if report.outcome.converged:
            break
    assert report.outcome.converged, statuses
    live = live_owned(moto_url)
    assert list(live) == ["web-1"] and len(live["web-1"]) == 1, live  # no duplicate
    assert live["web-1"] != [first]  # a new instance, not the terminated one's token replayed


def test_a_listing_that_lags_15_s_after_launch_makes_no_second_instance(
        rig: Rig, proxy: FaultProxy, moto_url: str) -> None:
    proxy.reset(rules=AwsRules(listing_lag_s=15, tag_lag_s=15, clock=rig.clock.monotonic))
    desired = [node(f"web-{i}") for i in range(3)]
    report = rig.cycle(desired)
    assert report.outcome.status == "converged", (report.outcome.status, report.outcome.error)
    live = live_owned(moto_url)
    assert sorted(live) == ["web-0", "web-1", "web-2"], live
    assert all(len(ids) == 1 for ids in live.values()), live
    again = rig.cycle(desired)
    assert again.outcome.actions_succeeded == 0 and again.outcome.status == "in_sync", \
        again.outcome.status
