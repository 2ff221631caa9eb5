"""What every AWS kind shares: its context, desired specs, ownership checks and listings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from reconciler.core.errors import PermanentError, ReconcilerError
from reconciler.core.fields import fields_of
from reconciler.core.model import Action, Observation, ObservedResource, ResourceKey
from reconciler.providers.aws.calls import Caller
from reconciler.providers.aws.session import AwsOptions
from reconciler.providers.aws.tags import (
    Ownership,
    ownership_tags,
    protection_changes,
    tag_changes,
)

__all__ = ["ClearSpec", "KindContext", "KindHandler", "Listing", "desired_spec", "check_owned",
           "tag_plan", "normalised"]

M = TypeVar("M", bound=BaseModel)
MAX_ERRORS = 20
# a resource's spec as the desired source declares it now, values in clear (None: not declared)
ClearSpec = Callable[[ResourceKey], Mapping[str, Any] | None]


@dataclass(frozen=True)
class KindContext:
    """What a kind module needs: the target it acts for, the caller and the options; and where
    to read values kept only as digests when they must be sent (see ecs_services)."""

    target: str
    caller: Caller
    options: AwsOptions
    clear_spec: ClearSpec | None = None


def desired_spec(action: Action, model: type[M], spec: Mapping[str, Any] | None = None) -> M:
    """The action's spec (or ``spec``) parsed by the kind's model; a bad one is permanent."""
    try:
        return model.model_validate(action.params.get("spec") if spec is None else spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        raise PermanentError(f"{action.type} {action.target}: {where}: {first['msg']}") from None


def check_owned(ctx: KindContext, action: Action, owner: Ownership) -> bool:
    """Whether acting on this resource is allowed; True when it must be adopted first.

    Unowned resources are only touched by an update that asks to adopt them; a resource
    another target owns is never taken over.
    """
    if owner.owned_by(ctx.target):
        return False
    if owner.foreign:
        raise PermanentError(f"{action.target}: owned by target {owner.owner!r}, not this one")
    if action.type == "update" and action.params.get("adopt") is True:
        return True
    raise PermanentError(f"{action.type} {action.target}: exists but is not owned by this "
                         "target (set policy.adopt to take it over)")


def tag_plan(
    ctx: KindContext,
    action: Action,
    current: Mapping[str, str],
    desired_user: Mapping[str, str],
    adopt: bool,
) -> tuple[dict[str, str], list[str]]:
    """Tags to set and remove: the user tags the plan names (``tags.<key>`` in its fields, see
    core.fields), the protection tag and (on adoption) ownership."""
    to_set, to_remove = tag_changes(current, desired_user, fields_of(action).keys_of("tags"))
    protect_set, protect_remove = protection_changes(
        current, bool(action.params.get("protected", False)))
    to_set.update(protect_set)
    to_remove.extend(protect_remove)
    if adopt:
        owned = ownership_tags(ctx.target, action.target.name, False)
        to_set.update({k: v for k, v in owned.items() if current.get(k) != v})
    return to_set, to_remove


def normalised(model: type[BaseModel], raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` in the same normal form a desired spec has (falls back to ``raw``)."""
    try:
        dumped: dict[str, Any] = model.model_validate(raw).model_dump(mode="json")
    except ValidationError:
        return dict(raw)
    return dumped


class KindHandler:
    """Base of one kind's observe/apply: the target's context and its counted, translated caller."""

    kind: str

    def __init__(self, ctx: KindContext) -> None:
        self.ctx = ctx
        self.call = ctx.caller.call


@dataclass
class Listing:
    """Resources of one kind while they are listed; duplicates by name resolved here."""

    kind: str
    found: dict[str, tuple[ObservedResource, tuple[Any, ...]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    done: int = 0
    lost: int = 0

    def add(self, resource: ObservedResource, age: tuple[Any, ...] = ()) -> None:
        """Keep one resource per name: owned beats unowned, then the oldest wins."""
        name = resource.key.name
        previous = self.found.get(name)
        if previous is None:
            self.found[name] = (resource, age)
            return
        other, other_age = previous
        if resource.managed and other.managed:
            self.error(f"{self.kind}/{name}: owned twice ({other.provider_id}, "
                       f"{resource.provider_id}); keeping the oldest")
        if (not other.managed, other_age) > (not resource.managed, age):
            self.found[name] = (resource, age)

    def error(self, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)

    def failed(self, exc: ReconcilerError, lost: int = 1) -> None:
        self.lost += lost
        self.error(str(exc))

    def observation(self) -> Observation:
        total = self.done + self.lost
        completeness = 1.0 if total == 0 else self.done / total
        return Observation(
            kind=self.kind,
            resources=tuple(r for r, _ in sorted(self.found.values(), key=lambda x: x[0].key.name)),
            completeness=round(completeness, 6),
            errors=tuple(self.errors),
        )


def observed(kind: str, name: str, spec: dict[str, Any], owner: Ownership, managed: bool,
             provider_id: str | None) -> ObservedResource:
    return ObservedResource(key=ResourceKey(kind=kind, name=name), spec=spec, managed=managed,
                            protected=owner.protected and managed, provider_id=provider_id,
                            foreign_owner=None if managed else owner.owner)
