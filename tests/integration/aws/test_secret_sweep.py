"""The secrets sweep of the CLI: a canary container environment value (declared, and live in a
service this target does not own) and a secret in the events webhook's URL, through real
``reconcile`` commands with debug logging; then a scan of every place Reconciler writes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration.aws.support import boto
from tests.support.webhook import Webhook

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
CANARY = "canary-Sw33p-env-value-0f9e8d7c"
THEIRS = "canary-Th31rs-unowned-value-4a5b"
URL_SECRET = "hooktoken-Sw33p-in-the-url-1234"


def _world(root: Path, moto_url: str) -> tuple[Path, Path]:
    desired = root / "desired"
    desired.mkdir()
    (desired / "apps.yaml").write_text(textwrap.dedent(f"""\
        resources:
          - kind: ecs.Cluster
            name: apps
          - kind: ecs.Service
            name: api
            depends_on: [ecs.Cluster/apps]
            spec:
              cluster: apps
              desired_count: 1
              containers:
                - name: web
                  image: nginx:1.27
                  memory: 256
                  environment: {{API_TOKEN: "{CANARY}", LOG_LEVEL: info}}
                  secrets:
                    - {{name: DB_PASSWORD, value_from: "arn:aws:ssm:us-east-1:1:parameter/db"}}
        """))
    config = root / "targets.yaml"
    config.write_text(textwrap.dedent(f"""\
        targets:
          sweep:
            provider:
              type: aws
              options: {{endpoint_url: "{moto_url}", emulator: true, region: us-east-1,
                         kinds: [ecs.Cluster, ecs.Service]}}
            desired: desired
            schedule: null
            artifacts: "{root}/artifacts"
            policy: {{max_parallel: 4, backoff_base_s: 0.01, backoff_cap_s: 0.05,
                      max_attempts: 2, max_delete_fraction: 0.5}}
        """))
    ecs = boto(moto_url, "ecs")
    ecs.create_cluster(clusterName="theirs")
    arn = ecs.register_task_definition(family="theirs", containerDefinitions=[{
        "name": "app", "image": "x:1", "memory": 128,
        "environment": [{"name": "TOKEN", "value": THEIRS}]}])["taskDefinition"][
        "taskDefinitionArn"]
    ecs.create_service(cluster="theirs", serviceName="other", taskDefinition=arn, desiredCount=1)
    return config, root / "home"


def _reconcile(config: Path, home: Path, hook: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'include'}{os.pathsep}{ROOT}",
           "RECONCILER_CONFIG": str(config), "RECONCILER_HOME": str(home),
           "RECONCILER_STORE_URL": f"sqlite:///{home}/state.db",
           "RECONCILER_EVENTS_WEBHOOK": hook, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run([sys.executable, "-m", "reconciler", "--verbose", *args,
                          "--target", "sweep"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode in (0, 2), (args, out.stderr[-3000:])
    return out.stdout + out.stderr


def _files_with(root: Path, needles: tuple[str, ...], skip: Path) -> list[str]:
    return [f"{p}: {n}" for p in root.rglob("*") if p.is_file() and skip not in p.parents
            for n in needles if n.encode() in p.read_bytes()]


def _cycle_pages(home: Path) -> list[str]:
    from reconciler.store import open_store
    from reconciler_airflow.ui import data
    from reconciler_airflow.ui.app import _TEMPLATES

    store = open_store(f"sqlite:///{home}/state.db")
    pages = []
    for cycle in store.recent_cycles("sweep", 10):
        detail = data.cycle_detail(store, "sweep", cycle.correlation_id)
        pages.append(_TEMPLATES.get_template("cycle.html").render(
            base="", airflow="/", notice=None, notice_run=None, c=detail, user="viewer",
            can_act=False))
    return pages


def test_no_env_value_and_no_webhook_secret_appear_anywhere(tmp_path: Path, moto_url: str
                                                            ) -> None:
    config, home = _world(tmp_path, moto_url)
    hook = Webhook()
    try:
        url = f"{hook.url}?token={URL_SECRET}"
        outputs = [_reconcile(config, home, url, *args)
                   for args in (["validate"], ["plan", "--json"], ["apply", "--yes"],
                                ["plan", "--json"], ["status"], ["history", "--json"])]
        # a webhook that cannot be reached is logged as it fails: by host, never its query
        outputs.append(_reconcile(config, home, f"http://127.0.0.1:9/hook?token={URL_SECRET}",
                                  "apply", "--yes"))
    finally:
        hook.close()
    ecs = boto(moto_url, "ecs")
    arn = ecs.describe_services(cluster="apps", services=["api"])["services"][0]["taskDefinition"]
    sent = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
    assert {"name": "API_TOKEN", "value": CANARY} in sent["containerDefinitions"][0]["environment"]
    assert hook.bodies, "the webhook got no events: the sweep would prove nothing"
    pages = _cycle_pages(home)
    assert pages and any("api" in p for p in pages)
    needles = (CANARY, THEIRS, URL_SECRET)
    texts = [*outputs, *pages, repr(hook.bodies)]
    assert [(n, t[:200]) for t in texts for n in needles if n in t] == []
    assert _files_with(tmp_path, needles, skip=tmp_path / "desired") == []
    assert (home / "state.db").stat().st_size > 0  # the store was scanned, not missing
