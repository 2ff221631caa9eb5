"""Builders and a cycle rig for the aws integration tests (fixtures live in conftest)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reconciler.catalogue import REGISTRY, rules_for
from reconciler.core.gate import BasicGate
from reconciler.core.loop import CycleDeps, CycleReport, CycleRequest, run_cycle
from reconciler.core.model import DesiredResource, DesiredState, ResourceKey
from reconciler.core.policy import Policy
from reconciler.providers.aws import AwsProvider, MultiRegionAwsProvider
from reconciler.testing import FakeClock, MemoryStore, RecordingSink

TARGET = "fleet"
AMI = "ami-0c02fb55956c7d316"
LAUNCH_TEMPLATE = "nodes"


def spec(kind: str, **fields: Any) -> dict[str, Any]:
    """A spec normalised exactly like the YAML loader does."""
    dumped: dict[str, Any] = REGISTRY[kind].spec_model.model_validate(fields).model_dump(
        mode="json")
    return dumped


def res(kind: str, name: str, protected: bool = False, **fields: Any) -> DesiredResource:
    return DesiredResource(key=ResourceKey(kind=kind, name=name), spec=spec(kind, **fields),
                           protected=protected)


def node(name: str, instance_type: str = "t3.micro", protected: bool = False,
         **extra: Any) -> DesiredResource:
    return res("ec2.Instance", name, protected, image_id=AMI, instance_type=instance_type,
               **extra)


def group(name: str, desired: int = 0, **extra: Any) -> DesiredResource:
    return res("autoscaling.Group", name, launch_template={"name": LAUNCH_TEMPLATE},
               min_size=0, max_size=10, desired_capacity=desired,
               availability_zones=["us-east-1a"], **extra)


def cluster(name: str, **extra: Any) -> DesiredResource:
    return res("ecs.Cluster", name, **extra)


def service(name: str, cluster_name: str, count: int = 2, image: str = "nginx:1.27",
            protected: bool = False, **extra: Any) -> DesiredResource:
    containers = [{"name": "web", "image": image, "memory": 256,
                   "port_mappings": [{"container_port": 80}]}]
    return res("ecs.Service", name, protected, cluster=cluster_name, desired_count=count,
               containers=containers, **extra)


@dataclass
class Rig:
    """A target's world against moto: provider, fake clock, in-memory store, events."""

    provider: AwsProvider | MultiRegionAwsProvider
    clock: FakeClock = field(default_factory=FakeClock)
    store: MemoryStore = field(default_factory=MemoryStore)
    events: RecordingSink = field(default_factory=RecordingSink)
    n: int = 0

    def cycle(self, desired: list[DesiredResource], policy: Policy | None = None,
              **request: Any) -> CycleReport:
        self.n += 1
        state = DesiredState(resources=tuple(desired), version=f"v{self.n}", source_uri="test",
                             loaded_at=datetime(2026, 1, 1, tzinfo=UTC))
        req = CycleRequest(target=self.provider.target, desired=state,
                           policy=policy or Policy(backoff_base_s=0.1, jitter=0.0),
                           kinds=tuple(sorted(self.provider.kinds())),
                           correlation_id=f"c-{self.n}", **request)
        deps = CycleDeps(provider=self.provider, store=self.store, events=self.events,
                         clock=self.clock, gate=BasicGate(),
                         rules=rules_for(list(self.provider.kinds())),
                         rng=random.Random(self.n))
        return run_cycle(req, deps)

    def fleet(self, kind: str | None = None, managed: bool = True) -> dict[str, dict[str, Any]]:
        """What the provider observes now (owned only, by default), as ``kind/name -> spec``."""
        out = {}
        for k in sorted(self.provider.kinds()) if kind is None else [kind]:
            obs = self.provider.observe(k, 60)
            assert obs.completeness == 1.0, obs.errors
            out.update({str(r.key): r.spec for r in obs.resources if r.managed == managed})
        return out


def make_provider(url: str, target: str = TARGET, **options: Any) -> AwsProvider:
    clock = options.pop("clock", None)
    opts = {"endpoint_url": url, "emulator": True, "wait_interval_s": 0.0, **options}
    if clock is None:
        return AwsProvider(target, opts)
    return AwsProvider(target, opts, sleep=clock.sleep, monotonic=clock.monotonic)


def boto(url: str, service_name: str) -> Any:
    """A plain boto3 client: someone acting behind the reconciler's back."""
    import boto3

    return boto3.client(service_name, endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


__all__ = ["AMI", "LAUNCH_TEMPLATE", "TARGET", "Rig", "boto", "cluster", "group", "make_provider",
           "node", "res", "service", "spec"]
