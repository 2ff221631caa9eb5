"""``reconcile import`` on the AWS kinds: a hand-made fleet, imported, is adopted with no other
change; container environment values are never written."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.catalogue.importer import import_resources, to_yaml
from reconciler.core.compare import OWNERSHIP_FIELD
from reconciler.core.policy import Policy
from reconciler.core.sense import sense
from reconciler.desired import load_desired
from tests.integration.aws.support import AMI, LAUNCH_TEMPLATE, Rig, boto, cluster, node

pytestmark = pytest.mark.integration
ADOPT = Policy(adopt=True, backoff_base_s=0.1, jitter=0.0)
SECRET = "hunter2-not-for-yaml"


def _hand_made_fleet(url: str) -> None:
    """What a team built before the reconciler: nothing carries its ownership tags."""
    boto(url, "ec2").run_instances(
        ImageId=AMI, InstanceType="t3.small", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": "Name", "Value": "legacy-web"},
                                     {"Key": "team", "Value": "web"}]}])
    boto(url, "autoscaling").create_auto_scaling_group(
        AutoScalingGroupName="batch", LaunchTemplate={"LaunchTemplateName": LAUNCH_TEMPLATE},
        MinSize=0, MaxSize=3, DesiredCapacity=0, AvailabilityZones=["us-east-1a"],
        Tags=[{"Key": "team", "Value": "batch", "PropagateAtLaunch": False}])
    ecs = boto(url, "ecs")
    ecs.create_cluster(clusterName="shop", tags=[{"key": "env", "value": "prod"}])
    ecs.register_task_definition(family="api", containerDefinitions=[
        {"name": "web", "image": "nginx:1.27", "memory": 256, "cpu": 128,
         "portMappings": [{"containerPort": 80}],
         "environment": [{"name": "DB_PASSWORD", "value": SECRET},
                         {"name": "LOG_LEVEL", "value": "info"}]}])
    ecs.create_service(cluster="shop", serviceName="api", taskDefinition="api", desiredCount=2)


def test_import_then_adopt_on_moto_changes_only_ownership(rig: Rig, moto_url: str,
                                                          tmp_path: Path) -> None:
    _hand_made_fleet(moto_url)
    rig.cycle([node("web-1"), cluster("owned")])  # and two the target already owns
    made = dict(rig.provider.stats.mutations)
    kinds = tuple(sorted(rig.provider.kinds()))
    snap = sense(rig.provider, kinds, target=rig.provider.target, correlation_id="imp",
                 clock=rig.clock)
    assert all(s.complete for s in snap.kinds.values()), snap.kinds
    result = import_resources(snap, kinds)
    assert result.problems == ()
    text = to_yaml(result, ["imported"])
    assert SECRET not in text and "info" not in text
    assert "DB_PASSWORD: null  # value not exported: fill it in, or move it to" in text
    assert "ECS secrets" in text
    (tmp_path / "fleet.yaml").write_text(text.replace("DB_PASSWORD: null", SECRET.join(
        ["DB_PASSWORD: ", ""])).replace("LOG_LEVEL: null", "LOG_LEVEL: info"))  # filled in
    desired = list(load_desired(tmp_path, now=datetime(2026, 1, 1, tzinfo=UTC)).resources)
    assert sorted(str(r.key) for r in desired) == [
        "autoscaling.Group/batch", "ec2.Instance/legacy-web", "ec2.Instance/web-1",
        "ecs.Cluster/owned", "ecs.Cluster/shop", "ecs.Service/api"]

    plan = rig.cycle(desired, ADOPT, dry_run=True)
    assert plan.diff is not None
    assert (plan.diff.additions, plan.diff.deletions, plan.diff.conflicts) == ((), (), ())
    changed = {str(m.key): [c.path for c in m.changes] for m in plan.diff.modifications}
    assert changed == {k: [OWNERSHIP_FIELD] for k in (
        "autoscaling.Group/batch", "ec2.Instance/legacy-web", "ecs.Cluster/shop",
        "ecs.Service/api")}

    adopted = rig.cycle(desired, ADOPT, manual=True)
    assert adopted.outcome.status == "converged", adopted.outcome.error
    assert rig.cycle(desired, ADOPT, dry_run=True).outcome.status == "in_sync"
    makers = ("ec2.run_instances", "autoscaling.create_auto_scaling_group",
              "ecs.create_cluster", "ecs.create_service", "ecs.register_task_definition")
    now = rig.provider.stats.mutations
    assert [now.get(m, 0) - made.get(m, 0) for m in makers] == [0] * 5  # taken over as they are
