"""Small constructors for test data: desired resources, observed resources, snapshots."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from reconciler.core.model import (
    DesiredResource,
    DesiredState,
    KindStatus,
    ObservedResource,
    ResourceKey,
    Snapshot,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def key(text: str) -> ResourceKey:
    return ResourceKey.parse(text)


def workload(replicas: int = 2, image: str = "nginx:1.27", **extra: Any) -> dict[str, Any]:
    spec = {
        "replicas": replicas,
        "containers": [{"name": "app", "image": image, "cpu": 100, "memory": 128, "env": {}}],
        "node_pool": "default",
        "labels": {},
    }
    spec.update(extra)
    return spec


def node(state: str = "running", **extra: Any) -> dict[str, Any]:
    spec = {"pool": "default", "instance_type": "m5.large", "zone": "zone-a", "state": state,
            "labels": {}}
    spec.update(extra)
    return spec


def want(text: str, spec: dict[str, Any], **fields: Any) -> DesiredResource:
    return DesiredResource(key=key(text), spec=spec, **fields)


def have(text: str, spec: dict[str, Any], **fields: Any) -> ObservedResource:
    return ObservedResource(key=key(text), spec=spec, **fields)


def desired_state(*resources: DesiredResource, version: str = "v1") -> DesiredState:
    return DesiredState(resources=resources, version=version, source_uri="test", loaded_at=NOW)


def snapshot(
    *resources: ObservedResource,
    kinds: tuple[str, ...] = ("sim.Node", "sim.Workload"),
    completeness: dict[str, float] | None = None,
) -> Snapshot:
    completeness = completeness or {}
    statuses = {
        k: KindStatus(kind=k, count=sum(1 for r in resources if r.key.kind == k),
                      completeness=completeness.get(k, 1.0),
                      fidelity="full" if completeness.get(k, 1.0) >= 1 else "degraded",
                      latency_s=0.0)
        for k in kinds
    }
    return Snapshot(target="t", correlation_id="c-1", captured_at=NOW, latency_s=0.0,
                    resources=resources, kinds=statuses)
