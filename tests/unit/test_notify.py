"""reconciler.output.notify: what each notice says, when the breaker is news, the incident
ledger."""

from __future__ import annotations

import pytest

from reconciler.output.notify import (
    Ledger,
    Notice,
    apprise_path_problem,
    breaker_notice,
    dedup_key,
    plain_text,
    severity_for,
    slack_blocks,
)
from reconciler.store import open_store


def test_one_dedup_key_per_target():
    assert dedup_key("web") == "reconciler/web" != dedup_key("db")


@pytest.mark.parametrize(("urgency", "severity"), [
    ("none", "info"), ("low", "warning"), ("high", "error"), ("critical", "critical"),
    (None, "error")])
def test_severity_follows_urgency(urgency, severity):
    assert severity_for(urgency) == severity


def test_slack_blocks_carry_title_details_and_the_link_as_a_button():
    notice = Notice("approval_needed", "web", "warning", {"plan": "abc123", "why": ""},
                    "cid-1", "https://airflow.example.com/x/required_actions")
    header, section, actions = slack_blocks(notice)
    assert header["text"]["text"] == "Reconcile plan for web waits for approval"
    texts = [f["text"] for f in section["fields"]]
    assert texts == ["*plan*\nabc123", "*correlation id*\n`cid-1`"]  # empty "why" left out
    assert actions["elements"][0]["url"] == notice.link
    assert plain_text(notice).splitlines()[-1] == notice.link


@pytest.mark.parametrize(("state", "notified", "kind"), [
    ("open", None, "breaker_opened"), ("open", "closed", "breaker_opened"),
    ("open", "open", None), ("half_open", "open", None), ("closed", "open", "breaker_closed"),
    ("closed", None, None), ("closed", "closed", None)])
def test_the_breaker_is_news_only_when_it_moved_since_last_said(state, notified, kind):
    notice = breaker_notice("web", state, notified, "3 failed cycles")
    assert (notice.kind if notice else None) == kind


@pytest.mark.parametrize(("path", "ok"), [
    ("json://127.0.0.1:8080/hook", True), ("jsons://hooks.example.com/x", True),
    ("json://hooks.example.com/x", False), ("form://10.0.0.1/x", False),
    ("slack://T1/B2/C3", True), ("mailto://user:pw@example.com", True)])
def test_apprise_plain_http_schemes_follow_the_webhook_rule(path, ok):
    assert (apprise_path_problem(path) is None) == ok


def test_the_ledger_remembers_the_last_page_and_breaker_per_target(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    web, db = Ledger(store, "web"), Ledger(store, "db")
    assert not web.incident_open() and web.breaker() is None
    web.note("c1", pagerduty="trigger")
    web.note("c1", breaker="open")
    assert web.incident_open() and web.breaker() == "open" and not db.incident_open()
    web.note("c2", pagerduty="resolve")
    assert not web.incident_open() and web.breaker() == "open"
