"""Several regions, several accounts in one target: one ``AwsProvider`` per (account, region)
behind one Provider port.

Each place's kinds are kinds of their own: the first place keeps the plain names
(``ec2.Instance``), a further region of the first account is ``ec2.Instance@eu-west-1``, and
every region of a further account is ``ec2.Instance@222222222222:eu-west-1`` (session.places).
So sense observes every (kind, place) in parallel and judges each one's completeness alone,
and the plan's rule "no deletions in a kind observed below 100%" holds per place with no
change in the core: an account or a region that cannot be listed (a role that cannot be
assumed, an outage) blocks deletions there only. Actions go to their place's provider under
the plain kind, so the kind modules never see a scope. Each account's provider works with the
role it names (refreshable STS credentials, session.ClientFactory).
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
from reconciler.providers.aws.session import AwsOptions, Place, parse_options, places

__all__ = ["MultiRegionAwsProvider", "aws_provider"]


def aws_provider(
    target: str,
    options: Mapping[str, Any] | AwsOptions | None = None,
    session: Any = None,
    **kwargs: Any,
) -> AwsProvider | MultiRegionAwsProvider:
    """The provider ``options`` ask for: one place, or several (``regions``, ``accounts``)."""
    parsed = parse_options(options)
    if len(places(parsed)) > 1:
        return MultiRegionAwsProvider(target, parsed, session, **kwargs)
    return AwsProvider(target, parsed, session, **kwargs)


class MultiRegionAwsProvider:
    """Observes and converges one target's resources in each of its regions and accounts."""

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
        self.places: list[Place] = places(self.options)
        if len(self.places) < 2:
            raise PermanentError("MultiRegionAwsProvider needs two regions or accounts or more")
        self.first = self.places[0].region
        # pacing buckets, client tokens and clients are per account and region, as in AWS
        self.providers: dict[str | None, AwsProvider] = {
            place.scope: AwsProvider(
                target, place.options(self.options), session, sleep=sleep,
                monotonic=monotonic, clear_spec=_regional(clear_spec, place.scope))
            for place in self.places
        }

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(place.region for place in self.places))

    @property
    def accounts(self) -> tuple[str, ...]:
        """The account ids of ``options.accounts`` (empty: the credentials' own account)."""
        return tuple(a.id for a in self.options.accounts or ())

    @property
    def region(self) -> str:
        return self.first

    @property
    def endpoint_url(self) -> str | None:
        return self.providers[None].endpoint_url

    def kinds(self) -> frozenset[str]:
        return frozenset(regional_kind(kind, scope)
                         for scope, provider in self.providers.items()
                         for kind in provider.kinds())

    def _route(self, kind: str) -> tuple[AwsProvider, str] | None:
        """The provider of ``kind``'s place and the plain kind; None if no place has it (the
        first place is only ever named by the plain kind)."""
        base, scope = split_region(kind)
        provider = self.providers.get(scope)
        return None if provider is None else (provider, base)

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

    def client(self, service: str, region: str | None = None,
               account: str | None = None) -> Any:
        """A boto3 client of ``region`` (default: the account's first) in ``account``
        (default: the first account), with that place's credentials, for tools and tests."""
        def id_of(place: Place) -> str | None:
            return place.account.id if place.account is not None else None

        wanted = account if account is not None else id_of(self.places[0])
        found = [p for p in self.places
                 if id_of(p) == wanted and (region is None or p.region == region)]
        if not found:
            raise KeyError(f"{self.target} has no region {region or '(first)'} in account "
                           f"{wanted or '(own)'}")
        return self.providers[found[0].scope].client(service)

    def __repr__(self) -> str:
        return (f"MultiRegionAwsProvider(target={self.target!r}, "
                f"places={[p.scope or p.region for p in self.places]!r})")


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
