"""Several AWS accounts in one target against moto: the target's own credentials act in their
account (checked with sts:GetCallerIdentity) and assume a role in the other (moto keys its
backends by the account id of the credentials, and gives a role's account to the
credentials of sts:AssumeRole). Both converge, one report covers both, an account that cannot
be reached blocks deletions there only, and an import round trip spans both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.catalogue.importer import import_resources, to_yaml
from reconciler.core.compare import OWNERSHIP_FIELD
from reconciler.core.model import DesiredResource, ResourceKey
from reconciler.core.policy import Policy
from reconciler.core.sense import sense
from reconciler.desired import load_desired
from reconciler.output.render import render_report
from reconciler.providers.aws import TARGET_TAG, MultiRegionAwsProvider, aws_provider
from reconciler.testing import FakeClock
from tests.integration.aws.support import AMI, TARGET, Rig, cluster, node, service
from tests.support.fault_proxy import FaultProxy, Faults

pytestmark = pytest.mark.integration

OWN = "123456789012"  # moto's account for the test's static credentials
OTHER = "111111111111"
ROLE = f"arn:aws:iam::{OTHER}:role/reconciler"
EU = "eu-west-1"
POLICY = Policy(backoff_base_s=0.1, jitter=0.0, max_delete_fraction=1.0, on_failure="continue")


def scoped(resource: DesiredResource, region: str = "us-east-1") -> DesiredResource:
    """``resource`` in the other account's ``region``."""
    scope = f"{OTHER}:{region}"
    key = ResourceKey(kind=f"{resource.key.kind}@{scope}", name=resource.key.name)
    deps = tuple(ResourceKey(kind=f"{d.kind}@{scope}", name=d.name) for d in resource.depends_on)
    return resource.model_copy(update={"key": key, "depends_on": deps})


def two_account_rig(url: str, own: str = OWN, **extra: Any) -> Rig:
    clock = FakeClock()
    provider = aws_provider(
        TARGET,
        {
            "endpoint_url": url,
            "emulator": True,
            "wait_interval_s": 0.0,
            "max_attempts": 1,
            "page_attempts": 2,
            "kinds": ["ec2.Instance", "ecs.Cluster", "ecs.Service"],
            "accounts": [
                {"id": own},
                {"id": OTHER, "role_arn": ROLE, "regions": ["us-east-1", EU], **extra},
            ],
        },
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )
    assert isinstance(provider, MultiRegionAwsProvider)
    return Rig(provider=provider, clock=clock)


def owned(rig: Rig, region: str = "us-east-1", account: str | None = None) -> dict[str, str]:
    """Live instances this target owns where the provider's own clients look: name -> type."""
    assert isinstance(rig.provider, MultiRegionAwsProvider)
    ec2 = rig.provider.client("ec2", region, account)
    found: dict[str, str] = {}
    for page in ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    ):
        for reservation in page["Reservations"]:
            for inst in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                if tags.get(TARGET_TAG) == TARGET:
                    found[tags["Name"]] = inst["InstanceType"]
    return found


