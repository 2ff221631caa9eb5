"""Several regions in one target: one ``AwsProvider`` per region behind one Provider port.

Each region's kinds are kinds of their own: the first region keeps the plain names
(``ec2.Instance``), a further one is ``ec2.Instance@eu-west-1``. So sense observes every
(kind, region) in parallel and judges each one's completeness alone, and the plan's rule
"no deletions in a kind observed below 100%" holds per region with no change in the core:
a region that cannot be listed blocks deletions there only. Actions go to their region's
provider under the plain kind, so the kind modules never see a region suffix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.catalogue import regional_kind, split_region
from reconciler.core.errors import PermanentError
from reconciler.core.model import (
    Action,
    Observation,
    ObservedResource,
    OperationResult,
    ResourceKey,
)
from reconciler.providers.aws.base import ClearSpec
from reconciler.providers.aws.provider import AwsProvider
from reconciler.providers.aws.session import AwsOptions, parse_options

__all__ = ["MultiRegionAwsProvider", "aws_provider"]


def aws_provider(
    target: str,
    options: Mapping[str, Any] | AwsOptions | None = None,
    session: Any = None,
    **kwargs: Any,
) -> AwsProvider | MultiRegionAwsProvider:
    """The provider ``options`` ask for: one region, or several (``regions``)."""
    parsed = parse_options(options)
    if parsed.regions is not None and len(parsed.regions) > 1:
        return MultiRegionAwsProvider(target, parsed, session, **kwargs)
    return AwsProvider(target, parsed, session, **kwargs)


class MultiRegionAwsProvider:
    """Observes and converges one target's resources in each of ``options.regions``."""

    def __init__(
        self,
        target: str,
        options: Mapping[str, Any] | AwsOptions,
        session: Any = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        clear_spec: ClearSpec | None = None,
    ) -> None:
        self.target = target
        self.options = parse_options(options)
        regions = self.options.regions or ()
        if len(regions) < 2:
            raise PermanentError("MultiRegionAwsProvider needs two regions or more")
        self.first = regions[0]
        # pacing buckets, client tokens and clients are per region, as in AWS
        self.providers: dict[str, AwsProvider] = {
            region: AwsProvider(
                target, self.options.model_copy(update={"region": region, "regions": None}),
                session, sleep=sleep, monotonic=monotonic,
                clear_spec=_regional(clear_spec, self._suffix(region)))
            for region in regions
        }

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(self.providers)

    @property
    def region(self) -> str:
        return self.first

    @property
    def endpoint_url(self) -> str | None:
        return self.providers[self.first].endpoint_url

    def _suffix(self, region: str) -> str | None:
        return None if region == self.first else region

    def kinds(self) -> frozenset[str]:
        return frozenset(regional_kind(kind, self._suffix(region))
                         for region, provider in self.providers.items()
                         for kind in provider.kinds())

    def _route(self, kind: str) -> tuple[AwsProvider, str] | None:
        base, region = split_region(kind)
        provider = self.providers.get(region or self.first)
        if region == self.first or provider is None:
            return None  # the first region is only ever named by the plain kind
        return provider, base

    def observe(self, kind: str, timeout_s: float) -> Observation:
        route = self._route(kind)
        if route is None:
            error = f"kind {kind!r} is not served by the aws provider of {self.target}"
            return Observation(kind=kind, resources=(), completeness=0.0, errors=(error,))
        provider, base = route
        obs = provider.observe(base, timeout_s)
        return obs.model_copy(update={
            "kind": kind, "resources": tuple(_renamed(r, kind) for r in obs.resources)})

    def apply(self, action: Action) -> OperationResult:
        provider, local = self._local(action)
        return provider.apply(local)

    def read(self, action: Action) -> ObservedResource | None:
        """One resource as it is now, in its region (the actuation guard's fresh read)."""
        provider, local = self._local(action)
        found = provider.read(local)
        return None if found is None else _renamed(found, action.target.kind)

    def _local(self, action: Action) -> tuple[AwsProvider, Action]:
        route = self._route(action.target.kind)
        if route is None:
            raise PermanentError(f"{action.target}: kind not served by the aws provider")
        provider, base = route
        key = ResourceKey(kind=base, name=action.target.name)
        return provider, action.model_copy(update={"target": key})

    def client(self, service: str, region: str | None = None) -> Any:
        """A boto3 client of ``region`` (default: the first) for tools and tests."""
        return self.providers[region or self.first].client(service)

    def __repr__(self) -> str:
        return (f"MultiRegionAwsProvider(target={self.target!r}, "
                f"regions={list(self.providers)!r})")


def _renamed(resource: ObservedResource, kind: str) -> ObservedResource:
    key = ResourceKey(kind=kind, name=resource.key.name)
    return resource.model_copy(update={"key": key})


def _regional(clear_spec: ClearSpec | None, region: str | None) -> ClearSpec | None:
    """``clear_spec`` asked with the key as the desired state names it (``kind@region``)."""
    if clear_spec is None or region is None:
        return clear_spec

    def read(key: ResourceKey) -> Mapping[str, Any] | None:
        return clear_spec(ResourceKey(kind=regional_kind(key.kind, region), name=key.name))

    return read
