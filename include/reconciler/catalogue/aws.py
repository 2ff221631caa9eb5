"""Spec schemas and engine rules of the AWS kinds: instances, node groups, clusters, services."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from reconciler.core.kinds import KindRules
from reconciler.digests import digest, keeping_clear

__all__ = [
    "OWNERSHIP_PREFIX",
    "Ec2InstanceSpec",
    "LaunchTemplateRef",
    "AutoScalingGroupSpec",
    "EcsClusterSpec",
    "PortMapping",
    "EcsSecret",
    "EcsContainerSpec",
    "EcsServiceSpec",
    "EC2_INSTANCE_RULES",
    "AUTOSCALING_GROUP_RULES",
    "ECS_CLUSTER_RULES",
    "ECS_SERVICE_RULES",
]

OWNERSHIP_PREFIX = "reconciler:"  # tag keys the provider owns; never part of a spec's tags
_RESERVED_TAGS = ("aws:", OWNERSHIP_PREFIX)
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
_Tags = dict[str, str]
# ECS valueFrom: an SSM parameter or Secrets Manager ARN (any partition), or an SSM parameter name
_VALUE_FROM = re.compile(
    r"arn:aws[a-z-]*:(ssm|secretsmanager):[a-z0-9-]*:[0-9]*:\S+"
    r"|/?[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*"
)


def _check_tags(tags: _Tags) -> _Tags:
    for key, value in tags.items():
        if key == "Name" or key.startswith(_RESERVED_TAGS):
            raise ValueError(f"tag {key!r} is set by the provider; remove it from the spec")
        if not 1 <= len(key) <= 128 or len(value) > 256:
            raise ValueError(f"tag {key!r}: keys are 1-128 and values 0-256 characters")
    return tags


class _Spec(BaseModel):
    """Frozen, strict, and serialised without unset optional fields.

    An optional field left out (``None``) is not part of the dumped spec, so compare ignores
    whatever AWS picked for it (a default subnet, the zones of an ASG's subnets).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None}


class Ec2InstanceSpec(_Spec):
    image_id: str = Field(min_length=1, max_length=128)
    instance_type: str = Field(min_length=1, max_length=64)
    subnet_id: str | None = Field(default=None, min_length=1, max_length=64)
    state: Literal["running", "stopped"] = "running"
    tags: _Tags = Field(default_factory=dict)

    _tags_ok = field_validator("tags")(_check_tags)


class LaunchTemplateRef(_Spec):
    name: str = Field(min_length=3, max_length=128)
    version: str = Field(default="$Default", min_length=1, max_length=32)


class AutoScalingGroupSpec(_Spec):
    launch_template: LaunchTemplateRef
    min_size: int = Field(ge=0, le=10000)
    max_size: int = Field(ge=0, le=10000)
    desired_capacity: int = Field(ge=0, le=10000)
    availability_zones: list[str] | None = None
    subnet_ids: list[str] | None = None
    tags: _Tags = Field(default_factory=dict)

    _tags_ok = field_validator("tags")(_check_tags)

    @field_validator("availability_zones", "subnet_ids")
    @classmethod
    def _sorted_unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("give at least one entry, or leave the field out")
        return None if value is None else sorted(set(value))

    @model_validator(mode="after")
    def _consistent(self) -> AutoScalingGroupSpec:
        if not self.min_size <= self.desired_capacity <= self.max_size:
            raise ValueError("need min_size <= desired_capacity <= max_size")
        if (self.availability_zones is None) == (self.subnet_ids is None):
            raise ValueError("give exactly one of availability_zones and subnet_ids")
        return self


class EcsClusterSpec(_Spec):
    tags: _Tags = Field(default_factory=dict)

    _tags_ok = field_validator("tags")(_check_tags)


class PortMapping(_Spec):
    container_port: int = Field(ge=1, le=65535)
    host_port: int | None = Field(default=None, ge=0, le=65535)
    protocol: Literal["tcp", "udp"] = "tcp"

    @model_validator(mode="before")
    @classmethod
    def _same_port_is_unset(cls, data: Any) -> Any:
        # AWS reports hostPort == containerPort under awsvpc even when it was not given
        if isinstance(data, dict) and data.get("host_port") == data.get("container_port"):
            return {k: v for k, v in data.items() if k != "host_port"}
        return data


class EcsSecret(_Spec):
    """An environment variable ECS fills from SSM Parameter Store or Secrets Manager.

    ``value_from`` is the parameter's or secret's ARN (or SSM name): a pointer, not the value,
    so it is kept and compared in clear. The recommended way to give a container a secret.
    """

    name: str = Field(min_length=1, max_length=255)
    value_from: str = Field(min_length=1, max_length=2048)

    @field_validator("value_from")
    @classmethod
    def _a_pointer(cls, value: str) -> str:
        # kept and shown in clear: a value that names nothing may be the secret itself
        if _VALUE_FROM.fullmatch(value) is None:
            raise ValueError(
                "value_from names an SSM parameter or a Secrets Manager secret (an "
                "arn:aws:ssm:... or arn:aws:secretsmanager:... ARN, or a parameter "
                "name of A-Z a-z 0-9 _ . - /), never the secret value itself"
            )
        return value


class EcsContainerSpec(_Spec):
    """One container. ``environment`` values are digested (reconciler.digests) as soon as the
    spec is validated: only ``hmac:...`` digests are ever kept, compared or shown."""

    name: str = Field(pattern=_NAME)
    image: str = Field(min_length=1, max_length=255)
    cpu: int = Field(default=0, ge=0, le=65536)
    memory: int = Field(default=128, ge=6, le=1_000_000)
    essential: bool = True
    environment: dict[str, str] = Field(default_factory=dict)
    secrets: list[EcsSecret] | None = None  # None (left out) and [] both mean none
    port_mappings: list[PortMapping] = Field(default_factory=list)

    @field_validator("environment")
    @classmethod
    def _digested(cls, value: dict[str, str]) -> dict[str, str]:
        if keeping_clear():
            return value
        return {k: digest(v) for k, v in value.items()}

    @field_validator("secrets")
    @classmethod
    def _sorted_secrets(cls, value: list[EcsSecret] | None) -> list[EcsSecret] | None:
        if not value:
            return None
        names = [s.name for s in value]
        if len(set(names)) != len(names):
            raise ValueError("secret names must be unique within a container")
        return sorted(value, key=lambda s: s.name)

    @model_validator(mode="after")
    def _env_or_secret(self) -> EcsContainerSpec:
        both = sorted(set(self.environment) & {s.name for s in self.secrets or ()})
        if both:
            raise ValueError(f"{', '.join(both)}: set in both environment and secrets")
        return self


class EcsServiceSpec(_Spec):
    cluster: str = Field(pattern=_NAME)
    desired_count: int = Field(ge=0, le=10000)
    launch_type: Literal["EC2", "FARGATE", "EXTERNAL"] = "EC2"
    containers: list[EcsContainerSpec] = Field(min_length=1, max_length=10)
    tags: _Tags = Field(default_factory=dict)

    _tags_ok = field_validator("tags")(_check_tags)

    @field_validator("containers")
    @classmethod
    def _unique_names(cls, value: list[EcsContainerSpec]) -> list[EcsContainerSpec]:
        names = [c.name for c in value]
        if len(set(names)) != len(names):
            raise ValueError("container names must be unique within a service")
        return value


EC2_INSTANCE_RULES = KindRules(
    kind="ec2.Instance",
    capacity_fields=("state",),
    risky_fields=("instance_type",),  # stop -> modify -> start
    cosmetic_fields=("tags",),
    durations_s={"create": 5.0, "update": 3.0, "delete": 5.0},
)

AUTOSCALING_GROUP_RULES = KindRules(
    kind="autoscaling.Group",
    capacity_fields=("desired_capacity", "min_size"),
    risky_fields=("launch_template",),
    cosmetic_fields=("tags",),
    durations_s={"create": 3.0, "update": 2.0, "delete": 10.0},
)

ECS_CLUSTER_RULES = KindRules(
    kind="ecs.Cluster",
    cosmetic_fields=("tags",),
    durations_s={"create": 2.0, "update": 1.0, "delete": 3.0},
)

ECS_SERVICE_RULES = KindRules(
    kind="ecs.Service",
    parents=("ecs.Cluster",),
    capacity_fields=("desired_count",),
    risky_fields=("containers", "launch_type"),  # a new task definition revision rolls tasks
    cosmetic_fields=("tags",),
    durations_s={"create": 3.0, "update": 3.0, "delete": 5.0},
)
