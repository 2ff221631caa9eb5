"""The event sinks never raise and stay bounded; metrics names follow Airflow's StatsD shape."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from reconciler.core.model import Event
from reconciler.output.metrics import Metrics, MetricsSink, StatsdClient, StatsdSettings
from reconciler.output.sinks import AuditSink, WebhookSink, default_sink
from tests.ui.support import StatsdListener, Webhook


def _event(kind: str = "drift_detected", action_id: str | None = None) -> Event:
    return Event(type=kind, target="shop", correlation_id="shop-1", at=datetime.now(UTC),
                 action_id=action_id, detail={"magnitude": 3.0})


class Failing:
    """A loopback endpoint that answers 500 and counts the requests it got."""

    def __init__(self) -> None:
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(500)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_webhook_receives_each_event_as_json():
    hook = Webhook()
    try:
        WebhookSink(hook.url).emit(_event())
    finally:
        hook.close()
    assert hook.bodies == [json.loads(_event().model_dump_json()) | {"at": hook.bodies[0]["at"]}]
    assert hook.bodies[0]["correlation_id"] == "shop-1"


def test_a_failing_webhook_never_raises_and_pauses_after_repeated_failures():
    server, now = Failing(), [0.0]
    sink = WebhookSink(server.url, max_failures=3, pause_s=60, clock=lambda: now[0])
    try:
        for _ in range(5):
            sink.emit(_event())  # no exception escapes
        assert server.requests == 3  # then paused: events 4 and 5 were not sent
        now[0] = 61.0
        sink.emit(_event())
        assert server.requests == 4
    finally:
        server.close()


def test_an_unreachable_webhook_never_raises(caplog):
    sink = WebhookSink("http://127.0.0.1:9/hook?token=s3cr3t", timeout_s=0.5)
    sink.emit(_event())
    assert sink.sent == 0
    # the first failure is logged (a quiet cycle sends one event), the URL without its query
    assert "events webhook http://127.0.0.1:9/hook?... failed (URLError)" in caplog.text
    assert "s3cr3t" not in caplog.text


def test_the_webhook_can_be_limited_to_some_event_types():
    hook = Webhook()
    try:
        sink = WebhookSink(hook.url, types=["breaker_opened"])
        sink.emit(_event())
        sink.emit(_event("breaker_opened"))
    finally:
        hook.close()
    assert [b["type"] for b in hook.bodies] == ["breaker_opened"]


def test_the_default_sink_adds_the_webhook_only_when_configured(monkeypatch):
    monkeypatch.delenv("RECONCILER_EVENTS_WEBHOOK", raising=False)
    assert [type(s).__name__ for s in default_sink().sinks] == ["LogSink", "MetricsSink"]
    monkeypatch.setenv("RECONCILER_EVENTS_WEBHOOK", "http://127.0.0.1:9/hook")
    assert [type(s).__name__ for s in default_sink().sinks] == [
        "LogSink", "MetricsSink", "WebhookSink"]


class BrokenStore:
    def record_event(self, event: Event, actor: str = "reconciler") -> None:
        raise OSError("disk full")


def test_the_audit_sink_records_events_once_and_never_raises(tmp_path):
    from reconciler.store import open_store

    store = open_store(f"sqlite:///{tmp_path}/state.db")
    sink = AuditSink(store, actor="airflow")
    event = _event("action_started", "create:sim.Node/a")
    sink.emit(event)
    sink.emit(event)  # a retried task replays it: deduplicated
    rows = store.audit_rows(target="shop", kind="event")
    assert [(r["actor"], r["action_id"]) for r in rows] == [("airflow", "create:sim.Node/a")]
    AuditSink(BrokenStore()).emit(event)  # type: ignore[arg-type]


@pytest.fixture
def statsd():
    listener = StatsdListener()
    yield listener
    listener.close()


def _lines(listener: StatsdListener, count: int) -> list[str]:
    import time

    deadline = time.monotonic() + 5  # bounded wait for UDP delivery, not a timing assertion
    while len(listener.lines) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return sorted(listener.lines)


def test_action_results_are_counted_by_type_and_result_rollbacks_apart(statsd):
    sink = MetricsSink(Metrics(StatsdClient(StatsdSettings("127.0.0.1", statsd.port, "airflow"))))
    sink.emit(_event("action_completed", "create:sim.Node/a"))
    sink.emit(_event("action_failed", "update:sim.Workload/b"))
    sink.emit(_event("action_completed", "delete:sim.Node/a#undo"))
    assert _lines(statsd, 6) == sorted([
        "airflow.reconciler.shop.events.action_completed:1|c",
        "airflow.reconciler.shop.actions.create.succeeded:1|c",
        "airflow.reconciler.shop.events.action_failed:1|c",
        "airflow.reconciler.shop.actions.update.failed:1|c",
        "airflow.reconciler.shop.events.action_completed:1|c",
        "airflow.reconciler.shop.rollbacks.delete.succeeded:1|c",
    ])


def test_metric_names_keep_to_statsd_safe_characters():
    client = StatsdClient(StatsdSettings(prefix="air flow"))
    assert client.full_name(Metrics.name("shop", "a:b|c")) == "air_flow.reconciler.shop.a_b_c"
    assert Metrics(None).enabled is False
    Metrics(None).gauge("shop", "x", 1)  # off: a no-op
