"""Where cycle events go besides the log: metrics, a webhook, the audit trail; and the default mix.

Every sink here is best effort and never raises: an unreachable webhook or a full disk must not
fail an action that already happened. ``default_sink()`` is what a pipeline step uses: the log
(structured), StatsD metrics (when Airflow's ``[metrics] statsd_on`` is set) and, when
``RECONCILER_EVENTS_WEBHOOK`` names a URL, a webhook that receives each event as JSON.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable

from reconciler.core.model import Event
from reconciler.core.ports import EventSink, Store
from reconciler.outgoing import post, shown
from reconciler.output.metrics import Metrics, MetricsSink

__all__ = ["LogSink", "FanOutSink", "WebhookSink", "AuditSink", "default_sink", "WEBHOOK_ENV"]

log = logging.getLogger(__name__)


class LogSink:
    """Events as structured log lines carrying target, correlation id and action id.

    Under Airflow (which configures structlog) they are structlog events with those as bound
    fields, so the task log shows them as keys; elsewhere (the CLI) stdlib records with the same
    fields as attributes, printed only if the caller configured logging.
    """

    def emit(self, event: Event) -> None:
        # not "target": Airflow's supervisor forwards task log fields as keyword arguments to
        # _log_to_target(target, ...), and a "target" field crashes the task (TypeError)
        fields = {"target_name": event.target, "correlation_id": event.correlation_id,
                  "action_id": event.action_id}
        detail = event.model_dump(mode="json")["detail"]
        structlog = sys.modules.get("structlog")  # imported (and configured) by Airflow
        if structlog is not None and structlog.is_configured():
            structlog.get_logger("reconciler").bind(**fields).info(event.type, detail=detail)
            return
        logging.getLogger("reconciler").info(
            "%s", event.type, extra={"event": event.model_dump(mode="json"), **fields})


class FanOutSink:
    def __init__(self, sinks: Iterable[EventSink]) -> None:
        self.sinks = list(sinks)

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            sink.emit(event)


WEBHOOK_ENV = "RECONCILER_EVENTS_WEBHOOK"


class WebhookSink:
    """POSTs each event as JSON (``Event`` fields, ``at`` in ISO 8601) to one URL.

    Bounded: one attempt per event with a short timeout; after ``max_failures`` failures in a row
    it stays quiet for ``pause_s`` seconds, so a dead endpoint costs a cycle at most a few
    timeouts. It never raises.
    """

    def __init__(self, url: str, timeout_s: float = 2.0, max_failures: int = 3,
                 pause_s: float = 60.0, types: Iterable[str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url, self.timeout_s = url, timeout_s
        self.max_failures, self.pause_s = max_failures, pause_s
        self.types = frozenset(types) if types else None
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._paused_until = 0.0
        self.sent = 0

    def emit(self, event: Event) -> None:
        if self.types is not None and event.type not in self.types:
            return
        if self._clock() < self._paused_until:
            return
        try:
            self._post(event.model_dump_json().encode())
        except Exception as exc:  # never raise: the event already happened
            self._failed(exc)
        else:
            with self._lock:
                self._failures, self.sent = 0, self.sent + 1

    def _post(self, body: bytes) -> None:
        post(self.url, body, self.timeout_s)  # https (http to loopback), same-host redirects

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            self._failures += 1
            if self._failures == 1:  # said at once: a quiet cycle may send only one event
                log.warning("events webhook %s failed (%s)", shown(self.url),
                            type(exc).__name__)
            if self._failures >= self.max_failures:
                self._paused_until = self._clock() + self.pause_s
                self._failures = 0
                log.warning("events webhook %s failed %d times in a row (%s); pausing it %.0fs",
                            shown(self.url), self.max_failures, type(exc).__name__,
                            self.pause_s)


class AuditSink:
    """Writes each event to the store's audit trail (deduplicated there: a replay adds nothing)."""

    def __init__(self, store: Store, actor: str = "reconciler") -> None:
        self.store, self.actor = store, actor

    def emit(self, event: Event) -> None:
        try:
            self.store.record_event(event, actor=self.actor)
        except Exception:  # the action result rows remain the authoritative record
            log.warning("could not audit event %s %s", event.type, event.correlation_id,
                        exc_info=True)


def default_sink(webhook: str | None = None, metrics: Metrics | None = None) -> EventSink:
    """Structured log + metrics (+ the events webhook from ``$RECONCILER_EVENTS_WEBHOOK``)."""
    sinks: list[EventSink] = [LogSink(), MetricsSink(metrics)]
    url = webhook if webhook is not None else os.environ.get(WEBHOOK_ENV, "").strip()
    if url:
        sinks.append(WebhookSink(url))
    return FanOutSink(sinks)

