"""Desired state in a versioned S3 prefix: every cycle knows its version; runs can be pinned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.core.errors import InvalidDesiredState
from reconciler.desired import load_desired
from reconciler.desired.s3_source import list_versions, load_desired_s3, version_ids_of
from reconciler.orchestration.runtime import load_target
from tests.integration.aws.support import boto

pytestmark = pytest.mark.integration

NODES = b"""resources:
  - kind: ec2.Instance
    name: web-1
    spec: {image_id: ami-1, instance_type: t3.micro}
"""
SERVICES = b"""resources:
  - kind: ecs.Cluster
    name: apps
"""


@pytest.fixture()
def s3(moto_url: str) -> Any:
    client = boto(moto_url, "s3")
    client.create_bucket(Bucket="fleet-desired")
    client.put_bucket_versioning(Bucket="fleet-desired",
                                 VersioningConfiguration={"Status": "Enabled"})
    client.put_object(Bucket="fleet-desired", Key="prod/nodes.yaml", Body=NODES)
    client.put_object(Bucket="fleet-desired", Key="prod/apps.yml", Body=SERVICES)
    client.put_object(Bucket="fleet-desired", Key="prod/README.md", Body=b"not yaml")
    client.put_object(Bucket="fleet-desired", Key="prod/.nodes.yaml.swp", Body=b"[")
    client.put_object(Bucket="fleet-desired", Key="prod/old/nodes.yaml", Body=b"[")
    return client


def test_every_yaml_object_of_the_prefix_is_loaded_with_its_version(s3: Any) -> None:
    state = load_desired_s3("s3://fleet-desired/prod/", client=s3)
    assert [str(r.key) for r in state.resources] == ["ec2.Instance/web-1", "ecs.Cluster/apps"]
    versions = version_ids_of(state)
    assert set(versions) == {"prod/nodes.yaml", "prod/apps.yml"}
    assert versions == list_versions("s3://fleet-desired/prod", s3)
    assert state.version.startswith("s3-") and state.source_uri == "s3://fleet-desired/prod/"
    assert state.resources[0].source_file.endswith(f"?versionId={versions['prod/nodes.yaml']}")


def test_a_new_object_version_is_a_new_desired_version_and_old_ones_can_be_pinned(s3: Any) -> None:
    first = load_desired_s3("s3://fleet-desired/prod/", client=s3)
    s3.put_object(Bucket="fleet-desired", Key="prod/nodes.yaml",
                  Body=NODES.replace(b"t3.micro", b"m5.large"))
    second = load_desired_s3("s3://fleet-desired/prod/", client=s3)
    assert second.version != first.version
    assert second.resources[0].spec["instance_type"] == "m5.large"
    pinned = load_desired_s3("s3://fleet-desired/prod/", client=s3,
                             version_ids=version_ids_of(first))
    assert pinned.version == first.version
    assert pinned.resources[0].spec["instance_type"] == "t3.micro"


def test_a_bad_object_is_rejected_with_its_key_version_line_and_field(s3: Any) -> None:
    s3.put_object(Bucket="fleet-desired", Key="prod/bad.yaml",
                  Body=b"resources:\n  - kind: ec2.Instance\n    name: x\n    spec: {}\n")
    with pytest.raises(InvalidDesiredState) as caught:
        load_desired_s3("s3://fleet-desired/prod/", client=s3)
    where, message = caught.value.problems[0]
    assert where.file.startswith("s3://fleet-desired/prod/bad.yaml?versionId=")
    assert where.line == 4 and "image_id" in (where.field or "")


def test_a_missing_bucket_or_an_empty_prefix_is_rejected(s3: Any) -> None:
    with pytest.raises(InvalidDesiredState, match="NoSuchBucket"):
        load_desired_s3("s3://no-such-bucket/prod/", client=s3)
    with pytest.raises(InvalidDesiredState, match="no YAML files"):
        load_desired_s3("s3://fleet-desired/empty/", client=s3)
    assert load_desired_s3("s3://fleet-desired/empty/", client=s3, allow_empty=True).resources == ()


def test_load_desired_and_a_target_read_s3_through_the_standard_endpoint(
        s3: Any, moto_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert len(load_desired("s3://fleet-desired/prod/").resources) == 2
    config = tmp_path / "targets.yaml"
    config.write_text("targets:\n  prod:\n    provider: {type: aws, options: {region: us-east-1}}\n"
                      "    desired: s3://fleet-desired/prod/\n")
    target = load_target("prod", str(config), f"sqlite:///{tmp_path}/state.db")
    assert target.kinds() == ("autoscaling.Group", "ec2.Instance", "ecs.Cluster", "ecs.Service")
    assert target.load_desired().version.startswith("s3-")
