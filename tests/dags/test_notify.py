"""Notices through Airflow's notifiers, each provider sending to a loopback receiver: the
payload shapes Slack, PagerDuty and Apprise get, refused endpoints, and the PagerDuty
trigger/resolve sequence of one target across two cycles (dag.test())."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator

import pytest

from reconciler.orchestration import taskgraph as tg
from tests.dags import support

pytestmark = pytest.mark.filterwarnings("ignore")
PD_KEY = "R0UTINGKEY0000000000000000000000"


def _conn(conn_id: str, **fields: object) -> None:
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields)


@pytest.fixture()
def receivers() -> Iterator[dict[str, support.Webhook]]:
    """Slack, PagerDuty and Apprise connections pointed at loopback receivers."""
    hooks = {"slack": support.Webhook(), "apprise": support.Webhook(),
             "pagerduty": support.Webhook(reply={"status": "success", "message": "Event processed",
                                                 "dedup_key": "reconciler/paged"})}
    _conn("rc_slack", conn_type="slackwebhook", password="T0001/B0001/s3cr3tT0ken",
          host=f"{hooks['slack'].base}/services")
    _conn("rc_pagerduty", conn_type="pagerduty_events", password=PD_KEY,
          host=hooks["pagerduty"].base)
    _conn("rc_apprise", conn_type="apprise",
          extra={"config": {"path": f"json://127.0.0.1:{hooks['apprise'].server.server_port}/a"}})
    yield hooks
    for hook in hooks.values():
        hook.close()


CHANNELS = {"slack_conn_id": "rc_slack", "pagerduty_conn_id": "rc_pagerduty",
            "apprise_conn_id": "rc_apprise"}


def _critical(target: str = "paged", detail: str = "3 workloads"):
    from reconciler.output.notify import Notice

    return Notice("critical_drift", target, "critical",
                  {"urgency": "critical", "counts": detail}, "cid-42")


def test_a_critical_page_reaches_slack_pagerduty_and_apprise_in_their_shapes(receivers):
    from reconciler_airflow.notify import announce

    assert announce(CHANNELS, _critical()) == {"slack": "sent", "pagerduty": "sent",
                                               "apprise": "sent"}
    [slack] = receivers["slack"].bodies
    assert receivers["slack"].paths == ["/services/T0001/B0001/s3cr3tT0ken"]
    assert slack["text"].startswith("Critical drift on paged") and "cid-42" in slack["text"]
    assert [b["type"] for b in slack["blocks"]] == ["header", "section"]
    [event] = receivers["pagerduty"].bodies
    assert receivers["pagerduty"].paths == ["/v2/enqueue"]
    assert (event["routing_key"], event["event_action"], event["dedup_key"]) == \
        (PD_KEY, "trigger", "reconciler/paged")
    assert event["payload"]["summary"] == "Critical drift on paged: paging before acting"
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["source"] == "reconciler/paged"
    assert event["payload"]["custom_details"]["correlation_id"] == "cid-42"
    [note] = receivers["apprise"].bodies
    assert note["title"] == "Critical drift on paged: paging before acting"
    assert note["type"] == "failure" and "urgency: critical" in note["message"]


def test_the_triggerer_path_sends_the_same_pagerduty_event(receivers):
    from reconciler_airflow.notify import aannounce

    result = asyncio.run(aannounce({"pagerduty_conn_id": "rc_pagerduty"}, _critical()))
    assert result == {"pagerduty": "sent"}
    [event] = receivers["pagerduty"].bodies
    assert event["event_action"] == "trigger" and event["dedup_key"] == "reconciler/paged"


def test_a_notice_text_is_never_rendered_as_a_template(receivers):
    from reconciler_airflow.notify import announce

    announce({"slack_conn_id": "rc_slack"}, _critical(detail="{{ conn.rc_pagerduty.password }}"))
    [slack] = receivers["slack"].bodies
    assert "{{ conn.rc_pagerduty.password }}" in slack["text"] and PD_KEY not in slack["text"]


def test_endpoints_off_loopback_must_be_https(receivers):
    from reconciler_airflow.notify import announce

    _conn("rc_slack_plain", conn_type="slackwebhook", password="T/B/x",
          host="http://hooks.example.com/services")
    _conn("rc_apprise_plain", conn_type="apprise",
          extra={"config": {"path": "json://hooks.example.com/a"}})
    _conn("rc_pd_plain", conn_type="pagerduty_events", password=PD_KEY,
          host="http://events.example.com")
    result = announce({"slack_conn_id": "rc_slack_plain", "apprise_conn_id": "rc_apprise_plain",
                       "pagerduty_conn_id": "rc_pd_plain"}, _critical())
    assert result == {"slack": "refused", "apprise": "refused", "pagerduty": "refused"}


def test_a_missing_connection_is_logged_not_raised(receivers):
    from reconciler_airflow.notify import announce

    assert announce({"slack_conn_id": "rc_nowhere"}, _critical()) == {"slack": "failed"}


def test_pagerduty_triggers_per_target_and_resolves_once_it_converged(dagbag, receivers):
    """Cycle 1: critical drift pages, the plan waits and is rejected (not converged: the
    incident stays open). Cycle 2: pages again (same dedup key), approved, converged: resolve.
    The approval request reaches Slack with a link to its Required Action page."""
    for choice, status in (("Reject", "needs_approval"), ("Approve", "converged")):
        sim = support.seed("paged")
        sim.delete("sim.Workload", "checkout")  # sla: critical
        sim.put("sim.Node", "stray", {"pool": "default"})  # a deletion: needs approval
        approver = support.Approver(choice)
        approver.start()
        dr, states = support.run(dagbag, "paged")
        approver.join(5)
        assert approver.answered and states[tg.PAGE] == "success", approver.error
        assert support.last_outcome("paged").status == status
    events = receivers["pagerduty"].bodies
    assert [e["event_action"] for e in events] == ["trigger", "trigger", "resolve"]
    assert {e["dedup_key"] for e in events} == {"reconciler/paged"}
    assert events[-1]["payload"]["summary"] == "paged converged: incident resolved"
    headers = [b["blocks"][0]["text"]["text"] for b in receivers["slack"].bodies]
    assert headers.count("Reconcile plan for paged waits for approval") == 2
    assert headers[-1] == "paged converged: incident resolved"
    approval = next(b for b in receivers["slack"].bodies if "waits for approval" in b["text"])
    link = approval["blocks"][-1]["elements"][0]["url"]
    assert "/dags/reconcile__paged/runs/" in link
    assert f"/tasks/{tg.approve_task(1)}/required_actions" in link


def test_the_breaker_opening_and_closing_is_announced_once_each(receivers, tmp_path):
    from types import SimpleNamespace

    from reconciler.config import AlertsConfig
    from reconciler.core import breaker as brk
    from reconciler.store import open_store
    from reconciler_airflow.notify import after_record

    store = open_store(f"sqlite:///{tmp_path}/state.db")
    target = SimpleNamespace(name="web", store=store, config=SimpleNamespace(
        alerts=AlertsConfig(slack_conn_id="rc_slack", pagerduty_conn_id="rc_pagerduty")))
    failed = {"status": "failed", "converged": False, "correlation_id": "c1"}
    store.update_breaker("web", lambda b: brk.after_cycle(b, True, 1, _now(), "boom"))
    after_record(target, failed)
    after_record(target, failed)  # still open: nothing new
    store.update_breaker("web", brk.reset)
    store.update_breaker("web", lambda b: brk.after_cycle(b, False, 1, _now()))
    after_record(target, {"status": "converged", "converged": True, "correlation_id": "c2"})
    after_record(target, {"status": "in_sync", "converged": True, "correlation_id": "c3"})
    headers = [b["blocks"][0]["text"]["text"] for b in receivers["slack"].bodies]
    assert headers == ["Circuit breaker of web opened: actuation stopped",
                       "Circuit breaker of web closed: actuation resumed",
                       "web converged: incident resolved"]
    assert [(e["event_action"], e["dedup_key"]) for e in receivers["pagerduty"].bodies] == \
        [("trigger", "reconciler/web"), ("resolve", "reconciler/web")]


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)
