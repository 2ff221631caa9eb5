"""The fault proxy keeps AWS's documented rules that moto does not: client tokens, eventual
consistency of new instances and their tags, token-bucket throttling. Plain boto3 clients
through the proxy; moto is asked directly (bypassing the proxy) for the truth."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from reconciler.testing import FakeClock
from tests.integration.aws.support import AMI, boto
from tests.support.fault_proxy import AwsRules, FaultProxy, Faults

pytestmark = pytest.mark.integration


def client(url: str, service: str, region: str = "us-east-1") -> Any:
    """No botocore retries: every call the test makes is one call the proxy sees."""
    return boto3.client(service, endpoint_url=url, region_name=region,
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"mode": "standard", "total_max_attempts": 1}))


def launch(ec2: Any, token: str, instance_type: str = "t3.micro") -> str:
    made = ec2.run_instances(ImageId=AMI, InstanceType=instance_type, MinCount=1, MaxCount=1,
                             ClientToken=token, TagSpecifications=[{
                                 "ResourceType": "instance",
                                 "Tags": [{"Key": "Name", "Value": "lagging"}]}])
    return str(made["Instances"][0]["InstanceId"])


def instances_in_moto(moto_url: str, region: str = "us-east-1") -> dict[str, str]:
    """Every instance moto holds, ``id -> state``, asked without the proxy."""
    ec2 = boto3.client("ec2", endpoint_url=moto_url, region_name=region,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    return {i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances()["Reservations"]
            for i in r["Instances"]}


def listed(ec2: Any, **kwargs: Any) -> list[str]:
    return [i["InstanceId"] for r in ec2.describe_instances(**kwargs)["Reservations"]
            for i in r["Instances"]]


def error_code(caught: pytest.ExceptionInfo[ClientError]) -> str:
    return str(caught.value.response["Error"]["Code"])


# -- client tokens -----------------------------------------------------------------------------

def test_a_repeated_client_token_returns_the_first_instance_and_launches_nothing(
        proxy: FaultProxy, moto_url: str) -> None:
    ec2 = client(proxy.url, "ec2")
    first, again = launch(ec2, "tok-1"), launch(ec2, "tok-1")
    assert again == first
    assert list(instances_in_moto(moto_url)) == [first]
    assert proxy.forwarded["RunInstances"] == 1
    assert proxy.injected["idempotent:RunInstances"] == 1


def test_a_token_reused_after_termination_answers_the_terminated_instance(
        proxy: FaultProxy, moto_url: str) -> None:
    ec2 = client(proxy.url, "ec2")
    first = launch(ec2, "tok-2")
    boto(moto_url, "ec2").terminate_instances(InstanceIds=[first])
    assert launch(ec2, "tok-2") == first
    assert instances_in_moto(moto_url) == {first: "terminated"}


def test_the_same_token_with_other_parameters_is_an_idempotent_parameter_mismatch(
        proxy: FaultProxy, moto_url: str) -> None:
    ec2 = client(proxy.url, "ec2")
    launch(ec2, "tok-3")
    with pytest.raises(ClientError) as caught:
        launch(ec2, "tok-3", instance_type="m5.large")
    assert error_code(caught) == "IdempotentParameterMismatch"
    assert len(instances_in_moto(moto_url)) == 1
    assert proxy.injected["mismatch:RunInstances"] == 1


def test_client_tokens_are_per_region(proxy: FaultProxy, moto_url: str) -> None:
    east, west = launch(client(proxy.url, "ec2"), "tok-4"), launch(
        client(proxy.url, "ec2", "us-west-2"), "tok-4")
    assert east != west
    assert len(instances_in_moto(moto_url, "us-west-2")) == 1


def test_a_dropped_first_response_still_remembers_the_token(proxy: FaultProxy,
                                                            moto_url: str) -> None:
    proxy.reset(Faults(drop_first=frozenset({"RunInstances"})))
    ec2 = client(proxy.url, "ec2")
    with pytest.raises(Exception):  # noqa: B017 - the connection reset, whatever botocore names it
        launch(ec2, "tok-5")
    applied = list(instances_in_moto(moto_url))
    assert launch(ec2, "tok-5") == applied[0] and len(applied) == 1
    assert len(instances_in_moto(moto_url)) == 1


def test_tokens_off_forward_every_create(proxy: FaultProxy, moto_url: str) -> None:
    proxy.reset(rules=AwsRules(client_tokens=False))
    ec2 = client(proxy.url, "ec2")
    assert launch(ec2, "tok-6") != launch(ec2, "tok-6")  # moto's own behaviour
    assert len(instances_in_moto(moto_url)) == 2


def test_ecs_create_service_keeps_its_client_token(proxy: FaultProxy) -> None:
    ecs = client(proxy.url, "ecs")
    ecs.create_cluster(clusterName="c")
    ecs.register_task_definition(family="f", containerDefinitions=[
        {"name": "web", "image": "nginx", "memory": 256}])
    args = {"cluster": "c", "serviceName": "s", "taskDefinition": "f", "desiredCount": 1}
    first = ecs.create_service(**args, clientToken="svc-tok")["service"]["serviceArn"]
    again = ecs.create_service(**args, clientToken="svc-tok")["service"]["serviceArn"]
    assert again == first and proxy.forwarded["CreateService"] == 1
    with pytest.raises(ClientError) as caught:
        ecs.create_service(**{**args, "desiredCount": 2}, clientToken="svc-tok")
    assert error_code(caught) == "InvalidParameterException"
    assert "clientToken" in str(caught.value)
    assert len(ecs.list_services(cluster="c")["serviceArns"]) == 1


# -- eventual consistency --------------------------------------------------------------------

def test_a_new_instance_is_unlisted_and_not_found_by_id_until_the_lag_passes(
        proxy: FaultProxy) -> None:
    clock = FakeClock()
    proxy.reset(rules=AwsRules(listing_lag_s=15, clock=clock.monotonic))
    ec2 = client(proxy.url, "ec2")
    iid = launch(ec2, "lag-1")
    clock.advance(14)
    assert listed(ec2) == []
    assert listed(ec2, Filters=[{"Name": "instance-id", "Values": [iid]}]) == []
    with pytest.raises(ClientError) as caught:
        ec2.describe_instances(InstanceIds=[iid])
    assert error_code(caught) == "InvalidInstanceID.NotFound"
    assert proxy.injected["hidden:DescribeInstances"] == 3
    clock.advance(1)
    assert listed(ec2) == [iid] == listed(ec2, InstanceIds=[iid])


def test_tags_of_a_new_instance_lag_behind_it(proxy: FaultProxy) -> None:
    clock = FakeClock()
    proxy.reset(rules=AwsRules(tag_lag_s=15, clock=clock.monotonic))
    ec2 = client(proxy.url, "ec2")
    iid = launch(ec2, "lag-2")
    by_name = [{"Name": "tag:Name", "Values": ["lagging"]}]
    tags_of = [{"Name": "resource-id", "Values": [iid]}]
    assert ec2.describe_tags(Filters=tags_of)["Tags"] == []
    assert listed(ec2, Filters=by_name) == []
    assert listed(ec2, Filters=[{"Name": "tag-key", "Values": ["Name"]}]) == []
    assert listed(ec2) == [iid]  # the instance itself is listed
    clock.advance(15)
    assert [t["Value"] for t in ec2.describe_tags(Filters=tags_of)["Tags"]] == ["lagging"]
    assert listed(ec2, Filters=by_name) == [iid]


# -- request throttling ----------------------------------------------------------------------

def test_an_empty_token_bucket_refuses_with_request_limit_exceeded_and_refills(
        proxy: FaultProxy) -> None:
    clock = FakeClock()
    proxy.reset(rules=AwsRules(rate_limits={"DescribeInstances": (0.5, 3)}, clock=clock.monotonic))
    ec2 = client(proxy.url, "ec2")
    for _ in range(3):
        ec2.describe_instances()
    with pytest.raises(ClientError) as caught:
        ec2.describe_instances()
    assert error_code(caught) == "RequestLimitExceeded"
    assert proxy.forwarded["DescribeInstances"] == 3
    assert proxy.injected["limit:DescribeInstances"] == 1
    clock.advance(2)  # one token back at 0.5/s
    ec2.describe_instances()
    with pytest.raises(ClientError):
        ec2.describe_instances()
    ec2.describe_tags()  # other actions have their own buckets (none here)


def test_a_json_protocol_is_throttled_with_throttling_exception(proxy: FaultProxy) -> None:
    proxy.reset(rules=AwsRules(rate_limits={"ListClusters": (1.0, 1)},
                               clock=FakeClock().monotonic))
    ecs = client(proxy.url, "ecs")
    ecs.list_clusters()
    with pytest.raises(ClientError) as caught:
        ecs.list_clusters()
    assert error_code(caught) == "ThrottlingException"


def test_the_listing_lag_holds_without_client_tokens_too(proxy: FaultProxy) -> None:
    clock = FakeClock()
    proxy.reset(rules=AwsRules(client_tokens=False, listing_lag_s=5, clock=clock.monotonic))
    ec2 = client(proxy.url, "ec2")
    iid = launch(ec2, "lag-3")
    assert listed(ec2) == []
    clock.advance(5)
    assert listed(ec2) == [iid]
