"""``ecs.Cluster`` and ``ecs.Service``: clusters, services and their task definitions.

Written to ECS's documented behaviour and robust to moto's: ``ListServices`` may ignore
paging, return INACTIVE (deleted) services and services of clusters whose name merely
contains the one asked for, so every service is checked for ACTIVE and its exact cluster.
"""

from __future__ import annotations

from typing import Any

from reconciler.catalogue.aws import EcsClusterSpec
from reconciler.core.errors import PermanentError, ReconcilerError
from reconciler.core.model import Action, Observation, OperationResult
from reconciler.providers.aws.base import (
    KindContext,
    KindHandler,
    Listing,
    check_owned,
    desired_spec,
    observed,
    tag_plan,
)
from reconciler.providers.aws.tags import ownership_of, ownership_tags, tag_dict, user_tags

__all__ = ["CLUSTER_KIND", "EcsClusters", "chunks", "active_clusters"]

CLUSTER_KIND = "ecs.Cluster"
_DESCRIBE_CLUSTERS = 100  # DescribeClusters takes at most 100 names


def chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def active_clusters(ctx: KindContext, timeout_s: float, listing: Listing) -> list[dict[str, Any]]:
    """Every ACTIVE cluster of the region (with tags); failures go to ``listing``."""
    caller = ctx.caller
    deadline = caller.deadline(timeout_s)
    arns: list[str] = []
    for page in caller.pages("ecs", "list_clusters", deadline, page_size=100):
        arns.extend(page.get("clusterArns", ()))
    clusters: list[dict[str, Any]] = []
    for batch in chunks(arns, _DESCRIBE_CLUSTERS):
        try:
            found = caller.read("ecs", "describe_clusters", deadline, clusters=batch,
                                include=["TAGS"])
        except ReconcilerError as exc:
            listing.failed(exc, lost=len(batch))
            continue
        listing.done += len(batch)
        clusters.extend(c for c in found.get("clusters", ()) if c.get("status") == "ACTIVE")
    return clusters


def resource_tags(ctx: KindContext, arn: str, to_set: dict[str, str], to_remove: list[str]) -> bool:
    if to_set:
        ctx.caller.call("ecs", "tag_resource", resourceArn=arn,
                        tags=[{"key": k, "value": v} for k, v in to_set.items()])
    if to_remove:
        ctx.caller.call("ecs", "untag_resource", resourceArn=arn, tagKeys=to_remove)
    return bool(to_set or to_remove)


class EcsClusters(KindHandler):
    """One target's ECS clusters, named by the resource name."""

    kind = CLUSTER_KIND

    def observe(self, timeout_s: float) -> Observation:
        listing = Listing(CLUSTER_KIND)
        try:
            clusters = active_clusters(self.ctx, timeout_s, listing)
        except ReconcilerError as exc:
            listing.failed(exc)
            return listing.observation()
        for cluster in clusters:
            tags = tag_dict(cluster.get("tags"))
            owner = ownership_of(tags)
            mine = owner.owned_by(self.ctx.target)
            spec = {"tags": user_tags(tags)}
            listing.add(observed(CLUSTER_KIND, cluster["clusterName"], spec, owner, mine,
                                 cluster.get("clusterArn")))
        return listing.observation()

    def get(self, name: str) -> dict[str, Any] | None:
        found = self.call("ecs", "describe_clusters", clusters=[name], include=["TAGS"])
        live = [c for c in found.get("clusters", ())
                if c.get("clusterName") == name and c.get("status") == "ACTIVE"]
        return live[0] if live else None

    def apply(self, action: Action) -> OperationResult:
        cluster = self.get(action.target.name)
        if action.type == "delete":
            return self._delete(action, cluster)
        spec = desired_spec(action, EcsClusterSpec)
        if cluster is None:
            name = action.target.name
            tags = {**spec.tags, **ownership_tags(self.ctx.target, name,
                                                  bool(action.params.get("protected")))}
            # CreateCluster is idempotent on AWS: a retried create returns the same cluster
            self.call("ecs", "create_cluster", clusterName=name,
                      tags=[{"key": k, "value": v} for k, v in tags.items()])
            return "created"
        current = tag_dict(cluster.get("tags"))
        adopt = check_owned(self.ctx, action, ownership_of(current))
        to_set, to_remove = tag_plan(self.ctx, action, current, spec.tags, adopt)
        changed = resource_tags(self.ctx, cluster["clusterArn"], to_set, to_remove)
        return "updated" if changed else "unchanged"

    def _delete(self, action: Action, cluster: dict[str, Any] | None) -> OperationResult:
        if cluster is None:
            return "unchanged"  # already gone
        owner = ownership_of(tag_dict(cluster.get("tags")))
        if not owner.owned_by(self.ctx.target):
            raise PermanentError(f"delete {action.target}: not owned by this target")
        if owner.protected:
            raise PermanentError(f"delete {action.target}: protected "
                                 "(apply protected: false first, then remove it)")
        self.call("ecs", "delete_cluster", cluster=cluster["clusterArn"])
        return "deleted"
