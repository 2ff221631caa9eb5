"""A recording fake of the aws provider's ``Caller``: one resource per kind, in AWS's shapes.

Reads are answered from that resource; every mutating call is recorded (and the few a
later read depends on, like a stop or a new task definition, are applied), so a test sees
exactly the payloads a kind module sends.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from reconciler.catalogue.aws import EcsContainerSpec
from reconciler.core.errors import PermanentError
from reconciler.providers.aws.calls import Deadline, is_mutating
from reconciler.providers.aws.ecs_services import containers_to_aws, family
from reconciler.providers.aws.session import AwsOptions
from reconciler.providers.aws.tags import ownership_tags

__all__ = ["RecordingCaller"]

ARN = "arn:aws:ecs:us-east-1:123456789012"


def _tags(target: str, name: str, protected: bool, user: Mapping[str, str],
          key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
    tags = {**user, **ownership_tags(target, name, protected)}
    return [{key: k, value: v} for k, v in tags.items()]


class RecordingCaller:
    """Stands in for ``Caller``: ``writes`` holds ``(service.operation, kwargs)`` in order."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.options = AwsOptions(wait_interval_s=0.0)
        self.writes: list[tuple[str, dict[str, Any]]] = []
        self.group: dict[str, Any] | None = None
        self.instance: dict[str, Any] | None = None
        self.cluster: dict[str, Any] | None = None
        self.service: dict[str, Any] | None = None
        self.definitions: dict[str, list[dict[str, Any]]] = {}  # arn -> container definitions
        self._now = 0.0

    # -- the Caller surface the kind modules use --------------------------------------------

    def monotonic(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        self._now += seconds

    def deadline(self, timeout_s: float) -> Deadline:
        return Deadline(self._now + timeout_s, self.monotonic)

    def call(self, service: str, operation: str, /, *, timeout_s: float | None = None,
             **kwargs: Any) -> dict[str, Any]:
        if is_mutating(operation):
            self.writes.append((f"{service}.{operation}", kwargs))
        answer = getattr(self, f"_{service}_{operation}", None)
        return answer(**kwargs) if answer else {}

    def read(self, service: str, operation: str, deadline: Deadline, /,
             **kwargs: Any) -> dict[str, Any]:
        return self.call(service, operation, **kwargs)

    def pages(self, service: str, operation: str, deadline: Deadline, /, *,
              page_size: int | None = None, **kwargs: Any) -> Iterator[dict[str, Any]]:
        yield self.call(service, operation, **kwargs)

    # -- resources, from a normalised spec ---------------------------------------------------

    def put_group(self, name: str, spec: Mapping[str, Any], protected: bool) -> None:
        template = spec["launch_template"]
        self.group = {
            "AutoScalingGroupName": name, "AutoScalingGroupARN": f"arn:asg/{name}",
            "LaunchTemplate": {"LaunchTemplateName": template["name"],
                               "Version": template["version"]},
            "MinSize": spec["min_size"], "MaxSize": spec["max_size"],
            "DesiredCapacity": spec["desired_capacity"],
            "AvailabilityZones": list(spec["availability_zones"]), "Instances": [],
            "Tags": _tags(self.target, name, protected, spec["tags"]),
        }

    def put_instance(self, name: str, spec: Mapping[str, Any], protected: bool) -> None:
        tags = _tags(self.target, name, protected, {**spec["tags"], "Name": name})
        self.instance = {"InstanceId": "i-0001", "ImageId": spec["image_id"],
                         "InstanceType": spec["instance_type"], "LaunchTime": "2026-01-01",
                         "State": {"Name": spec["state"]}, "Tags": tags}

    def put_cluster(self, name: str, spec: Mapping[str, Any], protected: bool) -> None:
        self.cluster = {"clusterName": name, "clusterArn": f"{ARN}:cluster/{name}",
                        "status": "ACTIVE",
                        "tags": _tags(self.target, name, protected, spec["tags"], "key", "value")}

    def put_service(self, name: str, spec: Mapping[str, Any], protected: bool) -> None:
        cluster = spec["cluster"]
        self.put_cluster(cluster, {"tags": {}}, False)
        arn = f"{ARN}:task-definition/{family(self.target, name)}:1"
        containers = [EcsContainerSpec.model_validate(c) for c in spec["containers"]]
        self.definitions[arn] = containers_to_aws(containers)
        self.service = {
            "serviceName": name, "serviceArn": f"{ARN}:service/{cluster}/{name}",
            "clusterArn": f"{ARN}:cluster/{cluster}", "status": "ACTIVE",
            "desiredCount": spec["desired_count"], "runningCount": 0,
            "launchType": spec["launch_type"], "taskDefinition": arn,
            "tags": _tags(self.target, name, protected, spec["tags"], "key", "value"),
        }

    # -- autoscaling -------------------------------------------------------------------------

    def _autoscaling_describe_auto_scaling_groups(self, **_: Any) -> dict[str, Any]:
        return {"AutoScalingGroups": [self.group] if self.group else []}

    # -- ec2 ---------------------------------------------------------------------------------

    def _ec2_describe_instances(self, **_: Any) -> dict[str, Any]:
        return {"Reservations": [{"Instances": [self.instance]}] if self.instance else []}

    def _ec2_describe_tags(self, Filters: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        want = {f["Name"]: f["Values"][0] for f in Filters}
        found = [t for t in (self.instance or {}).get("Tags", ())
                 if t["Key"] == want.get("key") and t["Value"] == want.get("value")]
        return {"Tags": [{"ResourceId": self.instance["InstanceId"]}] if found else []}

    def _ec2_stop_instances(self, **_: Any) -> dict[str, Any]:
        if self.instance:
            self.instance["State"] = {"Name": "stopped"}
        return {}

    # -- ecs ---------------------------------------------------------------------------------

    def _ecs_list_clusters(self, **_: Any) -> dict[str, Any]:
        return {"clusterArns": [self.cluster["clusterArn"]] if self.cluster else []}

    def _ecs_describe_clusters(self, clusters: list[str], **_: Any) -> dict[str, Any]:
        c = self.cluster
        hit = c is not None and (c["clusterName"] in clusters or c["clusterArn"] in clusters)
        return {"clusters": [c] if hit else []}

    def _ecs_list_services(self, **_: Any) -> dict[str, Any]:
        return {"serviceArns": [self.service["serviceArn"]] if self.service else []}

    def _ecs_describe_services(self, services: list[str], **_: Any) -> dict[str, Any]:
        s = self.service
        hit = s is not None and (s["serviceName"] in services or s["serviceArn"] in services)
        return {"services": [s] if hit else []}

    def _ecs_describe_task_definition(self, taskDefinition: str) -> dict[str, Any]:  # noqa: N803
        arns = [a for a in self.definitions
                if a == taskDefinition or a.rpartition(":")[0].endswith(f"/{taskDefinition}")]
        if not arns:
            raise PermanentError(f"no task definition {taskDefinition}")
        arn = max(arns, key=lambda a: int(a.rpartition(":")[2]))
        return {"taskDefinition": {"taskDefinitionArn": arn,
                                   "containerDefinitions": self.definitions[arn]}}

    def _ecs_register_task_definition(self, family: str, containerDefinitions: list[Any],  # noqa: N803
                                      **_: Any) -> dict[str, Any]:
        arn = f"{ARN}:task-definition/{family}:{len(self.definitions) + 1}"
        self.definitions[arn] = containerDefinitions
        return {"taskDefinition": {"taskDefinitionArn": arn}}
