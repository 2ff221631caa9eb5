"""No credential anywhere: a recognisable fake AWS secret, every CLI command and a full DAG cycle
with debug logging, then a scan of logs, artifacts, XComs, the state store and the UI pages.

The same scan covers container environment values: the demo's declared ``PAYMENTS_URL`` value
and a canary in a live service the target does not own are kept only as digests. And webhook
URLs with a token in their query: the events webhook (every cycle event, from the DAG's tasks
and the CLI; once unreachable, so its failure is logged) and the alert webhook the critical
page goes to. The events themselves (webhook bodies) are scanned too."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.orchestration import taskgraph as tg
from tests.dags import support
from tests.dags.conftest import HOME, ROOT, STATE

SECRET = "rEcOnCiLeRfAkEsEcReT0123456789abcdefGHIJ"
KEY_ID = "AKIARECONCILERTEST01"
DECLARED_ENV = "http://ledger.internal:8080"  # include/desired/aws_demo/workloads.yaml
UNOWNED_ENV = "canary-DagTest-unowned-env-value-77"
URL_SECRET = "hooktoken-DagTest-in-the-query-5150"
NEEDLES = (SECRET, DECLARED_ENV, UNOWNED_ENV, URL_SECRET)

pytestmark = pytest.mark.filterwarnings("ignore")


def _files_with_secret(*roots: Path) -> list[str]:
    hits = []
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file() and any(n.encode() in path.read_bytes() for n in NEEDLES):
                hits.append(str(path))
    return hits


def test_the_secret_key_appears_nowhere(dagbag, capfd, monkeypatch):
    from reconciler.embedded import MotoProcess, endpoint_file, seed_aws_demo

    hook = support.Webhook()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    # the cloud target names no alerts.webhook: its critical page goes to the default
    monkeypatch.setenv("RECONCILER_WEBHOOK_URL", f"{hook.base}/page?token={URL_SECRET}")
    monkeypatch.setenv("RECONCILER_EVENTS_WEBHOOK", f"{hook.url}?token={URL_SECRET}")
    unreachable = f"http://127.0.0.1:9/hook?token={URL_SECRET}"
    logging.getLogger().setLevel(logging.DEBUG)
    logging.getLogger("botocore").setLevel(logging.DEBUG)
    outputs: list[str] = []
    try:
        with MotoProcess() as moto:
            endpoint_file().write_text(moto.url + "\n")
            seed_aws_demo(moto.url, target="cloud")  # drifts it too: checkout (critical) 4 -> 1
            _unowned_service(moto.url)
            dr, states = support.run(dagbag, "cloud")
            assert dr.state == "success", states
            assert states[tg.PAGE] == "success", states
            from_tasks = list(hook.paths)  # what the DAG's own tasks sent
            commands = (["validate"], ["plan", "--json"], ["apply", "--yes"], ["status"],
                        ["history", "--json"], ["breaker", "reset"], ["plan", "--json"])
            for index, args in enumerate(commands):
                events = os.environ["RECONCILER_EVENTS_WEBHOOK"]
                if index == len(commands) - 1:  # the last one logs the webhook failing
                    events = unreachable
                out = subprocess.run(
                    [sys.executable, "-m", "reconciler", "--verbose", *args[:1], *args[1:],
                     "--target", "cloud"] if args[0] != "breaker" else
                    [sys.executable, "-m", "reconciler", "--verbose", "breaker", "reset",
                     "--target", "cloud"],
                    env={**os.environ, "PYTHONPATH": str(ROOT / "include"),
                         "RECONCILER_EVENTS_WEBHOOK": events},
                    capture_output=True, text=True, timeout=300)
                outputs += [out.stdout, out.stderr]
                assert out.returncode in (0, 2), (args, out.stderr[-2000:])
            assert "events webhook http://127.0.0.1:9/hook?... failed (URLError)" in out.stderr
            outputs += _ui_pages()
    finally:
        logging.getLogger().setLevel(logging.WARNING)
        hook.close()
    captured = capfd.readouterr()
    outputs += [captured.out, captured.err, json.dumps(hook.bodies)]
    assert any(p.startswith("/page") for p in from_tasks), from_tasks  # the page was sent
    assert sum(p.startswith("/hook") for p in from_tasks) > 10  # and the cycle's events
    leaks = [(n, o[max(0, o.find(n) - 200):o.find(n) + 40]) for o in outputs for n in NEEDLES
             if n in o]
    assert len(outputs) > 15 and leaks == []
    assert _files_with_secret(STATE, HOME / "airflow") == []  # store, artifacts, XComs, logs


def _unowned_service(url: str) -> None:
    import boto3

    ecs = boto3.client("ecs", endpoint_url=url, region_name="us-east-1")
    ecs.create_cluster(clusterName="theirs")
    arn = ecs.register_task_definition(family="theirs", containerDefinitions=[{
        "name": "app", "image": "x:1", "memory": 128,
        "environment": [{"name": "TOKEN", "value": UNOWNED_ENV}]}])["taskDefinition"][
        "taskDefinitionArn"]
    ecs.create_service(cluster="theirs", serviceName="other", taskDefinition=arn, desiredCount=1)


def _ui_pages() -> list[str]:
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    client = TestClient(create_app())
    pages = ["/reconciler/", "/reconciler/targets/cloud", "/reconciler/audit?target=cloud",
             "/reconciler/api/targets", "/reconciler/api/targets/cloud",
             "/reconciler/api/audit?target=cloud"]
    out = []
    for page in pages:
        reply = client.get(page)
        assert reply.status_code == 200, (page, reply.status_code)
        out.append(reply.text)
    cycles = client.get("/reconciler/api/targets/cloud").json()["history"]
    assert cycles, "no cycle pages to scan"
    for cycle in cycles[:3]:
        out.append(client.get(f"/reconciler/targets/cloud/cycles/{cycle['correlation_id']}").text)
    return out


def test_the_scan_finds_a_planted_secret(tmp_path):
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "leak.json").write_bytes(b'{"k": "' + SECRET.encode() + b'"}')
    assert _files_with_secret(tmp_path) == [str(tmp_path / "deep" / "leak.json")]
