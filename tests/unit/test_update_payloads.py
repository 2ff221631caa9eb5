"""What an update sends, for every kind: never an ignored or suppressed field, every changed one.

AWS kinds run their real observe and apply against a recording fake of the ``Caller``; the
simulated provider against an in-memory fleet. The payload is read back as a spec (what the
resource would hold after the calls) and compared path by path, as compare walks specs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reconciler.catalogue import REGISTRY, rules_for
from reconciler.catalogue.aws import OWNERSHIP_PREFIX
from reconciler.core.compare import compare
from reconciler.core.errors import PermanentError
from reconciler.core.fields import fields_of
from reconciler.core.kinds import field_matches
from reconciler.core.model import (
    Action,
    DesiredResource,
    KindStatus,
    ObservedResource,
    ResourceKey,
    Snapshot,
)
from reconciler.core.plan import PlanContext, make_plan
from reconciler.core.policy import Policy
from reconciler.providers.aws.autoscaling import AutoScalingGroups
from reconciler.providers.aws.base import KindContext
from reconciler.providers.aws.ec2 import Ec2Instances
from reconciler.providers.aws.ecs import EcsClusters
from reconciler.providers.aws.ecs_services import EcsServices, containers_from_aws
from reconciler.providers.simulated import SimulatedProvider
from tests.builders import NOW
from tests.strategies import node_specs, workload_specs
from tests.support.recording_caller import RecordingCaller

SETTINGS = settings(derandomize=True, max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
TARGET = "fleet"
POLICY = Policy()
RULES = rules_for()
Spec = dict[str, Any]


def normal(kind: str, **fields: Any) -> Spec:
    dumped: Spec = REGISTRY[kind].spec_model.model_validate(fields).model_dump(mode="json")
    return dumped


tags = st.dictionaries(st.sampled_from(["env", "team", "owner"]), st.sampled_from(["a", "b"]),
                       max_size=3)
asg_specs = st.builds(
    lambda version, sizes, t: normal(
        "autoscaling.Group", launch_template={"name": "nodes", "version": version},
        min_size=sizes[0], desired_capacity=sizes[1], max_size=sizes[2],
        availability_zones=["us-east-1a"], tags=t),
    st.sampled_from(["$Default", "2"]),
    st.lists(st.integers(0, 4), min_size=3, max_size=3).map(sorted), tags)
ec2_specs = st.builds(
    lambda image, type_, state, t: normal("ec2.Instance", image_id=image, instance_type=type_,
                                          state=state, tags=t),
    st.sampled_from(["ami-1", "ami-2"]), st.sampled_from(["t3.micro", "m5.large"]),
    st.sampled_from(["running", "stopped"]), tags)
cluster_specs = st.builds(lambda t: normal("ecs.Cluster", tags=t), tags)
service_specs = st.builds(
    lambda count, launch, image, cpu, t: normal(
        "ecs.Service", cluster="apps", desired_count=count, launch_type=launch,
        containers=[{"name": "web", "image": image, "cpu": cpu, "memory": 256}], tags=t),
    st.integers(0, 3), st.sampled_from(["EC2", "FARGATE"]), st.sampled_from(["web:1", "web:2"]),
    st.sampled_from([0, 256]), tags)


# -- reading a payload back as a spec ----------------------------------------------------------

def _tag_writes(sent: Spec, pairs: dict[str, str | None]) -> None:
    """User tags only: ownership and protection tags are managed as before, not spec fields."""
    sent.setdefault("tags", {}).update({k: v for k, v in pairs.items()
                                        if not k.startswith(OWNERSHIP_PREFIX)})


def _asg_payload(fake: RecordingCaller, observed: Spec) -> Spec:
    params = {"MinSize": "min_size", "MaxSize": "max_size", "DesiredCapacity": "desired_capacity",
              "AvailabilityZones": "availability_zones"}
    sent: Spec = {}
    for op, kw in fake.writes:
        if op == "autoscaling.update_auto_scaling_group":
            for param, value in kw.items():
                if param == "LaunchTemplate":
                    sent["launch_template"] = {"name": value["LaunchTemplateName"],
                                               "version": value["Version"]}
                elif param != "AutoScalingGroupName":
                    sent[params[param]] = value
        elif op == "autoscaling.create_or_update_tags":
            _tag_writes(sent, {t["Key"]: t["Value"] for t in kw["Tags"]})
        else:
            assert op == "autoscaling.delete_tags", op
            _tag_writes(sent, {t["Key"]: None for t in kw["Tags"]})
    return sent


def _ec2_payload(fake: RecordingCaller, observed: Spec) -> Spec:
    sent: Spec = {}
    final = None
    for op, kw in fake.writes:
        if op == "ec2.modify_instance_attribute":
            sent["instance_type"] = kw["InstanceType"]["Value"]
        elif op in ("ec2.start_instances", "ec2.stop_instances"):
            final = "running" if op == "ec2.start_instances" else "stopped"
        elif op == "ec2.create_tags":
            _tag_writes(sent, {t["Key"]: t["Value"] for t in kw["Tags"]})
        else:
            assert op == "ec2.delete_tags", op
            _tag_writes(sent, {t["Key"]: None for t in kw["Tags"]})
    if final is not None and final != observed["state"]:  # a resize's restart is no change
        sent["state"] = final
    return sent


def _ecs_tag_writes(sent: Spec, op: str, kw: dict[str, Any]) -> None:
    if op == "ecs.tag_resource":
        _tag_writes(sent, {t["key"]: t["value"] for t in kw["tags"]})
    else:
        assert op == "ecs.untag_resource", op
        _tag_writes(sent, dict.fromkeys(kw["tagKeys"]))


def _cluster_payload(fake: RecordingCaller, observed: Spec) -> Spec:
    sent: Spec = {}
    for op, kw in fake.writes:
        _ecs_tag_writes(sent, op, kw)
    return sent


def _service_payload(fake: RecordingCaller, observed: Spec) -> Spec:
    sent: Spec = {}
    for op, kw in fake.writes:
        if op == "ecs.update_service":
            if "desiredCount" in kw:
                sent["desired_count"] = kw["desiredCount"]
            if "taskDefinition" in kw:
                sent["containers"] = containers_from_aws(fake.definitions[kw["taskDefinition"]])
        elif op != "ecs.register_task_definition":  # sent only once a service points at it
            _ecs_tag_writes(sent, op, kw)
    return sent


def _after(observed: Spec, sent: Spec) -> Spec:
    out = {**observed, **{k: v for k, v in sent.items() if k != "tags"}}
    merged_tags = {**observed.get("tags", {}), **sent.get("tags", {})}
    out["tags"] = {k: v for k, v in merged_tags.items() if v is not None}
    return out


def _sent_names(sent: Spec) -> set[str]:
    return {f"tags.{k}" for k in sent.get("tags", {})} | {k for k in sent if k != "tags"}


# -- the kinds -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    kind: str
    specs: st.SearchStrategy[Spec]
    ignorable: tuple[str, ...]
    handler: Callable[[KindContext], Any] | None = None
    put: Callable[[RecordingCaller, str, Spec, bool], None] | None = None
    payload: Callable[[RecordingCaller, Spec], Spec] | None = None
    refuses: Callable[[Action, set[str]], bool] = lambda act, changed: False


def _asg_refuses(act: Action, changed: set[str]) -> bool:
    spec, named = act.params["spec"], fields_of(act).touches("desired_capacity")
    if spec["min_size"] > spec["max_size"]:
        return True  # an ignored min above a new max: AWS would refuse it too
    return named and not spec["min_size"] <= spec["desired_capacity"] <= spec["max_size"]


CASES = [
    Case("autoscaling.Group", asg_specs,
         ("min_size", "max_size", "desired_capacity", "launch_template",
          "launch_template.version", "tags", "tags.owner", "tags.env"),
         AutoScalingGroups, RecordingCaller.put_group, _asg_payload, _asg_refuses),
    Case("ec2.Instance", ec2_specs, ("image_id", "instance_type", "state", "tags", "tags.owner"),
         Ec2Instances, RecordingCaller.put_instance, _ec2_payload,
         lambda act, changed: "image_id" in changed),
    Case("ecs.Cluster", cluster_specs, ("tags", "tags.owner", "tags.env"),
         EcsClusters, RecordingCaller.put_cluster, _cluster_payload),
    Case("ecs.Service", service_specs,
         ("desired_count", "launch_type", "containers", "containers.*.image", "containers.web.cpu",
          "tags", "tags.owner"),
         EcsServices, RecordingCaller.put_service, _service_payload,
         lambda act, changed: "launch_type" in changed),
    Case("sim.Node", node_specs, ("instance_type", "state", "labels", "labels.team")),
    Case("sim.Workload", workload_specs,
         ("replicas", "containers", "containers.*.image", "labels", "labels.tier")),
]


# -- walking specs as compare does -------------------------------------------------------------

def value_at(spec: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(spec, dict):
            spec = spec.get(part)
        elif isinstance(spec, list):
            spec = next((i for i in spec if isinstance(i, dict) and i.get("name") == part), None)
        else:
            return None
    return spec


def leaves(spec: Any, path: str = "") -> set[str]:
    if isinstance(spec, dict) and (spec or not path):
        return {p for k, v in spec.items() for p in leaves(v, f"{path}.{k}" if path else k)}
    if isinstance(spec, list) and spec and all(isinstance(i, dict) and "name" in i for i in spec):
        return {p for i in spec for p in leaves(i, f"{path}.{i['name']}")}
    return {path}


# -- the property ---------------------------------------------------------------------------

def observe(case: Case, spec: Spec, protected: bool) -> tuple[ObservedResource, Any]:
    if case.handler is None:
        sim = SimulatedProvider(":memory:")
        sim.put(case.kind, "it", spec, protected=protected)
        (seen,) = sim.observe(case.kind, 60).resources
        return seen, sim
    fake = RecordingCaller(TARGET)
    assert case.put is not None
    case.put(fake, "it", spec, protected)
    handler = case.handler(KindContext(target=TARGET, caller=fake, options=fake.options))
    (seen,) = handler.observe(60).resources
    return seen, (fake, handler)


def the_update(case: Case, want: DesiredResource, seen: ObservedResource,
               suppress: frozenset[str]) -> tuple[Action | None, set[str]]:
    status = KindStatus(kind=case.kind, count=1, completeness=1.0, fidelity="full",
                        latency_s=0.0)
    snap = Snapshot(target=TARGET, correlation_id="c", captured_at=NOW, latency_s=0.0,
                    resources=(seen,), kinds={case.kind: status})
    diff, _ = compare([want], snap, rules=RULES, policy=POLICY, suppress=suppress)
    ctx = PlanContext(target=TARGET, correlation_id="c", desired_version="v", policy=POLICY,
                      rules=RULES, now=NOW)
    acts = make_plan(diff, snap, ctx).actions
    changed = {c.path for m in diff.modifications for c in m.changes}
    return (acts[0] if acts else None), {p for p in changed if not p.startswith("@")}


def change_ids(case: Case, want: DesiredResource, seen: ObservedResource) -> list[str]:
    _, changed = the_update(case, want, seen, frozenset())
    return sorted(f"{want.key}:{p}" for p in changed)


@SETTINGS
@given(st.sampled_from(CASES), st.data())
def test_an_update_never_sends_a_left_alone_field_and_sends_every_changed_one(case, data):
    desired, observed = data.draw(case.specs), data.draw(case.specs)
    ignore = tuple(data.draw(st.lists(st.sampled_from(case.ignorable), unique=True, max_size=3)))
    seen, world = observe(case, observed, data.draw(st.booleans()))
    want = DesiredResource(key=ResourceKey(kind=case.kind, name="it"), spec=desired,
                           ignore_fields=ignore, protected=data.draw(st.booleans()))
    ids = change_ids(case, want, seen)
    fought = data.draw(st.lists(st.sampled_from(ids), unique=True)) if ids else []
    act, changed = the_update(case, want, seen, frozenset(fought))
    event(f"{case.kind}: {'an update' if act else 'nothing to do'}")
    if act is None:
        return
    if data.draw(st.booleans()):
        act = first_line_only(act, desired)
    after, sent = apply(case, world, act, seen.spec, changed)
    if after is None:
        return
    paths = {f.partition(":")[2] for f in fought}

    def left_alone(path: str) -> bool:
        return field_matches(path, ignore) or any(path == p or path.startswith(f"{p}.")
                                                  for p in paths)

    for path in leaves(after) | leaves(seen.spec):
        if left_alone(path):
            assert value_at(after, path) == value_at(seen.spec, path), (path, act.params)
    assert not {n for n in sent if left_alone(n)}, (sent, act.params)
    for path in changed:
        assert value_at(after, path) == value_at(desired, path), (path, after, act.params)


def first_line_only(act: Action, desired: Spec) -> Action:
    """The action with the raw desired value of every field it does not send whole.

    The plan puts observed values there as a second line of defence; without them, only the
    provider's sending of named fields (and named map keys) stands between the spec and AWS.
    """
    whole = fields_of(act).whole
    spec = {**desired, **{k: v for k, v in act.params["spec"].items() if k in whole}}
    return act.model_copy(update={"params": {**act.params, "spec": spec}})


def apply(case: Case, world: Any, act: Action, observed: Spec,
          changed: set[str]) -> tuple[Spec | None, set[str]]:
    """The resource's spec after the update, and the fields the payload named."""
    if case.handler is None:
        world.apply(act)
        after = world.get(case.kind, "it").spec
        assert act.inverse is not None
        world.apply(act.inverse)
        assert world.get(case.kind, "it").spec == observed  # the undo restores it exactly
        return after, set()
    fake, handler = world
    try:
        handler.apply(act)
    except PermanentError:
        assert case.refuses(act, changed), act.params
        assert fake.writes == []
        return None, set()
    assert case.payload is not None
    sent = case.payload(fake, observed)
    names = _sent_names(sent)
    expected = {p if p.startswith("tags.") else p.partition(".")[0] for p in changed}
    assert expected <= names, (expected, names, act.params)
    return _after(observed, sent), names
