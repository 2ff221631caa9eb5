"""No credential ever appears in a log line, an error, an observation or a repr."""

from __future__ import annotations

import json
import logging
import pickle

import pytest

from reconciler.core.errors import PermanentError, TemporaryError
from reconciler.embedded import free_port
from reconciler.providers.aws import AwsProvider, Scrubber
from tests.integration.aws.support import Rig, node

pytestmark = pytest.mark.integration

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETSECRETKEY"
KEY_ID = "AKIAIOSFODNN7RECONCIL"


def everything_said(caplog: pytest.LogCaptureFixture, *values: object) -> str:
    return "\n".join([caplog.text, *(repr(v) for v in values), *(str(v) for v in values)])


def test_the_secret_key_never_leaves_the_adapter(moto_url: str,
                                                 caplog: pytest.LogCaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)  # the standard chain
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    caplog.set_level(logging.DEBUG)  # botocore's own debug logging included
    provider = AwsProvider("fleet", {"endpoint_url": moto_url})
    report = Rig(provider=provider).cycle([node("web-1")])
    observation = provider.observe("ec2.Instance", 10)
    dead = AwsProvider("fleet", {"endpoint_url": f"http://127.0.0.1:{free_port()}",
                                 "max_attempts": 1, "page_attempts": 1})
    broken = dead.observe("ec2.Instance", 5)
    with pytest.raises(TemporaryError) as unreachable:
        dead.caller.call("ec2", "describe_instances")
    with pytest.raises(PermanentError) as refused:
        provider.caller.call("ecs", "describe_services", cluster="nope", services=["x"])
    said = everything_said(caplog, provider, dead, report.outcome, observation, broken,
                           unreachable.value, refused.value, pickle.dumps(unreachable.value),
                           provider.stats)
    assert report.outcome.converged and broken.completeness == 0.0
    assert "botocore" in caplog.text or "urllib3" in caplog.text  # debug logging was on
    assert SECRET not in said and SECRET[:20] not in said


def test_explicit_credentials_and_endpoint_userinfo_are_scrubbed(moto_url: str) -> None:
    host = moto_url.removeprefix("http://")
    provider = AwsProvider("fleet", {"endpoint_url": f"http://user:{SECRET}@{host}",
                                     "access_key_id": KEY_ID, "secret_access_key": SECRET})
    assert SECRET not in repr(provider) and SECRET not in repr(provider.options)
    scrub = provider.caller.scrub
    assert SECRET not in scrub(f"failed with {SECRET} and {KEY_ID}")
    assert KEY_ID not in scrub(f"Credential={KEY_ID}/20260101/us-east-1/ec2/aws4_request")


def test_a_scrubber_removes_signatures_and_access_key_ids() -> None:
    scrub = Scrubber([SECRET])
    text = scrub(f"Signature=abc123 Credential=ASIAXXXXXXXXXXXXXXXX/x {SECRET}")
    assert "abc123" not in text and "ASIAXXXXXXXXXXXXXXXX" not in text and SECRET not in text


def test_an_airflow_connection_supplies_the_session(moto_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("airflow.providers.amazon.aws.hooks.base_aws")
    conn = json.dumps({"conn_type": "aws", "login": KEY_ID, "password": SECRET,
                       "extra": {"region_name": "us-east-1"}})
    monkeypatch.setenv("AIRFLOW_CONN_RECONCILER_AWS", conn)
    provider = AwsProvider("fleet", {"aws_conn_id": "reconciler_aws", "endpoint_url": moto_url})
    observed = provider.observe("ecs.Cluster", 10)
    assert observed.completeness == 1.0, observed.errors
    creds = provider._factory._session.get_credentials().get_frozen_credentials()
    assert creds.access_key == KEY_ID and SECRET not in repr(provider)