def _plain(url: str, service_name: str, region: str) -> Any:
    import boto3

    return boto3.client(
        service_name,
        endpoint_url=url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_resources_in_two_accounts_converge_each_in_its_own_account(proxy: FaultProxy) -> None:
    rig = two_account_rig(proxy.url)
    desired = [
        node("web-1"),
        scoped(node("web-1", "t3.large")),
        scoped(node("web-2", "t3.small"), EU),
        scoped(cluster("apps"), EU),
        scoped(service("api", "apps"), EU),
    ]
    report = rig.cycle(desired, POLICY)
    assert report.outcome.status == "converged", render_report(report)
    # one name in two accounts is two resources, each where the desired state put it
    assert owned(rig) == {"web-1": "t3.micro"}
    assert owned(rig, account=OTHER) == {"web-1": "t3.large"}
    assert owned(rig, EU, OTHER) == {"web-2": "t3.small"}
    own_eu = _plain(proxy.url, "ec2", EU)  # the own account has no eu-west-1 place
    assert own_eu.describe_instances()["Reservations"] == []
    other_ecs = rig.provider.client("ecs", EU, OTHER)
    assert other_ecs.list_clusters()["clusterArns"] == [f"arn:aws:ecs:{EU}:{OTHER}:cluster/apps"]
    assert rig.provider.client("ecs").list_clusters()["clusterArns"] == []
    # the role was assumed (once per place of the account), never for the own account
    assert 1 <= proxy.actions["sts:AssumeRole"] <= 2
    assert proxy.actions["sts:GetCallerIdentity"] == 1
    # one report names every account's resources
    text = render_report(report)
    assert "ec2.Instance/web-1" in text and f"ec2.Instance@{OTHER}:us-east-1/web-1" in text
    again = rig.cycle(desired, POLICY)
    assert again.outcome.status == "in_sync"
    assert again.diff is not None and again.diff.unchanged == len(desired)


@pytest.mark.parametrize(("failing", "why"), [(OTHER, "AssumeRole"), (OWN, "GetCallerIdentity")])
def test_an_account_that_cannot_be_reached_blocks_deletions_there_only(
    proxy: FaultProxy, failing: str, why: str
) -> None:
    fleet = [node("a"), node("b"), scoped(node("a")), scoped(node("b"))]
    assert two_account_rig(proxy.url).cycle(fleet, POLICY).outcome.status == "converged"
    proxy.reset(Faults(fail_ops=frozenset({why})))
    rig = two_account_rig(proxy.url)  # a new process: nothing cached
    report = rig.cycle([fleet[0], fleet[2]], POLICY, manual=True)
    assert report.snapshot is not None
    kinds = report.snapshot.kinds
    blind = "ec2.Instance" if failing == OWN else f"ec2.Instance@{OTHER}:us-east-1"
    seen = f"ec2.Instance@{OTHER}:us-east-1" if failing == OWN else "ec2.Instance"
    assert kinds[seen].completeness == 1.0
    assert kinds[blind].completeness == 0.0
    assert why in " ".join(kinds[blind].errors) or "503" in " ".join(kinds[blind].errors)
    # every kind of the failing account is blind, and the other account deletes its orphan
    assert all(kinds[k].completeness == 0.0 for k in kinds if (OTHER in k) == (failing == OTHER)), (
        kinds
    )
    assert proxy.forwarded["TerminateInstances"] == 1, render_report(report)
    proxy.reset()
    survivors = two_account_rig(proxy.url)
    assert owned(survivors, account=failing) == {"a": "t3.micro", "b": "t3.micro"}
    working = OWN if failing == OTHER else OTHER
    assert owned(survivors, account=working) == {"a": "t3.micro"}


def test_an_account_without_a_role_must_be_the_credentials_own(proxy: FaultProxy) -> None:
    rig = two_account_rig(proxy.url, own="222222222222")
    obs = rig.provider.observe("ec2.Instance", 30)
    assert obs.completeness == 0.0
    assert f"the target's credentials are of account {OWN}" in obs.errors[0]
    assert rig.provider.observe(f"ec2.Instance@{OTHER}:us-east-1", 30).completeness == 1.0
    assert proxy.forwarded["DescribeInstances"] == 1  # nothing listed as the wrong account


def test_a_role_that_is_refused_names_the_role_and_no_secret(proxy: FaultProxy) -> None:
    proxy.reset(Faults(fail_ops=frozenset({"AssumeRole"})))
    rig = two_account_rig(proxy.url, external_id="ext-id-1234")
    obs = rig.provider.observe(f"ec2.Instance@{OTHER}:{EU}", 30)
    assert obs.completeness == 0.0
    assert f"sts.assume_role {ROLE}" in obs.errors[0]
    assert "ext-id-1234" not in obs.errors[0] and "testing" not in obs.errors[0]


def test_import_spans_both_accounts_and_plans_no_change(proxy: FaultProxy, tmp_path: Path) -> None:
    rig = two_account_rig(proxy.url)
    assert rig.cycle(
        [node("web"), scoped(node("web")), scoped(cluster("apps"), EU)], POLICY
    ).outcome.converged
    other = rig.provider.client("ec2", None, OTHER)
    other.run_instances(  # made by hand in the other account: not owned yet
        ImageId=AMI,
        InstanceType="t3.small",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "legacy"}]}
        ],
    )
    kinds = tuple(sorted(rig.provider.kinds()))
    snap = sense(rig.provider, kinds, target=TARGET, correlation_id="imp", clock=rig.clock)
    result = import_resources(snap, kinds)
    assert result.problems == ()
    (tmp_path / "fleet.yaml").write_text(to_yaml(result))
    desired = list(load_desired(tmp_path).resources)
    assert sorted(str(r.key) for r in desired) == sorted(
        [
            "ec2.Instance/web",
            f"ec2.Instance@{OTHER}:us-east-1/legacy",
            f"ec2.Instance@{OTHER}:us-east-1/web",
            f"ecs.Cluster@{OTHER}:{EU}/apps",
        ]
    )
    adopt = POLICY.model_copy(update={"adopt": True})
    plan = rig.cycle(desired, adopt, dry_run=True)
    assert plan.diff is not None and (plan.diff.additions, plan.diff.deletions) == ((), ())
    assert {str(m.key): [c.path for c in m.changes] for m in plan.diff.modifications} == {
        f"ec2.Instance@{OTHER}:us-east-1/legacy": [OWNERSHIP_FIELD]
    }
    assert rig.cycle(desired, adopt, manual=True).outcome.converged
    assert rig.cycle(desired, adopt, dry_run=True).outcome.status == "in_sync"
