"""One real moto_server process per session (reset before every test), a fault proxy in front
of it, and a rig that runs whole reconciliation cycles through the aws provider.

The rig's provider talks to moto through the proxy with ``AwsRules()`` on (client tokens kept
as AWS keeps them, no lag, no limits) on the rig's fake clock, so every cycle test runs
against AWS's token rule. Hand changes go to ``moto_url`` directly."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from reconciler.embedded import MotoProcess, reset
from reconciler.testing import FakeClock
from tests.integration.aws.support import AMI, LAUNCH_TEMPLATE, Rig, make_provider
from tests.support.fault_proxy import AwsRules, FaultProxy

# Never let boto3 look for credentials or regions outside the test (no metadata service).
os.environ.update({"AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"})
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
             "AWS_SESSION_TOKEN"):
    os.environ.pop(_var, None)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with MotoProcess() as server:
        yield server.url


@pytest.fixture(scope="session")
def _proxy(moto_url: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(moto_url)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture()
def proxy(_proxy: FaultProxy) -> FaultProxy:
    _proxy.reset()
    return _proxy


@pytest.fixture(autouse=True)
def _fresh_moto(moto_url: str) -> None:
    reset(moto_url)


@pytest.fixture()
def rig(proxy: FaultProxy) -> Rig:
    clock = FakeClock()
    proxy.reset(rules=AwsRules(clock=clock.monotonic))
    provider = make_provider(proxy.url, clock=clock)
    provider.client("ec2").create_launch_template(
        LaunchTemplateName=LAUNCH_TEMPLATE, LaunchTemplateData={"ImageId": AMI})
    return Rig(provider=provider, clock=clock)


