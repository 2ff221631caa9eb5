"""What Reconciler announces and when: the notices (deadline missed, critical drift, a plan
waiting for approval, breaker opened or closed, drift resolved), their text, and the per-target
ledger that keeps one PagerDuty incident per target open until the target converges.

No Airflow here: ``reconciler_airflow.notify`` turns a :class:`Notice` into calls of Airflow's
provider notifiers (Slack, PagerDuty, Apprise, SMTP). The ledger is a few audit rows in the
store, so every worker (and the triggerer) sees the same open incident.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from reconciler.outgoing import url_problem

__all__ = [
    "Notice", "NoticeKind", "Severity", "LEDGER", "dedup_key", "severity_for", "slack_blocks",
    "plain_text", "breaker_notice", "Ledger", "apprise_path_problem",
]

log = logging.getLogger(__name__)

NoticeKind = Literal["deadline_missed", "critical_drift", "approval_needed", "breaker_opened",
                     "breaker_closed", "resolved"]
Severity = Literal["info", "warning", "error", "critical"]
LEDGER = "notification"  # the audit rows' ``what``
_SEVERITY: dict[str, Severity] = {"none": "info", "low": "warning", "high": "error",
                                  "critical": "critical"}
# kinds that open (trigger) the target's PagerDuty incident; "resolved" closes it
PAGED: frozenset[str] = frozenset({"deadline_missed", "critical_drift", "breaker_opened"})
_TITLE = {
    "deadline_missed": "Reconcile cycle of {t} missed its deadline",
    "critical_drift": "Critical drift on {t}: paging before acting",
    "approval_needed": "Reconcile plan for {t} waits for approval",
    "breaker_opened": "Circuit breaker of {t} opened: actuation stopped",
    "breaker_closed": "Circuit breaker of {t} closed: actuation resumed",
    "resolved": "{t} converged: incident resolved",
}
# Apprise schemes that POST over plain HTTP: like any webhook, only to loopback
_PLAIN_HTTP_SCHEMES = frozenset({"json", "xml", "form", "http"})


def dedup_key(target: str) -> str:
    """One PagerDuty incident per target: every page of it deduplicates into this key."""
    return f"reconciler/{target}"


def severity_for(urgency: str | None) -> Severity:
    """PagerDuty severity from drift urgency (none→info, low→warning, high→error, critical)."""
    return _SEVERITY.get(urgency or "", "error")


@dataclass(frozen=True)
class Notice:
    """One announcement, whatever the channel."""

    kind: NoticeKind
    target: str
    severity: Severity
    details: dict[str, Any] = field(default_factory=dict)
    correlation_id: str = ""
    link: str | None = None  # e.g. the Required Action page of a waiting approval

    @property
    def title(self) -> str:
        return _TITLE[self.kind].format(t=self.target)

    @property
    def opens_incident(self) -> bool:
        return self.kind in PAGED


def plain_text(notice: Notice) -> str:
    """Title, details one per line, then the link: for email, Apprise and Slack's fallback."""
    lines = [notice.title]
    lines += [f"{k}: {v}" for k, v in notice.details.items() if v not in (None, "", [], {})]
    if notice.correlation_id:
        lines.append(f"correlation id: {notice.correlation_id}")
    if notice.link:
        lines.append(notice.link)
    return "\n".join(lines)


def slack_blocks(notice: Notice) -> list[dict[str, Any]]:
    """Slack Block Kit: a header, the details as fields, and a button to the link."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": notice.title[:150]}}]
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{v}"}
              for k, v in notice.details.items() if v not in (None, "", [], {})][:10]
    if notice.correlation_id:
        fields = [*fields[:9], {"type": "mrkdwn", "text": f"*correlation id*\n"
                                                          f"`{notice.correlation_id}`"}]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    if notice.link:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open in Airflow"},
             "url": notice.link}]})
    return blocks


def breaker_notice(target: str, state: str, notified: str | None,
                   reason: str | None = None, correlation_id: str = "") -> Notice | None:
    """A notice when the breaker's state moved since the last one announced: opened, or closed
    again after it was announced open (the half-open trial after a reset is not news)."""
    if state == "open" and notified != "open":
        return Notice("breaker_opened", target, "error", {"reason": reason}, correlation_id)
    if state == "closed" and notified == "open":
        return Notice("breaker_closed", target, "info", {}, correlation_id)
    return None


class Ledger:
    """What was last announced for a target: the PagerDuty incident (open or resolved) and the
    breaker state. Audit rows ``what="notification"``, newest first; never raises."""

    def __init__(self, store: Any, target: str) -> None:
        self.store, self.target = store, target

    def _rows(self) -> Iterable[dict[str, Any]]:
        try:
            rows = self.store.audit_rows(target=self.target, kind="operator", limit=500)
        except Exception:
            log.warning("notification ledger of %s unreadable", self.target, exc_info=True)
            return []
        return (r["payload"].get("detail") or {} for r in rows
                if r["payload"].get("what") == LEDGER)

    def incident_open(self) -> bool:
        for detail in self._rows():
            if detail.get("pagerduty") in ("trigger", "resolve"):
                return bool(detail["pagerduty"] == "trigger")
        return False

    def breaker(self) -> str | None:
        for detail in self._rows():
            if detail.get("breaker"):
                return str(detail["breaker"])
        return None

    def note(self, correlation_id: str = "", **detail: str) -> None:
        try:
            self.store.record_operator(self.target, "reconciler", LEDGER, detail, correlation_id)
        except Exception:  # the worst outcome is one repeated or one missing resolve
            log.warning("could not note %s for %s", detail, self.target, exc_info=True)


def apprise_path_problem(path: str) -> str | None:
    """Why Apprise may not send to ``path``: plain-HTTP schemes (json://, xml://, form://)
    follow the webhook rule, https only or http to loopback. Other services are Apprise's own
    (https to the vendor)."""
    parts = urlsplit(path)
    if parts.scheme.lower() not in _PLAIN_HTTP_SCHEMES:
        return None
    return url_problem(f"http://{parts.netloc}{parts.path}")
