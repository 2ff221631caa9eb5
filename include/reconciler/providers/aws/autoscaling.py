"""``autoscaling.Group``: node groups, named by the resource name; observe pages, converge one."""

from __future__ import annotations

from typing import Any

from reconciler.awserrors import AwsPermanentError
from reconciler.catalogue.aws import AutoScalingGroupSpec, LaunchTemplateRef
from reconciler.core.errors import PermanentError, ReconcilerError
from reconciler.core.fields import FieldSet, fields_of
from reconciler.core.model import Action, Observation, ObservedResource, OperationResult
from reconciler.providers.aws.base import (
    KindHandler,
    Listing,
    check_owned,
    desired_spec,
    normalised,
    observed,
    tag_plan,
)
from reconciler.providers.aws.tags import (
    ownership_of,
    ownership_tags,
    tag_dict,
    user_tags,
)

__all__ = ["KIND", "AutoScalingGroups"]

KIND = "autoscaling.Group"
_PAGE = 100  # DescribeAutoScalingGroups returns at most 100 per page
_OWNERSHIP_PROPAGATES = False  # instances of a group are the group's, not ec2.Instance resources
_PARAMS = {  # spec field -> its UpdateAutoScalingGroup parameter (each may be sent alone)
    "launch_template": "LaunchTemplate", "min_size": "MinSize", "max_size": "MaxSize",
    "desired_capacity": "DesiredCapacity", "subnet_ids": "VPCZoneIdentifier",
    "availability_zones": "AvailabilityZones",
}


def _validated(action: Action) -> AutoScalingGroupSpec:
    """The spec; an update that leaves ``desired_capacity`` alone only needs min <= max.

    Its ``desired_capacity`` is the autoscaler's observed value (core.plan), which a smaller
    ``max_size`` may exclude; it is not sent, and AWS clamps the capacity to the new bounds.
    """
    raw = action.params.get("spec")
    if not isinstance(raw, dict) or fields_of(action).touches("desired_capacity"):
        return desired_spec(action, AutoScalingGroupSpec)
    return desired_spec(action, AutoScalingGroupSpec, _clamped(raw))


def _clamped(raw: dict[str, Any]) -> dict[str, Any]:
    low, high, capacity = (raw.get(k) for k in ("min_size", "max_size", "desired_capacity"))
    if not (isinstance(low, int) and isinstance(high, int) and isinstance(capacity, int)):
        return raw
    if low > high:
        return raw  # a real inconsistency: let validation say so
    return {**raw, "desired_capacity": min(max(capacity, low), high)}


def _spec(group: dict[str, Any]) -> dict[str, Any]:
    template = group.get("LaunchTemplate") or {}
    subnets = [s for s in (group.get("VPCZoneIdentifier") or "").split(",") if s]
    spec: dict[str, Any] = {
        "launch_template": normalised(LaunchTemplateRef, {
            "name": template.get("LaunchTemplateName", ""),
            "version": template.get("Version") or "$Default",
        }),
        "min_size": group.get("MinSize", 0),
        "max_size": group.get("MaxSize", 0),
        "desired_capacity": group.get("DesiredCapacity", 0),
        "availability_zones": sorted(set(group.get("AvailabilityZones") or ())),
        "tags": user_tags(tag_dict(group.get("Tags"))),
        "instances": len(group.get("Instances") or ()),  # provider-only
    }
    if subnets:
        spec["subnet_ids"] = sorted(set(subnets))
    return spec


