"""Kind catalogue: for every supported kind, its spec schema and its engine rules."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from reconciler.core.kinds import KindRules
from reconciler.kinds import aws, sim

__all__ = ["KindDef", "REGISTRY", "rules_for", "known_kinds"]


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


def rules_for(kinds: list[str] | None = None) -> dict[str, KindRules]:
    return {k: d.rules for k, d in REGISTRY.items() if kinds is None or k in kinds}


def known_kinds() -> list[str]:
    return sorted(REGISTRY)
