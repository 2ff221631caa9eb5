"""Alerts: the deadline-miss callback (runs in the triggerer) and critical-drift paging.

Both go to the target's webhook (``alerts.webhook`` in the targets config, ``${VAR}`` expanded
when sent, or ``RECONCILER_WEBHOOK_URL``) and to the notifier channels the target configures
(Slack, PagerDuty, Apprise, SMTP: see reconciler_airflow.notify).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

__all__ = ["deadline_missed", "page_critical", "post_json", "webhook_for"]

log = logging.getLogger(__name__)


def webhook_for(configured: str | None, env: tuple[str, ...] = ()) -> str | None:
    """The target's webhook with ``${VAR}`` expanded when sent, from ``RECONCILER_*`` and the
    names the target lists under ``env`` only; else ``$RECONCILER_WEBHOOK_URL``. None (and a
    warning) when a variable may not expand or is unset, or the URL is not allowed."""
    from reconciler.outgoing import expand_allowed, shown, url_problem

    if not configured:
        url = os.environ.get("RECONCILER_WEBHOOK_URL")
        return url if url and url_problem(url) is None else None
    url, problems = expand_allowed(configured, os.environ, env)
    problem = problems[0] if problems else url_problem(url)
    if problem:
        log.warning("alert webhook %s not used: %s", shown(configured), problem)
        return None
    return url


def post_json(url: str, payload: dict[str, Any], timeout_s: float = 5.0) -> int:
    """POST JSON; never raises (an alert must not fail the cycle), returns the HTTP status or 0."""
    from reconciler.outgoing import post, shown

    try:
        return post(url, json.dumps(payload, default=str).encode(), timeout_s)
    except Exception as exc:  # the URL may embed a token: log it without its query
        log.warning("alert to %s failed: %s", shown(url), type(exc).__name__)
        return 0


async def deadline_missed(target: str, webhook: str | None = None, deadline_s: float = 0,
                          context: dict[str, Any] | None = None,
                          env: tuple[str, ...] | list[str] = (),
                          channels: dict[str, Any] | None = None) -> str:
    """Airflow DeadlineAlert callback: the cycle of ``target`` is running late.

    Returns a short string: Airflow stores the result in a text column (a dict crashes the
    triggerer on SQLite)."""
    ctx = context or {}
    run = ctx.get("dag_run") or {}
    payload = {
        "event": "deadline_missed", "target": target, "deadline_s": deadline_s,
        "dag_id": _get(run, "dag_id") or f"reconcile__{target}", "run_id": _get(run, "run_id"),
        "queued_at": str(_get(run, "queued_at") or ""),
    }
    log.warning("reconcile cycle of %s missed its %ss deadline: %s", target, deadline_s, payload)
    url = webhook_for(webhook, tuple(env))
    status = await asyncio.to_thread(post_json, url, payload) if url else 0
    sent = await _notify_late(target, payload, channels or {})
    return (f"webhook status {status}" if url else "no webhook configured") + sent


async def _notify_late(target: str, payload: dict[str, Any], channels: dict[str, Any]) -> str:
    if not any(channels.values()):
        return ""
    from reconciler.output.notify import Notice
    from reconciler_airflow.notify import aannounce

    details = {k: payload[k] for k in ("deadline_s", "dag_id", "run_id", "queued_at")}
    notice = Notice("deadline_missed", target, "error", details)
    ledger = await asyncio.to_thread(_ledger, target) if channels.get("pagerduty_conn_id") else None
    results = await aannounce(channels, notice, ledger)
    return "; " + ", ".join(f"{k} {v}" for k, v in sorted(results.items()))


def _ledger(target: str) -> Any:
    from reconciler.output.notify import Ledger
    from reconciler.store import open_store

    try:
        return Ledger(open_store(), target)
    except Exception:  # no store here: the page goes out, the incident is not remembered
        log.warning("no store for the notification ledger of %s", target, exc_info=True)
        return None


def page_critical(target: str, correlation_id: str, compared: dict[str, Any],
                  webhook: str | None = None, smtp_to: tuple[str, ...] = (),
                  env: tuple[str, ...] = (), *, alerts: Any = None, store: Any = None) -> int:
    """Critical drift: page before acting. Returns the webhook status (0 when none).

    ``alerts`` (the target's AlertsConfig) supersedes ``webhook`` and ``smtp_to`` and adds its
    notifier channels; with ``store`` a PagerDuty page is remembered until the target converges.
    """
    from reconciler.output.notify import Ledger
    from reconciler_airflow.notify import announce, critical_notice

    drift = compared.get("drift", {})
    payload = {"event": "critical_drift", "target": target, "correlation_id": correlation_id,
               "urgency": drift.get("urgency"), "magnitude": drift.get("magnitude"),
               "counts": compared.get("counts")}
    log.error("CRITICAL drift on %s: %s", target, payload)
    channels = alerts.channels if alerts is not None else {"smtp_to": list(smtp_to)}
    webhook = alerts.webhook if alerts is not None else webhook
    announce(channels, critical_notice(target, correlation_id, compared),
             Ledger(store, target) if store is not None else None)
    url = webhook_for(webhook, env)
    return post_json(url, payload) if url else 0


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