class AutoScalingGroups(KindHandler):
    """One target's auto scaling groups."""

    kind = KIND

    def observe(self, timeout_s: float) -> Observation:
        listing = Listing(KIND)
        deadline = self.ctx.caller.deadline(timeout_s)
        page_size = min(_PAGE, self.ctx.options.page_size)
        try:
            for page in self.ctx.caller.pages("autoscaling", "describe_auto_scaling_groups",
                                              deadline, page_size=page_size):
                for group in page.get("AutoScalingGroups", ()):
                    self._add(listing, group)
                listing.done += 1
        except ReconcilerError as exc:
            listing.failed(exc)
        return listing.observation()

    def _add(self, listing: Listing, group: dict[str, Any]) -> None:
        if group.get("Status"):  # "Delete in progress": already on its way out
            return
        owner = ownership_of(tag_dict(group.get("Tags")))
        name = group["AutoScalingGroupName"]
        mine = owner.owned_by(self.ctx.target)
        arn = group.get("AutoScalingGroupARN")
        listing.add(observed(KIND, name, _spec(group), owner, mine, arn))

    def apply(self, action: Action) -> OperationResult:
        group = self._get(action.target.name)
        if action.type == "delete":
            return self._delete(action, group)
        spec = _validated(action)
        if group is None:
            return self._create(action, spec)
        adopt = check_owned(self.ctx, action, ownership_of(tag_dict(group.get("Tags"))))
        return self._converge(action, group, spec, adopt)

    def read(self, action: Action) -> ObservedResource | None:
        group = self._get(action.target.name)
        if group is None:
            return None
        owner = ownership_of(tag_dict(group.get("Tags")))
        return observed(KIND, action.target.name, _spec(group), owner,
                        owner.owned_by(self.ctx.target), group.get("AutoScalingGroupARN"))

    def _get(self, name: str) -> dict[str, Any] | None:
        found = self.call("autoscaling", "describe_auto_scaling_groups",
                          AutoScalingGroupNames=[name]).get("AutoScalingGroups", ())
        live = [g for g in found if g["AutoScalingGroupName"] == name and not g.get("Status")]
        return live[0] if live else None

    def _tag(self, name: str, key: str, value: str | None = None) -> dict[str, Any]:
        tag: dict[str, Any] = {"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": key}
        if value is not None:
            tag["Value"] = value
            tag["PropagateAtLaunch"] = _OWNERSHIP_PROPAGATES
        return tag

    def _create(self, action: Action, spec: AutoScalingGroupSpec) -> OperationResult:
        name = action.target.name
        tags = {**spec.tags, **ownership_tags(self.ctx.target, name,
                                              bool(action.params.get("protected")))}
        try:
            self.call("autoscaling", "create_auto_scaling_group", AutoScalingGroupName=name,
                      **self._shape(spec), Tags=[self._tag(name, k, v) for k, v in tags.items()])
        except AwsPermanentError as exc:
            if exc.code != "AlreadyExists":
                raise
            return self._converge_existing(action, spec)  # a lost response: it is there now
        return "created"

    def _converge_existing(self, action: Action, spec: AutoScalingGroupSpec) -> OperationResult:
        group = self._get(action.target.name)
        if group is None:
            raise PermanentError(f"create {action.target}: AlreadyExists, yet not found")
        adopt = check_owned(self.ctx, action, ownership_of(tag_dict(group.get("Tags"))))
        self._converge(action, group, spec, adopt)
        return "created"

    @staticmethod
    def _shape(spec: AutoScalingGroupSpec) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "LaunchTemplate": {"LaunchTemplateName": spec.launch_template.name,
                               "Version": spec.launch_template.version},
            "MinSize": spec.min_size, "MaxSize": spec.max_size,
            "DesiredCapacity": spec.desired_capacity,
        }
        if spec.subnet_ids is not None:
            shape["VPCZoneIdentifier"] = ",".join(spec.subnet_ids)
        else:
            shape["AvailabilityZones"] = list(spec.availability_zones or ())
        return shape

    def _converge(self, action: Action, group: dict[str, Any], spec: AutoScalingGroupSpec,
                  adopt: bool) -> OperationResult:
        name = action.target.name
        changed = self._sync_tags(action, group, spec, adopt)
        update = self._changed_shape(_spec(group), spec, fields_of(action))
        if update:
            self.call("autoscaling", "update_auto_scaling_group", AutoScalingGroupName=name,
                      **update)
            changed = True
        return "updated" if changed else "unchanged"

    @classmethod
    def _changed_shape(cls, have: dict[str, Any], spec: AutoScalingGroupSpec,
                       fields: FieldSet) -> dict[str, Any]:
        """Only the parameters of the fields the plan names that still differ on re-read."""
        shape = cls._shape(spec)
        return {_PARAMS[f]: shape[_PARAMS[f]] for f, v in spec.model_dump(mode="json").items()
                if f in _PARAMS and fields.touches(f) and have.get(f) != v}

    def _sync_tags(self, action: Action, group: dict[str, Any], spec: AutoScalingGroupSpec,
                   adopt: bool) -> bool:
        name = action.target.name
        to_set, to_remove = tag_plan(self.ctx, action, tag_dict(group.get("Tags")), spec.tags,
                                     adopt)
        if to_set:
            self.call("autoscaling", "create_or_update_tags",
                      Tags=[self._tag(name, k, v) for k, v in to_set.items()])
        if to_remove:
            self.call("autoscaling", "delete_tags", Tags=[self._tag(name, k) for k in to_remove])
        return bool(to_set or to_remove)

    def _delete(self, action: Action, group: dict[str, Any] | None) -> OperationResult:
        if group is None:
            return "unchanged"  # already gone
        owner = ownership_of(tag_dict(group.get("Tags")))
        if not owner.owned_by(self.ctx.target):
            raise PermanentError(f"delete {action.target}: not owned by this target")
        if owner.protected:
            raise PermanentError(f"delete {action.target}: protected "
                                 "(apply protected: false first, then remove it)")
        self.call("autoscaling", "delete_auto_scaling_group",
                  AutoScalingGroupName=action.target.name, ForceDelete=True)
        return "deleted"
