"""Kind catalogue: for every supported kind, its spec schema and its engine rules."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel

from reconciler.catalogue import aws, sim
from reconciler.core.kinds import KindRules, region_of

__all__ = ["KindDef", "REGISTRY", "REGION_PATTERN", "ACCOUNT_PATTERN", "SCOPE_PATTERN",
           "rules_for", "known_kinds", "kind_def", "regional_kind", "split_region"]

# an AWS region name (us-east-1, eu-central-2, us-gov-west-1); `kind@region` names a kind in
# one of a multi-region target's further regions (its first region keeps the plain kind)
REGION_PATTERN = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")
ACCOUNT_PATTERN = re.compile(r"[0-9]{12}")
# what may follow `@` in a kind: a further region of the first account, or a further
# account's `<account id>:<region>` (providers/aws/session.py: places)
SCOPE_PATTERN = re.compile(rf"(?:{ACCOUNT_PATTERN.pattern}:)?{REGION_PATTERN.pattern}")


@dataclass(frozen=True)
class KindDef:
    """A kind's spec schema (pydantic, extra fields forbidden) and its engine rules."""

    spec_model: type[BaseModel]
    rules: KindRules


REGISTRY: dict[str, KindDef] = {
    "sim.Node": KindDef(sim.NodeSpec, sim.NODE_RULES),
    "sim.Workload": KindDef(sim.WorkloadSpec, sim.WORKLOAD_RULES),
    "ec2.Instance": KindDef(aws.Ec2InstanceSpec, aws.EC2_INSTANCE_RULES),
    "autoscaling.Group": KindDef(aws.AutoScalingGroupSpec, aws.AUTOSCALING_GROUP_RULES),
    "ecs.Cluster": KindDef(aws.EcsClusterSpec, aws.ECS_CLUSTER_RULES),
    "ecs.Service": KindDef(aws.EcsServiceSpec, aws.ECS_SERVICE_RULES),
}


def split_region(kind: str) -> tuple[str, str | None]:
    """``ec2.Instance@eu-west-1`` -> ``("ec2.Instance", "eu-west-1")``; a plain kind has None.
    The second part is the kind's scope: a region, or ``<account id>:<region>``."""
    return kind.partition("@")[0], region_of(kind)


def regional_kind(kind: str, region: str | None) -> str:
    return kind if region is None else f"{kind}@{region}"


def kind_def(kind: str) -> KindDef | None:
    """The definition of ``kind``, of a scoped kind too; None if unknown or badly named."""
    base, region = split_region(kind)
    if region is not None and SCOPE_PATTERN.fullmatch(region) is None:
        return None
    return REGISTRY.get(base)


def rules_for(kinds: list[str] | None = None) -> dict[str, KindRules]:
    """Rules of ``kinds`` (all plain kinds: None); a regional kind's parents are its region's."""
    if kinds is None:
        return {k: d.rules for k, d in REGISTRY.items()}
    out: dict[str, KindRules] = {}
    for kind in kinds:
        found = kind_def(kind)
        region = split_region(kind)[1]
        if found is None:
            continue
        parents = tuple(regional_kind(p, region) for p in found.rules.parents)
        out[kind] = found.rules.model_copy(update={"kind": kind, "parents": parents})
    return out


def known_kinds() -> list[str]:
    return sorted(REGISTRY)
