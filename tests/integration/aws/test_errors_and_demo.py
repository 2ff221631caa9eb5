"""The AWS error table, and the embedded demo fleet converging with the aws provider."""

from __future__ import annotations

import pickle

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from reconciler.awserrors import translate
from reconciler.core.errors import PermanentError, TemporaryError
from reconciler.desired import load_desired_dir
from reconciler.embedded import DEMO_DESIRED, DEMO_TARGET, seed_aws_demo
from reconciler.providers.aws import AwsTemporaryError, Scrubber
from tests.integration.aws.support import Rig, make_provider

pytestmark = pytest.mark.integration


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize("exc,kind", [
    (client_error("Throttling", 400), TemporaryError),
    (client_error("RequestLimitExceeded", 503), TemporaryError),
    (client_error("IncorrectInstanceState", 400), TemporaryError),
    (client_error("SomethingNew", 503), TemporaryError),
    (client_error("SomethingNew", 429), TemporaryError),
    (client_error("AccessDenied", 403), PermanentError),
    (client_error("InvalidParameterValue", 400), PermanentError),
    (client_error("SomethingNew", 400), PermanentError),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), TemporaryError),
    (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), TemporaryError),
    (ResponseParserError("<html>500</html>"), TemporaryError),
    (NoCredentialsError(), PermanentError),
])
def test_aws_failures_map_to_what_the_engine_should_do(exc: Exception, kind: type) -> None:
    assert isinstance(translate(exc, "svc.op", Scrubber()), kind)


def test_translated_errors_pickle_with_their_code() -> None:
    error = translate(client_error("Throttling", 400), "ec2.run_instances", Scrubber())
    assert isinstance(error, AwsTemporaryError)
    back = pickle.loads(pickle.dumps(error))
    assert (back.code, back.delay, str(back)) == ("Throttling", 1.0, str(error))


def test_the_embedded_demo_fleet_drifts_and_converges(moto_url: str) -> None:
    lines = seed_aws_demo(moto_url)
    assert len(lines) == 6
    rig = Rig(provider=make_provider(moto_url, target=DEMO_TARGET))
    desired = list(load_desired_dir(DEMO_DESIRED).resources)
    first = rig.cycle(desired, manual=True)
    assert first.diff is not None
    changed = {str(k.key) for k in first.diff.modifications} | {
        str(a.key) for a in first.diff.additions}
    assert changed == {"ec2.Instance/web-2", "ec2.Instance/web-3", "ecs.Service/api",
                       "ecs.Service/checkout"}
    assert first.outcome.status == "converged", first.outcome.error
    unowned = [r for r in rig.provider.observe("ec2.Instance", 30).resources if not r.managed]
    assert [r.key.name for r in unowned] == ["legacy-batch"]
    assert rig.provider.observe("ec2.Instance", 30).resources[0].protected  # ledger-db
    assert rig.cycle(desired).outcome.status == "in_sync"
