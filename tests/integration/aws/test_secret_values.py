"""Container environment values against moto: sent to ECS in clear, kept everywhere else as
keyed digests; drift still seen (a change of digest); ``secrets`` (valueFrom) compared in clear."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from reconciler.core.model import DesiredResource, ResourceKey
from reconciler.digests import digest, is_digest, keep_clear
from reconciler.providers.aws import AwsProvider
from reconciler.testing import FakeClock
from tests.integration.aws.support import Rig, boto, cluster, res
from tests.support.fault_proxy import AwsRules, FaultProxy

pytestmark = pytest.mark.integration

CANARY = "canary-7f3Qx-env-value-never-kept"
ARN = "arn:aws:ssm:us-east-1:123456789012:parameter/api/token"


class Source:
    """The desired source as a provider reads it at apply time: clear specs by key."""

    def __init__(self) -> None:
        self.specs: dict[str, dict[str, Any]] = {}
        self.reads = 0

    def declare(self, *resources: tuple[str, dict[str, Any]]) -> None:
        self.specs = dict(resources)

    def __call__(self, key: ResourceKey) -> Mapping[str, Any] | None:
        self.reads += 1
        return self.specs.get(str(key))


def api(value: str, *, secrets: list[dict[str, str]] | None = None,
        image: str = "nginx:1.27") -> tuple[DesiredResource, tuple[str, dict[str, Any]]]:
    """The service as the cycle holds it (digests) and as the source declares it (clear)."""
    container: dict[str, Any] = {"name": "web", "image": image, "memory": 256,
                                 "environment": {"API_TOKEN": value, "LOG_LEVEL": "info"}}
    if secrets:
        container["secrets"] = secrets
    fields = {"cluster": "apps", "desired_count": 1, "containers": [container]}
    desired = res("ecs.Service", "api", **fields)
    with keep_clear():
        clear = res("ecs.Service", "api", **fields).spec
    return desired, ("ecs.Service/api", clear)


@pytest.fixture()
def source() -> Source:
    return Source()


@pytest.fixture()
def vrig(proxy: FaultProxy, source: Source) -> Rig:
    clock = FakeClock()
    proxy.reset(rules=AwsRules(clock=clock.monotonic))
    provider = AwsProvider("fleet", {"endpoint_url": proxy.url, "emulator": True,
                                     "wait_interval_s": 0.0, "kinds": ["ecs.Cluster",
                                                                       "ecs.Service"]},
                           sleep=clock.sleep, monotonic=clock.monotonic, clear_spec=source)
    return Rig(provider=provider, clock=clock)


def live_containers(url: str, service: str = "api", cluster_name: str = "apps") -> list[dict]:
    ecs = boto(url, "ecs")
    arn = ecs.describe_services(cluster=cluster_name, services=[service])["services"][0][
        "taskDefinition"]
    return ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"][
        "containerDefinitions"]


def env_of(containers: list[dict]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in containers[0].get("environment", [])}


def test_values_reach_the_task_definition_and_the_cycle_keeps_only_digests(
        vrig: Rig, source: Source, moto_url: str) -> None:
    desired, clear = api(CANARY, secrets=[{"name": "DB_PASSWORD", "value_from": ARN}])
    source.declare(clear)
    report = vrig.cycle([cluster("apps"), desired])
    assert report.outcome.status == "converged", report.outcome.error
    live = live_containers(moto_url)
    assert env_of(live)["API_TOKEN"] == CANARY
    assert live[0]["secrets"] == [{"name": "DB_PASSWORD", "valueFrom": ARN}]
    kept = "".join(x.model_dump_json() for x in (report.outcome, *report.plans,
                                                  *report.actuations, report.snapshot))
    kept += repr(vrig.store.__dict__) + repr(vrig.events.events)
    assert CANARY not in kept
    assert digest(CANARY) in kept  # what the plan and the snapshot hold instead
    seen = vrig.fleet("ecs.Service")["ecs.Service/api"]["containers"][0]
    assert seen["environment"]["API_TOKEN"] == digest(CANARY)
    assert seen["secrets"] == [{"name": "DB_PASSWORD", "value_from": ARN}]
    again = vrig.cycle([cluster("apps"), desired])
    assert again.outcome.status == "in_sync" and again.plans == []


def test_a_changed_value_is_drift_named_by_its_path_and_undone_with_the_declared_value(
        vrig: Rig, source: Source, moto_url: str) -> None:
    desired, clear = api(CANARY)
    source.declare(clear)
    vrig.cycle([cluster("apps"), desired])
    ecs = boto(moto_url, "ecs")
    edited = [{**c, "environment": [{"name": "API_TOKEN", "value": "typed-by-hand"},
                                    {"name": "LOG_LEVEL", "value": "info"}]}
              for c in live_containers(moto_url)]
    arn = ecs.register_task_definition(family="by-hand", containerDefinitions=edited)[
        "taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster="apps", service="api", taskDefinition=arn)
    report = vrig.cycle([cluster("apps"), desired])
    assert report.outcome.status == "converged", report.outcome.error
    (change,) = report.diff.modifications[0].changes
    assert change.path == "containers.web.environment.API_TOKEN"
    assert (change.before, change.after) == (digest("typed-by-hand"), digest(CANARY))
    assert env_of(live_containers(moto_url))["API_TOKEN"] == CANARY
    assert "typed-by-hand" not in report.snapshot.model_dump_json()


def test_a_source_changed_since_the_plan_fails_the_action_and_sends_nothing(
        vrig: Rig, source: Source, moto_url: str) -> None:
    desired, clear = api(CANARY)
    source.declare(clear)
    vrig.cycle([cluster("apps"), desired])
    newer, _ = api("value-of-this-cycle")
    _, edited_since = api("value-someone-pushed-meanwhile")
    source.declare(edited_since)
    vrig.provider.stats.reset()
    report = vrig.cycle([cluster("apps"), newer])
    assert report.outcome.status != "converged"
    assert "desired source" in (report.outcome.error or "") + repr(report.actuations)
    assert "ecs.register_task_definition" not in vrig.provider.stats.mutations
    assert env_of(live_containers(moto_url))["API_TOKEN"] == CANARY  # left as it was


def test_without_the_values_an_earlier_revision_with_the_same_containers_is_used(
        vrig: Rig, source: Source, moto_url: str) -> None:
    first, clear_first = api(CANARY)
    second, clear_second = api("second-value")
    source.declare(clear_first)
    vrig.cycle([cluster("apps"), first])
    first_arn = boto(moto_url, "ecs").describe_services(cluster="apps", services=["api"])[
        "services"][0]["taskDefinition"]
    source.declare(clear_second)
    vrig.cycle([cluster("apps"), second])
    source.declare()  # an undo's values are in no source: the old revision holds them
    report = vrig.cycle([cluster("apps"), first])
    assert report.outcome.status == "converged", report.outcome.error
    now = boto(moto_url, "ecs").describe_services(cluster="apps", services=["api"])[
        "services"][0]["taskDefinition"]
    assert now == first_arn


def test_an_unowned_services_values_are_digested_when_sensed(vrig: Rig, moto_url: str) -> None:
    ecs = boto(moto_url, "ecs")
    ecs.create_cluster(clusterName="theirs")
    arn = ecs.register_task_definition(family="theirs", containerDefinitions=[{
        "name": "app", "image": "x:1", "memory": 128,
        "environment": [{"name": "TOKEN", "value": CANARY}]}])["taskDefinition"][
        "taskDefinitionArn"]
    ecs.create_service(cluster="theirs", serviceName="other", taskDefinition=arn,
                       desiredCount=1)
    seen = vrig.provider.observe("ecs.Service", 30)
    (other,) = [r for r in seen.resources if r.key.name == "other"]
    assert not other.managed
    assert other.spec["containers"][0]["environment"] == {"TOKEN": digest(CANARY)}
    assert CANARY not in seen.model_dump_json()
    report = vrig.cycle([cluster("apps")])
    assert CANARY not in report.snapshot.model_dump_json()


def test_a_secrets_pointer_is_compared_in_clear(vrig: Rig, source: Source,
                                                moto_url: str) -> None:
    desired, clear = api(CANARY, secrets=[{"name": "DB_PASSWORD", "value_from": ARN}])
    source.declare(clear)
    vrig.cycle([cluster("apps"), desired])
    ecs = boto(moto_url, "ecs")
    moved = [{**c, "secrets": [{"name": "DB_PASSWORD", "valueFrom": ARN + "-old"}]}
             for c in live_containers(moto_url)]
    arn = ecs.register_task_definition(family="by-hand", containerDefinitions=moved)[
        "taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster="apps", service="api", taskDefinition=arn)
    report = vrig.cycle([cluster("apps"), desired])
    (change,) = report.diff.modifications[0].changes
    assert change.path == "containers.web.secrets.DB_PASSWORD.value_from"
    assert (change.before, change.after) == (ARN + "-old", ARN)
    assert not is_digest(change.after)
    assert live_containers(moto_url)[0]["secrets"] == [{"name": "DB_PASSWORD", "valueFrom": ARN}]
