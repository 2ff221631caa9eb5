"""Ownership tags: which resources a target owns, their names, protection, and user tags."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from reconciler.catalogue.aws import OWNERSHIP_PREFIX

__all__ = [
    "TARGET_TAG",
    "NAME_TAG",
    "PROTECTED_TAG",
    "Ownership",
    "tag_dict",
    "user_tags",
    "ownership_tags",
    "ownership_of",
    "tag_changes",
    "protection_changes",
]

TARGET_TAG = "reconciler:target"
NAME_TAG = "reconciler:name"
PROTECTED_TAG = "reconciler:protected"
_PROVIDER_TAGS = ("Name",)  # set from the resource name, not part of the spec


def tag_dict(tags: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    """AWS's ``[{"Key"|"key": k, "Value"|"value": v}]`` as a plain dict."""
    out: dict[str, str] = {}
    for tag in tags or ():
        key = tag.get("Key", tag.get("key"))
        if key is not None:
            out[str(key)] = str(tag.get("Value", tag.get("value", "")))
    return out


def user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The tags a spec declares: without ownership, ``Name`` and AWS-reserved keys."""
    return {
        k: v for k, v in tags.items()
        if not k.startswith((OWNERSHIP_PREFIX, "aws:")) and k not in _PROVIDER_TAGS
    }


def ownership_tags(target: str, name: str, protected: bool) -> dict[str, str]:
    tags = {TARGET_TAG: target, NAME_TAG: name}
    if protected:
        tags[PROTECTED_TAG] = "true"
    return tags


class Ownership:
    """What a resource's tags say about it, for one target."""

    __slots__ = ("owner", "name", "protected")

    def __init__(self, owner: str | None, name: str | None, protected: bool) -> None:
        self.owner, self.name, self.protected = owner, name, protected

    def owned_by(self, target: str) -> bool:
        return self.owner == target

    @property
    def foreign(self) -> bool:
        """Owned by some Reconciler target (maybe this one)."""
        return self.owner is not None


def ownership_of(tags: Mapping[str, str]) -> Ownership:
    return Ownership(tags.get(TARGET_TAG), tags.get(NAME_TAG), tags.get(PROTECTED_TAG) == "true")


def tag_changes(
    current: Mapping[str, str], desired: Mapping[str, str], only: Collection[str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """Tags to set and keys to remove so the user tags of ``current`` become ``desired``.

    With ``only``, just those keys are looked at: the others (ignored ones) are never touched.
    """
    have = user_tags(current)
    if only is not None:
        have = {k: v for k, v in have.items() if k in only}
        desired = {k: v for k, v in desired.items() if k in only}
    to_set = {k: v for k, v in desired.items() if have.get(k) != v}
    to_remove = sorted(k for k in have if k not in desired)
    return to_set, to_remove


def protection_changes(
    current: Mapping[str, str], protected: bool
) -> tuple[dict[str, str], list[str]]:
    """Set or remove the protection tag so it matches ``protected``."""
    has = current.get(PROTECTED_TAG) == "true"
    if protected and not has:
        return {PROTECTED_TAG: "true"}, []
    if not protected and PROTECTED_TAG in current:
        return {}, [PROTECTED_TAG]
    return {}, []
