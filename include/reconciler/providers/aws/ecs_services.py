"""``ecs.Service``: workloads whose containers are their task definition's container definitions."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

from reconciler.awserrors import AwsTemporaryError
from reconciler.catalogue.aws import EcsContainerSpec, EcsServiceSpec
from reconciler.core.errors import PermanentError, ReconcilerError
from reconciler.core.fields import FieldSet, fields_of
from reconciler.core.model import Action, Observation, ObservedResource, OperationResult
from reconciler.digests import digest
from reconciler.providers.aws.base import (
    KindContext,
    KindHandler,
    Listing,
    check_owned,
    desired_spec,
    normalised,
    observed,
    tag_plan,
)
from reconciler.providers.aws.calls import Deadline
from reconciler.providers.aws.ecs import active_clusters, chunks, resource_tags
from reconciler.providers.aws.tags import ownership_of, ownership_tags, tag_dict, user_tags

__all__ = ["SERVICE_KIND", "EcsServices", "containers_to_aws", "containers_from_aws", "family"]

SERVICE_KIND = "ecs.Service"
_DESCRIBE_SERVICES = 10  # DescribeServices takes at most 10 names
_REVISIONS = 10  # revisions of a family searched for one whose containers match (an undo)


def family(target: str, name: str) -> str:
    """The task definition family of a service: ``rc-<target>-<name>``, ECS-safe."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"rc-{target}-{name}")[:255]


def containers_to_aws(containers: list[EcsContainerSpec]) -> list[dict[str, Any]]:
    """Container definitions as RegisterTaskDefinition takes them (environment values as given:
    the caller resolves them to clear values, see ``EcsServices._clear``)."""
    out = []
    for c in containers:
        ports = []
        for p in c.port_mappings:
            port: dict[str, Any] = {"containerPort": p.container_port, "protocol": p.protocol}
            if p.host_port is not None:
                port["hostPort"] = p.host_port
            ports.append(port)
        definition: dict[str, Any] = {
            "name": c.name, "image": c.image, "cpu": c.cpu, "memory": c.memory,
            "essential": c.essential, "portMappings": ports,
            "environment": [{"name": k, "value": v} for k, v in sorted(c.environment.items())],
        }
        if c.secrets:
            definition["secrets"] = [{"name": s.name, "valueFrom": s.value_from}
                                     for s in c.secrets]
        out.append(definition)
    return out


