"""``reconcile iam-policy``: the policy allows every AWS action the provider issues, counted at
the proxy over cycles that create, adopt, update and delete every kind, and no write beyond."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.model import DesiredResource
from reconciler.core.policy import Policy
from reconciler.providers.aws.iam import (
    implied_actions,
    policy,
    read_actions,
    write_actions,
)
from tests.integration.aws.support import AMI, TARGET, Rig, boto, cluster, group, node, service
from tests.support.fault_proxy import FaultProxy

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
KINDS = ("autoscaling.Group", "ec2.Instance", "ecs.Cluster", "ecs.Service")
# reads the cycles below cannot reach, and why (the provider does issue them)
UNREACHED_READS = {
    # ecs_services._earlier_revision: a new revision is needed but the desired source no
    # longer holds the container environment's values
    "ecs:ListTaskDefinitions",
}


def _every_write(rig: Rig, proxy: FaultProxy, moto_url: str) -> set[str]:
    """Run create -> adopt + update -> delete cycles of every kind; the IAM actions issued."""
    boto(moto_url, "ec2").run_instances(  # made by hand, no owner: adopted below
        ImageId=AMI, InstanceType="t3.micro", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": "Name", "Value": "legacy"}]}])
    proxy.actions.clear()  # the rig's launch template is test set-up, not the provider's
    make = [node("web", tags={"team": "web"}), node("batch", state="stopped"),
            group("workers", tags={"team": "batch"}), cluster("apps", tags={"env": "test"}),
            service("api", "apps", count=2, tags={"team": "api"})]
    change = [node("web", instance_type="m5.large", tags={"owner": "ops"}),  # stop/modify/start
              node("batch", state="running"), node("legacy"),  # start; adopt
              group("workers", desired=1, tags={"owner": "ops"}),
              cluster("apps", tags={"owner": "ops"}),
              service("api", "apps", count=3, image="nginx:1.28", tags={"owner": "ops"})]
    remove = change[:1]
    for desired in (make, change, remove):
        report = rig.cycle(desired, Policy(adopt=True, max_delete_fraction=1.0,
                                           backoff_base_s=0.1), manual=True)
        assert report.outcome.status == "converged", report.outcome.error
    assert set(rig.fleet()) == {"ec2.Instance/web"}
    return set(proxy.actions)


def _allowed(document: dict[str, Any]) -> set[str]:
    return {a for s in document["Statement"] for a in s["Action"]}


def test_the_policy_allows_every_action_issued_and_no_write_that_was_not(
        rig: Rig, proxy: FaultProxy, moto_url: str) -> None:
    issued = _every_write(rig, proxy, moto_url)
    document = policy(TARGET, KINDS)
    assert issued - _allowed(document) == set()  # complete
    reads = read_actions(KINDS)
    assert issued <= reads | write_actions(KINDS)  # every issued action is in the table
    assert issued - reads == write_actions(KINDS)  # each write in the table was issued
    assert reads - issued == UNREACHED_READS
    # nothing else: the implied ones are authorised by AWS during an issued call
    assert _allowed(document) == issued | implied_actions(KINDS) | UNREACHED_READS


def test_the_read_only_policy_allows_exactly_what_a_plan_issues(rig: Rig,
                                                                 proxy: FaultProxy) -> None:
    proxy.actions.clear()
    report = rig.cycle([node("web"), service("api", "apps")], dry_run=True)
    assert report.plans and not report.actuations
    issued = set(proxy.actions)
    (statement,) = policy(TARGET, KINDS, read_only=True)["Statement"]
    assert issued and issued <= set(statement["Action"])
    assert "Condition" not in statement and statement["Resource"] == "*"


def _conditions_of(document: dict[str, Any], action: str) -> list[dict[str, Any] | None]:
    return [s.get("Condition") for s in document["Statement"] if action in s["Action"]]


def test_writes_are_confined_to_the_targets_tag_where_aws_allows() -> None:
    document = policy("prod", KINDS)
    owned = {"StringEquals": {"aws:ResourceTag/reconciler:target": "prod"}}
    creating = {"StringEquals": {"aws:RequestTag/reconciler:target": "prod"}}
    unowned = {**creating, "Null": {"aws:ResourceTag/reconciler:target": "true"}}
    for action in ("ec2:TerminateInstances", "ec2:ModifyInstanceAttribute", "ecs:DeleteService",
                   "ecs:UpdateService", "autoscaling:DeleteAutoScalingGroup", "ecs:UntagResource"):
        assert _conditions_of(document, action) == [owned], action
    for action in ("ecs:CreateService", "ecs:CreateCluster", "autoscaling:CreateAutoScalingGroup"):
        assert _conditions_of(document, action) == [creating], action
    # a tag write: on an owned resource, or claiming one no target owns (create, adopt)
    for action in ("ec2:CreateTags", "ecs:TagResource", "autoscaling:CreateOrUpdateTags"):
        found = sorted(json.dumps(c, sort_keys=True) for c in _conditions_of(document, action))
        assert found == sorted(json.dumps(c, sort_keys=True) for c in (owned, unowned)), action
    # RunInstances: the instance carries the tag; what it is made from cannot
    run = [s for s in document["Statement"] if "ec2:RunInstances" in s["Action"]]
    tagged = [s for s in run if s.get("Condition") == creating]
    assert [s["Resource"] for s in tagged] == ["arn:aws:ec2:*:*:instance/*"]
    assert all("instance/*" not in str(s["Resource"]) for s in run if "Condition" not in s)


def test_a_target_gets_only_its_kinds_actions() -> None:
    document = policy("prod", ["ec2.Instance", "ec2.Instance@eu-west-1"])
    assert {a.partition(":")[0] for a in _allowed(document)} == {"ec2"}
    with pytest.raises(ValueError, match="sim.Node"):
        policy("prod", ["sim.Node"])


def _reconcile(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "targets.yaml"
    config.write_text(textwrap.dedent(f"""\
        targets:
          prod:
            provider: {{type: aws, options: {{region: us-east-1, kinds: [ecs.Cluster]}}}}
            desired: desired
          lab:
            provider: {{type: simulated, options: {{state: "{tmp_path}/sim.db"}}}}
            desired: desired
        """))
    (tmp_path / "desired").mkdir(exist_ok=True)
    env = {**os.environ, "RECONCILER_CONFIG": str(config), "RECONCILER_HOME": str(tmp_path),
           "RECONCILER_STORE_URL": f"sqlite:///{tmp_path}/state.db",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "reconciler", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_cli_prints_the_targets_policy_and_refuses_a_non_aws_target(tmp_path: Path) -> None:
    out = _reconcile(tmp_path, "iam-policy", "--target", "prod")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == policy("prod", ["ecs.Cluster"])
    read_only = _reconcile(tmp_path, "iam-policy", "--target", "prod", "--read-only")
    assert read_only.returncode == 0, read_only.stderr
    assert json.loads(read_only.stdout) == policy("prod", ["ecs.Cluster"], read_only=True)
    refused = _reconcile(tmp_path, "iam-policy", "--target", "lab")
    assert refused.returncode == 1 and refused.stdout == ""
    assert "lab" in refused.stderr and "aws" in refused.stderr


def test_a_multi_account_target_needs_its_roles_policy_there_and_assume_role_here(
        proxy: FaultProxy) -> None:
    """Every action counted at the proxy over create and delete cycles in two accounts is
    allowed by the role policy (in the role's account) or the caller's (the target's own
    credentials): sts:AssumeRole on exactly the role, and no sts action in the role's."""
    from reconciler.providers.aws import aws_provider
    from reconciler.providers.aws.iam import caller_policy
    from reconciler.testing import FakeClock

    role = "arn:aws:iam::111111111111:role/reconciler"
    clock = FakeClock()
    provider = aws_provider(TARGET, {
        "endpoint_url": proxy.url, "emulator": True, "wait_interval_s": 0.0,
        "kinds": ["ec2.Instance", "ecs.Cluster"],
        "accounts": [{"id": "123456789012"}, {"id": "111111111111", "role_arn": role}]},
        sleep=clock.sleep, monotonic=clock.monotonic)
    rig = Rig(provider=provider, clock=clock)
    def there(resource: DesiredResource) -> DesiredResource:  # in the role's account
        key = resource.key.model_copy(update={"kind": f"{resource.key.kind}@111111111111:"
                                                      "us-east-1"})
        return resource.model_copy(update={"key": key})

    make = [node("web"), there(node("web")), cluster("apps"), there(cluster("apps"))]
    for desired in (make, make[:1]):
        report = rig.cycle(desired, Policy(max_delete_fraction=1.0, backoff_base_s=0.1),
                           manual=True)
        assert report.outcome.status == "converged", report.outcome.error
    issued = set(proxy.actions)
    kinds = sorted(provider.kinds())
    roles_policy = policy(TARGET, kinds)
    caller = caller_policy(TARGET, kinds, [role], direct=True)
    assert "sts:AssumeRole" in issued and "ec2:TerminateInstances" in issued
    # GetCallerIdentity checks the role-less account: AWS allows it to every principal
    assert issued - _allowed(roles_policy) - _allowed(caller) == {"sts:GetCallerIdentity"}
    assert not any(a.startswith("sts:") for a in _allowed(roles_policy))
    (assume,) = [s for s in caller["Statement"] if "sts:AssumeRole" in s["Action"]]
    assert assume["Resource"] == role and assume["Action"] == ["sts:AssumeRole"]


def test_the_cli_prints_a_multi_account_targets_role_and_caller_policies(
        tmp_path: Path) -> None:
    from reconciler.providers.aws.iam import caller_policy

    role = "arn:aws:iam::111111111111:role/reconciler"
    config = tmp_path / "targets.yaml"
    config.write_text(textwrap.dedent(f"""\
        targets:
          org:
            provider:
              type: aws
              options:
                kinds: [ecs.Cluster]
                accounts:
                  - {{id: "111111111111", role_arn: "{role}"}}
                  - {{id: "222222222222", role_arn: "{role.replace('1' * 12, '2' * 12)}"}}
            desired: desired
        """))
    # a bad sibling target makes the whole file invalid (every target is checked at load)
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text(textwrap.dedent(f"""\
        targets:
          bad:
            provider: {{type: aws, options: {{accounts: [{{id: "1", role_arn: "{role}"}}]}}}}
            desired: desired
        """))
    (tmp_path / "desired").mkdir(exist_ok=True)
    env = {**os.environ, "RECONCILER_CONFIG": str(config), "RECONCILER_HOME": str(tmp_path),
           "RECONCILER_STORE_URL": f"sqlite:///{tmp_path}/state.db",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT)])}

    def reconcile(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "reconciler", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    kinds = ["ecs.Cluster", "ecs.Cluster@222222222222:us-east-1"]
    roles = reconcile("iam-policy", "--target", "org")
    assert roles.returncode == 0, roles.stderr
    assert json.loads(roles.stdout) == policy("org", kinds)
    assert "--caller" in roles.stderr
    caller = reconcile("iam-policy", "--target", "org", "--caller")
    assert caller.returncode == 0, caller.stderr
    assert json.loads(caller.stdout) == caller_policy(
        "org", kinds, [role, role.replace("1" * 12, "2" * 12)], direct=False)
    bad = reconcile("--config", str(bad_config), "validate", "--target", "bad")
    assert bad.returncode == 1 and bad.stdout == ""
    assert (f"{bad_config}:3: targets.bad.provider.options.accounts[0].id: an AWS account id is "
            "12 digits, quoted") in bad.stderr
