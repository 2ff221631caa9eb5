"""``AwsProvider``: the Provider port over boto3 for one target, with call statistics."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from reconciler.core.errors import InvalidConfig, PermanentError, ReconcilerError
from reconciler.core.model import Action, Observation, ObservedResource, OperationResult
from reconciler.providers.aws.autoscaling import AutoScalingGroups
from reconciler.providers.aws.base import ClearSpec, KindContext
from reconciler.providers.aws.calls import AwsStats, Caller
from reconciler.providers.aws.ec2 import Ec2Instances
from reconciler.providers.aws.ecs import EcsClusters
from reconciler.providers.aws.ecs_services import EcsServices
from reconciler.providers.aws.logscrub import install as withhold_task_definition_bodies
from reconciler.providers.aws.session import (
    AWS_KINDS,
    AwsOptions,
    ClientFactory,
    parse_options,
    places,
)

__all__ = ["AWS_KINDS", "AwsProvider"]


class _Kind(Protocol):
    kind: str

    def observe(self, timeout_s: float) -> Observation: ...
    def apply(self, action: Action) -> OperationResult: ...


_HANDLERS: tuple[Callable[[KindContext], _Kind], ...] = (
    Ec2Instances, AutoScalingGroups, EcsClusters, EcsServices,
)


def _one_place(options: AwsOptions) -> AwsOptions:
    """``options`` of one region of at most one account (several: MultiRegionAwsProvider)."""
    if options.regions is None and not options.accounts:
        return options
    found = places(options)
    if len(found) > 1:
        raise InvalidConfig("aws provider options: several regions or accounts need "
                            "aws_provider() (MultiRegionAwsProvider), not AwsProvider")
    return found[0].options(options)


class AwsProvider:
    """Observes and converges one target's resources, recognised by their ownership tags.

    ``options`` are the target's ``provider.options`` (see ``AwsOptions``); ``session`` is a
    ready boto3 session (tests, Airflow). ``sleep``/``monotonic`` drive every wait and
    deadline, so tests pass a fake clock. ``stats`` counts API calls and mutating calls.
    ``clear_spec`` reads a resource's spec from the desired source with its values in clear,
    for the one call that must send them (reconciler.desired.clear); without it, a container
    environment can only be sent as a revision that already exists.
    """

    def __init__(
        self,
        target: str,
        options: Mapping[str, Any] | AwsOptions | None = None,
        session: Any = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        clear_spec: ClearSpec | None = None,
    ) -> None:
        withhold_task_definition_bodies()
        self.target = target
        self.options = _one_place(parse_options(options))
        self.stats = AwsStats()
        self._factory = ClientFactory(self.options, session,
                                      session_name=f"reconciler-{target}")
        self.caller = Caller(self._factory, self.stats, sleep=sleep, monotonic=monotonic)
        ctx = KindContext(target=target, caller=self.caller, options=self.options,
                          clear_spec=clear_spec)
        served = set(self.options.kinds or AWS_KINDS)
        unknown = served - AWS_KINDS
        if unknown:
            raise PermanentError(f"aws provider: unknown kinds {sorted(unknown)}")
        self._kinds: dict[str, _Kind] = {}
        for make in _HANDLERS:
            handler = make(ctx)
            if handler.kind in served:
                self._kinds[handler.kind] = handler

    @property
    def region(self) -> str:
        return self._factory.region

    @property
    def endpoint_url(self) -> str | None:
        return self._factory.endpoint_url

    @property
    def account(self) -> str | None:
        """The account id of ``options.accounts`` (None: whatever the credentials' is)."""
        return self._factory.account.id if self._factory.account else None

    def kinds(self) -> frozenset[str]:
        return frozenset(self._kinds)

    def observe(self, kind: str, timeout_s: float) -> Observation:
        handler = self._kinds.get(kind)
        if handler is None:
            error = f"kind {kind!r} is not served by the aws provider of {self.target}"
            return Observation(kind=kind, resources=(), completeness=0.0, errors=(error,))
        with self.stats.tally() as load:  # the load this listing met (core.fidelity)
            try:
                obs = handler.observe(timeout_s)
            except ReconcilerError as exc:
                message = self._factory.scrub(str(exc))
                obs = Observation(kind=kind, resources=(), completeness=0.0, errors=(message,))
        return obs.model_copy(update={"throttled": load.throttles, "retries": load.retries,
                                      "page_latency_s": round(load.page_latency_s, 6)})

    def apply(self, action: Action) -> OperationResult:
        handler = self._kinds.get(action.target.kind)
        if handler is None:
            raise PermanentError(f"{action.target}: kind not served by the aws provider")
        return handler.apply(action)

    def read(self, action: Action) -> ObservedResource | None:
        """One resource as it is now (the actuation guard's fresh read of an update)."""
        handler = self._kinds.get(action.target.kind)
        read = getattr(handler, "read", None)
        if read is None:
            raise LookupError(f"{action.target.kind} is not read one by one")
        found: ObservedResource | None = read(action)
        return found

    def client(self, service: str) -> Any:
        """A boto3 client with this target's session and endpoint (for tools and tests)."""
        return self._factory.client(service)

    def __repr__(self) -> str:
        inner = repr(self._factory).removeprefix("ClientFactory(")
        return f"AwsProvider(target={self.target!r}, {inner}"