def containers_from_aws(definitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Container definitions in the spec's form; environment values digested right here, for
    owned and unowned services alike, so no value outlives this call."""
    return [normalised(EcsContainerSpec, {
        "name": d.get("name", ""), "image": d.get("image", ""), "cpu": d.get("cpu", 0),
        "memory": d.get("memory") or d.get("memoryReservation") or 0,
        "essential": d.get("essential", True),
        "environment": {str(e.get("name", "")): digest(str(e.get("value", "")))
                        for e in d.get("environment") or ()},
        **({"secrets": [{"name": x.get("name", ""), "value_from": x.get("valueFrom", "")}
                        for x in d["secrets"]]} if d.get("secrets") else {}),
        "port_mappings": [{"container_port": p.get("containerPort"), "host_port": p.get("hostPort"),
                           "protocol": p.get("protocol", "tcp")}
                          for p in d.get("portMappings") or ()],
    }) for d in definitions]


def _matching(digests: Mapping[str, str], values: Mapping[str, Any]) -> dict[str, str] | None:
    """``values`` for every name in ``digests`` if each digests to it, else None."""
    out = {}
    for name, want in digests.items():
        value = values.get(name)
        if not isinstance(value, str) or digest(value) != want:
            return None
        out[name] = value
    return out


def _cluster_of(service: dict[str, Any]) -> str:
    return str(service.get("clusterArn", "")).rpartition("/")[2]


class EcsServices(KindHandler):
    """One target's ECS services, named by the resource name, in the cluster their spec names."""

    kind = SERVICE_KIND

    def __init__(self, ctx: KindContext) -> None:
        self.ctx = ctx
        self.call = ctx.caller.call
        self._definitions: dict[str, list[dict[str, Any]]] = {}  # arn -> containers (immutable)
        self._lock = threading.Lock()

    # -- observe -------------------------------------------------------------------------

    def observe(self, timeout_s: float) -> Observation:
        listing = Listing(SERVICE_KIND)
        try:
            clusters = active_clusters(self.ctx, timeout_s, Listing(SERVICE_KIND))
            deadline = self.ctx.caller.deadline(timeout_s)
            for cluster in clusters:
                self._observe_cluster(cluster, deadline.left(), listing)
        except ReconcilerError as exc:
            listing.failed(exc)
        return listing.observation()

    def _observe_cluster(self, cluster: dict[str, Any], timeout_s: float, listing: Listing) -> None:
        arn, name = cluster["clusterArn"], cluster["clusterName"]
        deadline = self.ctx.caller.deadline(timeout_s)
        arns: list[str] = []
        for page in self.ctx.caller.pages("ecs", "list_services", deadline, page_size=100,
                                          cluster=arn):
            # new-format ARNs name their cluster: drop services of look-alike clusters early
            arns.extend(a for a in page.get("serviceArns", ()) if a.count("/") < 2
                        or a.split("/")[-2] == name)
        for batch in chunks(sorted(set(arns)), _DESCRIBE_SERVICES):
            try:
                found = self.ctx.caller.read("ecs", "describe_services", deadline, cluster=arn,
                                             services=batch, include=["TAGS"])
                for service in found.get("services", ()):
                    if service.get("status") == "ACTIVE" and service.get("clusterArn") == arn:
                        self._add(listing, service, deadline)
            except ReconcilerError as exc:
                listing.failed(exc, lost=len(batch))
                continue
            listing.done += len(batch)

    def _add(self, listing: Listing, service: dict[str, Any], deadline: Deadline) -> None:
        owner = ownership_of(tag_dict(service.get("tags")))
        mine = owner.owned_by(self.ctx.target)
        spec = self._spec(service, deadline)
        listing.add(observed(SERVICE_KIND, service["serviceName"], spec, owner,
                             mine, service.get("serviceArn")),
                    (str(service.get("createdAt", "")), service.get("serviceArn", "")))

    def _spec(self, service: dict[str, Any], deadline: Deadline | None = None) -> dict[str, Any]:
        definition = service.get("taskDefinition", "")
        return {
            "cluster": _cluster_of(service),
            "desired_count": service.get("desiredCount", 0),
            "launch_type": service.get("launchType") or "EC2",
            "containers": self._containers(definition, deadline),
            "tags": user_tags(tag_dict(service.get("tags"))),
            "running_count": service.get("runningCount", 0),  # provider-only: the instances
            "task_definition": definition,  # provider-only
        }

    def _containers(self, arn: str, deadline: Deadline | None = None) -> list[dict[str, Any]]:
        with self._lock:
            cached = self._definitions.get(arn)
        if cached is None and arn:
            found = self.ctx.caller.read("ecs", "describe_task_definition",
                                         deadline or self.ctx.caller.deadline(60.0),
                                         taskDefinition=arn)
            cached = containers_from_aws(found["taskDefinition"].get("containerDefinitions", []))
            with self._lock:
                self._definitions[arn] = cached
        return list(cached or [])

    # -- apply ---------------------------------------------------------------------------

    def apply(self, action: Action) -> OperationResult:
        if action.type == "delete":
            return self._delete(action)
        spec = desired_spec(action, EcsServiceSpec)
        service = self._get(spec.cluster, action.target.name)
        if service is None:
            return self._create(action, spec)
        adopt = check_owned(self.ctx, action, ownership_of(tag_dict(service.get("tags"))))
        return self._converge(action, service, spec, adopt)

    def read(self, action: Action) -> ObservedResource | None:
        cluster = (action.params.get("spec") or {}).get("cluster")
        if not cluster:
            raise LookupError(f"{action.target}: no cluster to look in")
        service = self._get(str(cluster), action.target.name)
        if service is None:
            return None
        owner = ownership_of(tag_dict(service.get("tags")))
        return observed(SERVICE_KIND, action.target.name, self._spec(service), owner,
                        owner.owned_by(self.ctx.target), service.get("serviceArn"))

    def _get(self, cluster: str, name: str) -> dict[str, Any] | None:
        try:
            found = self.call("ecs", "describe_services", cluster=cluster, services=[name],
                              include=["TAGS"])
        except PermanentError as exc:
            if getattr(exc, "code", "") == "ClusterNotFoundException":
                return None
            raise
        live = [s for s in found.get("services", ())
                if s.get("status") == "ACTIVE" and s.get("serviceName") == name
                and _cluster_of(s) == cluster]
        return live[0] if live else None

    def _task_definition(self, action: Action, spec: EcsServiceSpec) -> str:
        """The latest revision of the family if its containers match, else a new revision.

        The spec holds environment digests; a new revision needs the values, read from the
        desired source now and checked against the digests (``_clear``). When they cannot be
        had (an undo restores values no source holds, or the source changed since this cycle
        read it), an older revision of the family with the same containers is used instead.
        """
        fam = family(self.ctx.target, action.target.name)
        wanted = [c.model_dump(mode="json") for c in spec.containers]
        try:
            latest = self.call("ecs", "describe_task_definition", taskDefinition=fam)
            definition = latest["taskDefinition"]
            if containers_from_aws(definition.get("containerDefinitions", [])) == wanted:
                return str(definition["taskDefinitionArn"])
        except PermanentError:
            pass  # no revision yet
        clear = self._clear(action, spec)
        if clear is None:
            return self._earlier_revision(action, fam, wanted)
        tags = ownership_tags(self.ctx.target, action.target.name, False)
        made = self.call("ecs", "register_task_definition", family=fam,
                         containerDefinitions=containers_to_aws(clear),
                         tags=[{"key": k, "value": v} for k, v in tags.items()])
        return str(made["taskDefinition"]["taskDefinitionArn"])

    def _clear(self, action: Action, spec: EcsServiceSpec) -> list[EcsContainerSpec] | None:
        """The containers with clear environment values whose digests are the spec's, or None.

        Values come from the desired source at this moment (``KindContext.clear_spec``), never
        from the plan, which holds digests only; they live in memory for this one call.
        """
        if not any(c.environment for c in spec.containers):
            return list(spec.containers)
        found = self.ctx.clear_spec(action.target) if self.ctx.clear_spec else None
        if found is None:
            return None
        declared = {str(c.get("name")): c.get("environment") or {}
                    for c in found.get("containers") or () if isinstance(c, Mapping)}
        out = []
        for container in spec.containers:
            values = _matching(container.environment, declared.get(container.name, {}))
            if values is None:
                return None
            out.append(container.model_copy(update={"environment": values}))
        return out

    def _earlier_revision(self, action: Action, fam: str, wanted: list[dict[str, Any]]) -> str:
        found = self.call("ecs", "list_task_definitions", familyPrefix=fam, status="ACTIVE",
                          sort="DESC", maxResults=100)
        arns = [a for a in found.get("taskDefinitionArns", ())
                if str(a).rpartition("/")[2].rpartition(":")[0] == fam]
        for arn in arns[:_REVISIONS]:
            if self._containers(arn) == wanted:
                return str(arn)
        raise AwsTemporaryError(
            f"{action.type} {action.target}: the container environment to send is not in the "
            "desired source as this cycle read it (the source changed since, or it is an undo "
            "of values no revision holds); the next cycle acts on the current version")

    def _create(self, action: Action, spec: EcsServiceSpec) -> OperationResult:
        name = action.target.name
        definition = self._task_definition(action, spec)
        tags = {**spec.tags, **ownership_tags(self.ctx.target, name,
                                              bool(action.params.get("protected")))}
        # the attempt's token (core.inflight): a retry of a lost response is the same create
        self.call("ecs", "create_service", cluster=spec.cluster, serviceName=name,
                  taskDefinition=definition, desiredCount=spec.desired_count,
                  launchType=spec.launch_type, clientToken=action.idempotency_token,
                  tags=[{"key": k, "value": v} for k, v in tags.items()])
        return "created"

    def _converge(self, action: Action, service: dict[str, Any], spec: EcsServiceSpec,
                  adopt: bool) -> OperationResult:
        fields = fields_of(action)
        moved = (service.get("launchType") or "EC2") != spec.launch_type
        if moved and fields.touches("launch_type"):
            raise PermanentError(f"update {action.target}: launch_type cannot change in place; "
                                 "delete the service and create it again")
        to_set, to_remove = tag_plan(self.ctx, action, tag_dict(service.get("tags")), spec.tags,
                                     adopt)
        changed = resource_tags(self.ctx, service["serviceArn"], to_set, to_remove)
        update = self._changed(action, service, spec, fields)
        if update:
            self.call("ecs", "update_service", cluster=spec.cluster, service=action.target.name,
                      **update)
        return "updated" if changed or update else "unchanged"

    def _changed(self, action: Action, service: dict[str, Any], spec: EcsServiceSpec,
                 fields: FieldSet) -> dict[str, Any]:
        """``UpdateService`` parameters for only the named fields that still differ on re-read."""
        update: dict[str, Any] = {}
        wanted = [c.model_dump(mode="json") for c in spec.containers]
        live = service.get("taskDefinition", "")
        if fields.touches("containers") and self._containers(live) != wanted:
            update["taskDefinition"] = self._task_definition(action, spec)
        if fields.touches("desired_count") and service.get("desiredCount") != spec.desired_count:
            update["desiredCount"] = spec.desired_count
        return update

    def _delete(self, action: Action) -> OperationResult:
        """Scale to zero, then delete; a service already gone is success."""
        service = self._find_owned_anywhere(action)
        if service is None:
            return "unchanged"
        owner = ownership_of(tag_dict(service.get("tags")))
        if owner.protected:
            raise PermanentError(f"delete {action.target}: protected "
                                 "(apply protected: false first, then remove it)")
        cluster = service["clusterArn"]
        if service.get("desiredCount", 0) > 0:
            self.call("ecs", "update_service", cluster=cluster, service=service["serviceArn"],
                      desiredCount=0)
        self.call("ecs", "delete_service", cluster=cluster, service=service["serviceArn"])
        return "deleted"

    def _find_owned_anywhere(self, action: Action) -> dict[str, Any] | None:
        """A delete carries no spec: find the owned service by name in the active clusters."""
        listing = Listing(SERVICE_KIND)
        for cluster in active_clusters(self.ctx, self.ctx.options.read_timeout_s, listing):
            service = self._get(cluster["clusterName"], action.target.name)
            if service is not None and ownership_of(tag_dict(service.get("tags"))).owned_by(
                    self.ctx.target):
                return service
        if listing.lost:
            raise AwsTemporaryError(f"delete {action.target}: clusters not fully listed: "
                                    + "; ".join(listing.errors))
        return None
