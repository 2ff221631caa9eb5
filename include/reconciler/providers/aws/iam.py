"""The least-privilege IAM policy a target's aws provider needs, built from a per-kind table.

Each kind names the IAM actions its requests are (``service:Operation``, exactly the request's
operation name: what ``tests/integration/aws/test_iam_policy.py`` counts at the proxy), and
for each write how AWS lets a policy confine it to the target's own resources, i.e. those
tagged ``reconciler:target = <target>`` (``tags.TARGET_TAG``):

- ``owned``: ``aws:ResourceTag/reconciler:target`` on the resource acted on;
- ``create``: ``aws:RequestTag/reconciler:target`` on the create request (the ownership tag
  is sent with every create);
- ``tag``: a tag write — on an owned resource, or one that sends the ownership tag to a
  resource no target owns yet (a create's tags, an adoption: ``Null`` on the resource tag,
  so another target's resource can never be taken over);
- ``none``: no condition (AWS offers none for the action, or we are not sure it does).

Condition support is as the Service Authorization Reference documents it, per service:
- EC2: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html
  (Describe* take no resource and no tag condition; instance actions take aws:ResourceTag;
  RunInstances takes aws:RequestTag on the instance it makes, not on the image, subnet,
  security group, network interface, volume or key pair it uses — hence two statements, as in
  the EC2 guide's "require tags on instance creation" example).
- Auto Scaling: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2autoscaling.html
- ECS: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerservice.html

``implied`` lists actions AWS authorises on the caller's behalf during one of ours, which no
request shows: ec2:CreateTags for RunInstances' TagSpecifications; ecs:TagResource for tags
sent with CreateCluster, CreateService and RegisterTaskDefinition (ECS's "tag on create"
authorisation); ec2:RunInstances on the launch template for Create/UpdateAutoScalingGroup
(the Auto Scaling guide's launch template permissions). Left out on purpose: iam:PassRole
(the provider sets no task, execution or instance role) and iam:CreateServiceLinkedRole (the
ECS and Auto Scaling service-linked roles exist once per account; create them beforehand).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from reconciler.catalogue import split_region
from reconciler.providers.aws.tags import TARGET_TAG

__all__ = ["KINDS", "KindPermissions", "Write", "policy", "caller_policy", "read_actions",
           "write_actions", "implied_actions", "ASSUME_ROLE"]

ASSUME_ROLE = "sts:AssumeRole"

Scope = Literal["owned", "create", "tag", "none"]
_EC2_USED = tuple(f"arn:aws:ec2:*:*:{r}/*" for r in (
    "image", "subnet", "security-group", "network-interface", "volume", "key-pair"))


@dataclass(frozen=True)
class Write:
    """One write action, how it is confined to the target, and on which resources."""

    action: str
    scope: Scope
    resources: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class KindPermissions:
    reads: tuple[str, ...]
    writes: tuple[Write, ...]
    implied: tuple[Write, ...] = ()


KINDS: dict[str, KindPermissions] = {
    "ec2.Instance": KindPermissions(
        reads=("ec2:DescribeInstances", "ec2:DescribeTags"),
        writes=(
            Write("ec2:RunInstances", "create", ("arn:aws:ec2:*:*:instance/*",)),
            Write("ec2:RunInstances", "none", _EC2_USED),  # what the instance is made from
            Write("ec2:CreateTags", "tag", ("arn:aws:ec2:*:*:instance/*",)),
            Write("ec2:DeleteTags", "owned", ("arn:aws:ec2:*:*:instance/*",)),
            Write("ec2:StartInstances", "owned", ("arn:aws:ec2:*:*:instance/*",)),
            Write("ec2:StopInstances", "owned", ("arn:aws:ec2:*:*:instance/*",)),
            Write("ec2:ModifyInstanceAttribute", "owned", ("arn:aws:ec2:*:*:instance/*",)),
            Write("ec2:TerminateInstances", "owned", ("arn:aws:ec2:*:*:instance/*",)),
        ),
        implied=(Write("ec2:CreateTags", "tag", ("arn:aws:ec2:*:*:instance/*",)),),
    ),
    "autoscaling.Group": KindPermissions(
        reads=("autoscaling:DescribeAutoScalingGroups",),
        writes=(
            Write("autoscaling:CreateAutoScalingGroup", "create"),
            Write("autoscaling:UpdateAutoScalingGroup", "owned"),
            Write("autoscaling:DeleteAutoScalingGroup", "owned"),
            Write("autoscaling:CreateOrUpdateTags", "tag"),
            Write("autoscaling:DeleteTags", "owned"),
        ),
        # unsure which resources AWS checks here: scoped to launch templates, unconditioned
        implied=(Write("ec2:RunInstances", "none", ("arn:aws:ec2:*:*:launch-template/*",)),),
    ),
    "ecs.Cluster": KindPermissions(
        reads=("ecs:ListClusters", "ecs:DescribeClusters"),
        writes=(
            Write("ecs:CreateCluster", "create"),
            Write("ecs:DeleteCluster", "owned"),
            Write("ecs:TagResource", "tag"),
            Write("ecs:UntagResource", "owned"),
        ),
        implied=(Write("ecs:TagResource", "tag"),),
    ),
    "ecs.Service": KindPermissions(
        reads=("ecs:ListClusters", "ecs:DescribeClusters", "ecs:ListServices",
               "ecs:DescribeServices", "ecs:DescribeTaskDefinition", "ecs:ListTaskDefinitions"),
        writes=(
            Write("ecs:RegisterTaskDefinition", "create"),
            Write("ecs:CreateService", "create"),
            Write("ecs:UpdateService", "owned"),
            Write("ecs:DeleteService", "owned"),
            Write("ecs:TagResource", "tag"),
            Write("ecs:UntagResource", "owned"),
        ),
        implied=(Write("ecs:TagResource", "tag"),),
    ),
}


def _table(kinds: Iterable[str]) -> list[KindPermissions]:
    """The entries of ``kinds`` (``kind@region`` counts as its kind); unknown kinds refused."""
    names = sorted({split_region(k)[0] for k in kinds})
    unknown = [k for k in names if k not in KINDS]
    if unknown:
        raise ValueError(f"no IAM permissions known for kind(s) {', '.join(unknown)}")
    return [KINDS[k] for k in names]


def read_actions(kinds: Iterable[str]) -> set[str]:
    return {a for p in _table(kinds) for a in p.reads}


def write_actions(kinds: Iterable[str]) -> set[str]:
    """The write actions the provider itself requests (what the proxy can count)."""
    return {w.action for p in _table(kinds) for w in p.writes}


def implied_actions(kinds: Iterable[str]) -> set[str]:
    return {w.action for p in _table(kinds) for w in p.implied}


def _conditions(scope: Scope, target: str) -> list[tuple[str, dict[str, Any] | None]]:
    """Named IAM condition blocks for ``scope``; several are several statements (either may
    allow)."""
    owned = {"StringEquals": {f"aws:ResourceTag/{TARGET_TAG}": target}}
    sends = {"StringEquals": {f"aws:RequestTag/{TARGET_TAG}": target}}
    unowned = {**sends, "Null": {f"aws:ResourceTag/{TARGET_TAG}": "true"}}
    named: dict[Scope, list[tuple[str, dict[str, Any] | None]]] = {
        "owned": [("Owned", owned)], "create": [("Create", sends)],
        "tag": [("Owned", owned), ("Unowned", unowned)], "none": [("Unconditioned", None)]}
    return named[scope]


def policy(target: str, kinds: Iterable[str], *, read_only: bool = False) -> dict[str, Any]:
    """The IAM policy document: one read statement, then the writes grouped by condition."""
    table = _table(kinds)
    statements: list[dict[str, Any]] = [{
        "Sid": "ReconcilerRead", "Effect": "Allow",
        "Action": sorted({a for p in table for a in p.reads}), "Resource": "*"}]
    if read_only:
        return {"Version": "2012-10-17", "Statement": statements}
    grouped: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}
    for write in (w for p in table for w in (*p.writes, *p.implied)):
        for name, condition in _conditions(write.scope, target):
            key = (name, json.dumps(condition, sort_keys=True), write.resources)
            grouped.setdefault(key, set()).add(write.action)
    for i, ((name, text, resources), actions) in enumerate(sorted(grouped.items()), 1):
        statement: dict[str, Any] = {
            "Sid": f"ReconcilerWrite{name}{i}", "Effect": "Allow", "Action": sorted(actions),
            "Resource": list(resources) if len(resources) > 1 else resources[0]}
        if (found := json.loads(text)) is not None:
            statement["Condition"] = found
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}


def caller_policy(target: str, kinds: Iterable[str], role_arns: Iterable[str], *,
                  direct: bool = True, read_only: bool = False) -> dict[str, Any]:
    """The policy of the target's own credentials in a multi-account target: ``sts:AssumeRole``
    on exactly the roles its accounts name (each role then needs ``policy()`` in its account),
    plus ``policy()`` itself when ``direct`` (an account is acted on without a role).
    ``sts:GetCallerIdentity``, which checks such an account, needs no permission."""
    roles = sorted(set(role_arns))
    document = policy(target, kinds, read_only=read_only) if direct else {
        "Version": "2012-10-17", "Statement": []}
    if roles:
        document["Statement"].append({"Sid": "ReconcilerAssumeAccountRoles", "Effect": "Allow",
                                      "Action": [ASSUME_ROLE],
                                      "Resource": roles if len(roles) > 1 else roles[0]})
    return document
