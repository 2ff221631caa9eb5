"""``ec2.Instance``: observe every instance page by page; create, converge and terminate one.

Observe lists the region's live instances without a tag filter and sorts them out by tag
here: one unfiltered pass serves both the owned instances and the unowned ones whose ``Name``
matches (conflicts), and moto serves it at the cost of its pages (a ``tag:`` filter makes moto
scan everything per call: 25 s at 5,000 instances). Looking one instance up by name uses
``DescribeTags`` (key + value filter), cheap on AWS and on moto alike.
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.awserrors import AwsTemporaryError
from reconciler.catalogue.aws import Ec2InstanceSpec
from reconciler.core.errors import PermanentError, ReconcilerError
from reconciler.core.fields import FieldSet, fields_of
from reconciler.core.model import Action, Observation, ObservedResource, OperationResult
from reconciler.providers.aws.base import (
    KindHandler,
    Listing,
    check_owned,
    desired_spec,
    observed,
    tag_plan,
)
from reconciler.providers.aws.tags import (
    NAME_TAG,
    ownership_of,
    ownership_tags,
    tag_dict,
    user_tags,
)

__all__ = ["KIND", "Ec2Instances", "LIVE_STATES"]

KIND = "ec2.Instance"
LIVE_STATES = ("pending", "running", "stopping", "stopped")
_AS_SPEC_STATE = {"pending": "running", "running": "running", "stopping": "stopped",
                  "stopped": "stopped"}
_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
_ASG_TAG = "aws:autoscaling:groupName"  # instances an ASG runs belong to the ASG


def _state(instance: dict[str, Any]) -> str:
    return str(instance.get("State", {}).get("Name", ""))


class Ec2Instances(KindHandler):
    """One target's EC2 instances."""

    kind = KIND

    # -- observe -------------------------------------------------------------------------

    def observe(self, timeout_s: float) -> Observation:
        listing = Listing(KIND)
        deadline = self.ctx.caller.deadline(timeout_s)
        filters = [{"Name": "instance-state-name", "Values": list(LIVE_STATES)}]
        try:
            for page in self.ctx.caller.pages("ec2", "describe_instances", deadline,
                                              page_size=self.ctx.options.page_size,
                                              Filters=filters):
                for reservation in page.get("Reservations", ()):
                    for instance in reservation.get("Instances", ()):
                        self._add(listing, instance)
                listing.done += 1
        except ReconcilerError as exc:
            listing.failed(exc)
        return listing.observation()

    def _add(self, listing: Listing, instance: dict[str, Any]) -> None:
        tags = tag_dict(instance.get("Tags"))
        if _ASG_TAG in tags or _state(instance) not in LIVE_STATES:
            return
        owner = ownership_of(tags)
        mine = owner.owned_by(self.ctx.target)
        # an unowned instance nobody named is still listed (as unmanaged), under its id
        name = owner.name if mine else (tags.get("Name") or instance["InstanceId"])
        if not name:
            return
        age = (str(instance.get("LaunchTime", "")), instance["InstanceId"])
        listing.add(observed(KIND, name, self._spec(instance, tags), owner, mine,
                             instance["InstanceId"]), age)

    @staticmethod
    def _spec(instance: dict[str, Any], tags: dict[str, str]) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "image_id": instance.get("ImageId", ""),
            "instance_type": instance.get("InstanceType", ""),
            "state": _AS_SPEC_STATE.get(_state(instance), _state(instance)),
            "tags": user_tags(tags),
            "instance_id": instance["InstanceId"],  # provider-only: never compared
        }
        if instance.get("SubnetId"):
            spec["subnet_id"] = instance["SubnetId"]
        return spec

    # -- apply ---------------------------------------------------------------------------

    def apply(self, action: Action) -> OperationResult:
        if action.type == "delete":
            return self._delete(action)
        spec = desired_spec(action, Ec2InstanceSpec)
        # Look first, on every attempt: a create whose response was lost already made it.
        adopting = action.type == "update" and action.params.get("adopt") is True
        found = self.find(action.target.name, owned_only=not adopting)
        if found:
            adopt = check_owned(self.ctx, action, ownership_of(tag_dict(found[0].get("Tags"))))
            outcome = self._converge(action, found[0], spec, adopt)
            if action.type == "create" and found[0].get("ClientToken") == action.idempotency_token:
                return "created"
            return outcome
        return self._create(action, spec)

    def read(self, action: Action) -> ObservedResource | None:
        found = self.find(action.target.name)
        if not found:
            return None
        tags = tag_dict(found[0].get("Tags"))
        owner = ownership_of(tags)
        return observed(KIND, action.target.name, self._spec(found[0], tags), owner,
                        owner.owned_by(self.ctx.target), found[0]["InstanceId"])

    def find(self, name: str, *, owned_only: bool = False) -> list[dict[str, Any]]:
        """Live instances tagged with this name (ours first, then unowned), oldest first."""
        ids = self._ids_tagged(NAME_TAG, name)
        if not owned_only:
            ids += [i for i in self._ids_tagged("Name", name) if i not in ids]
            if _INSTANCE_ID.fullmatch(name) and name not in ids:
                ids.append(name)  # listed under its id because it has no Name tag
        if not ids:
            return []
        instances = self._describe(ids)
        live = [i for i in instances if _state(i) in LIVE_STATES]

        def rank(i: dict[str, Any]) -> tuple[bool, str, str]:
            owner = ownership_of(tag_dict(i.get("Tags")))
            return (not owner.owned_by(self.ctx.target), str(i.get("LaunchTime")), i["InstanceId"])

        live.sort(key=rank)
        if owned_only:
            live = [i for i in live if not rank(i)[0]]
        return live

    def _ids_tagged(self, key: str, value: str) -> list[str]:
        filters = [{"Name": "resource-type", "Values": ["instance"]},
                   {"Name": "key", "Values": [key]}, {"Name": "value", "Values": [value]}]
        result = self.call("ec2", "describe_tags", Filters=filters)
        return [t["ResourceId"] for t in result.get("Tags", ())]

    def _describe(self, ids: list[str]) -> list[dict[str, Any]]:
        # a filter, not InstanceIds: an id that vanished meanwhile must not fail the call
        result = self.call("ec2", "describe_instances",
                           Filters=[{"Name": "instance-id", "Values": ids}])
        return [i for r in result.get("Reservations", ()) for i in r.get("Instances", ())]

    def _create(self, action: Action, spec: Ec2InstanceSpec) -> OperationResult:
        name = action.target.name
        tags = {**spec.tags, "Name": name,
                **ownership_tags(self.ctx.target, name, bool(action.params.get("protected")))}
        kwargs: dict[str, Any] = {
            "ImageId": spec.image_id, "InstanceType": spec.instance_type,
            "MinCount": 1, "MaxCount": 1, "ClientToken": action.idempotency_token,
            "TagSpecifications": [{"ResourceType": "instance",
                                   "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
        }
        if spec.subnet_id:
            kwargs["SubnetId"] = spec.subnet_id
        made = self.call("ec2", "run_instances", **kwargs)["Instances"][0]
        if spec.state == "stopped":
            try:
                self.call("ec2", "stop_instances", InstanceIds=[made["InstanceId"]])
            except ReconcilerError:
                pass  # made, maybe not describable yet: the next cycle stops it (state drift)
        return "created"

    def _converge(self, action: Action, instance: dict[str, Any], spec: Ec2InstanceSpec,
                  adopt: bool) -> OperationResult:
        """Only the fields the plan names, each only if it still differs on re-read."""
        iid, fields = instance["InstanceId"], fields_of(action)
        self._refuse_replacement(action, instance, spec, fields)
        changed = self._sync_tags(action, instance, spec, adopt)
        state = _AS_SPEC_STATE.get(_state(instance))
        run = spec.state == "running" if fields.touches("state") else state == "running"
        if fields.touches("instance_type") and instance.get("InstanceType") != spec.instance_type:
            self._resize(iid, spec.instance_type, run)
            return "updated"
        if fields.touches("state") and state != spec.state:
            verb = "start_instances" if spec.state == "running" else "stop_instances"
            self.call("ec2", verb, InstanceIds=[iid])
            changed = True
        return "updated" if changed else "unchanged"

    @staticmethod
    def _refuse_replacement(action: Action, instance: dict[str, Any], spec: Ec2InstanceSpec,
                            fields: FieldSet) -> None:
        for field, have in (("image_id", instance.get("ImageId")),
                            ("subnet_id", instance.get("SubnetId"))):
            want = getattr(spec, field)
            if fields.touches(field) and want is not None and want != have:
                raise PermanentError(f"update {action.target}: {field} {have} -> {want} needs a "
                                     "new instance; delete it and create it again")

    def _sync_tags(self, action: Action, instance: dict[str, Any], spec: Ec2InstanceSpec,
                   adopt: bool) -> bool:
        iid = instance["InstanceId"]
        to_set, to_remove = tag_plan(self.ctx, action, tag_dict(instance.get("Tags")),
                                     spec.tags, adopt)
        if to_set:
            self.call("ec2", "create_tags", Resources=[iid],
                      Tags=[{"Key": k, "Value": v} for k, v in to_set.items()])
        if to_remove:
            self.call("ec2", "delete_tags", Resources=[iid], Tags=[{"Key": k} for k in to_remove])
        return bool(to_set or to_remove)

    def _resize(self, iid: str, instance_type: str, run: bool) -> None:
        """stop -> wait until stopped (bounded) -> modify -> start if it should run."""
        self.call("ec2", "stop_instances", InstanceIds=[iid])
        self._wait_stopped(iid)
        self.call("ec2", "modify_instance_attribute", InstanceId=iid,
                  InstanceType={"Value": instance_type})
        if run:
            self.call("ec2", "start_instances", InstanceIds=[iid])

    def _wait_stopped(self, iid: str) -> None:
        caller, opts = self.ctx.caller, self.ctx.options
        deadline = caller.deadline(opts.wait_timeout_s)
        polls = 1 + int(opts.wait_timeout_s / max(opts.wait_interval_s, 0.1))
        for _ in range(min(polls, 1000)):
            found = self._describe([iid])
            if found and _state(found[0]) == "stopped":
                return
            if deadline.passed:
                break
            caller.sleep(opts.wait_interval_s)
        raise AwsTemporaryError(f"{iid} not stopped within {opts.wait_timeout_s:g}s", delay=5.0)

    def _delete(self, action: Action) -> OperationResult:
        found = self.find(action.target.name, owned_only=True)
        if not found:
            return "unchanged"  # already gone
        if any(ownership_of(tag_dict(i.get("Tags"))).protected for i in found):
            raise PermanentError(f"delete {action.target}: protected "
                                 "(apply protected: false first, then remove it)")
        self.call("ec2", "terminate_instances", InstanceIds=[i["InstanceId"] for i in found])
        return "deleted"
