"""Spec schemas and rules of the simulated provider's kinds: nodes and workloads."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reconciler.core.kinds import KindRules

__all__ = ["NodeSpec", "ContainerSpec", "WorkloadSpec", "NODE_RULES", "WORKLOAD_RULES"]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NodeSpec(_Spec):
    pool: str = Field(default="default", pattern=_NAME)
    instance_type: str = Field(default="m5.large", min_length=1, max_length=64)
    zone: str = Field(default="zone-a", min_length=1, max_length=64)
    state: Literal["running", "stopped"] = "running"
    labels: dict[str, str] = Field(default_factory=dict)


class ContainerSpec(_Spec):
    name: str = Field(pattern=_NAME)
    image: str = Field(min_length=1, max_length=255)
    cpu: int = Field(default=100, ge=1, le=64000)
    memory: int = Field(default=128, ge=4, le=512000)
    env: dict[str, str] = Field(default_factory=dict)


class WorkloadSpec(_Spec):
    replicas: int = Field(ge=0, le=10000)
    containers: list[ContainerSpec] = Field(min_length=1, max_length=32)
    node_pool: str = Field(default="default", pattern=_NAME)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("containers")
    @classmethod
    def _unique_names(cls, value: list[ContainerSpec]) -> list[ContainerSpec]:
        names = [c.name for c in value]
        if len(set(names)) != len(names):
            raise ValueError("container names must be unique within a workload")
        return value


NODE_RULES = KindRules(
    kind="sim.Node",
    capacity_fields=("state",),
    risky_fields=("instance_type", "zone"),
    durations_s={"create": 4.0, "update": 1.0, "delete": 2.0},
)

WORKLOAD_RULES = KindRules(
    kind="sim.Workload",
    parents=("sim.Node",),
    capacity_fields=("replicas",),
    risky_fields=("containers",),
    durations_s={"create": 2.0, "update": 1.0, "delete": 1.0},
)
