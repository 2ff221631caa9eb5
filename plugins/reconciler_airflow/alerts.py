"""Alerts: the deadline-miss callback (runs in the triggerer) and critical-drift paging.

Both go to the target's webhook (``alerts.webhook`` in the targets config, ``${VAR}`` expanded
when sent, or ``RECONCILER_WEBHOOK_URL``) and, when configured, SMTP through Airflow's provider.
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
                          env: tuple[str, ...] | list[str] = ()) -> str:
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
    return f"webhook status {status}" if url else "no webhook configured"


def page_critical(target: str, correlation_id: str, compared: dict[str, Any],
                  webhook: str | None = None, smtp_to: tuple[str, ...] = (),
                  env: tuple[str, ...] = ()) -> int:
    """Critical drift: page before acting. Returns the webhook status (0 when none)."""
    drift = compared.get("drift", {})
    payload = {"event": "critical_drift", "target": target, "correlation_id": correlation_id,
               "urgency": drift.get("urgency"), "magnitude": drift.get("magnitude"),
               "counts": compared.get("counts")}
    log.error("CRITICAL drift on %s: %s", target, payload)
    if smtp_to:
        _email(smtp_to, f"[reconciler] critical drift on {target}", json.dumps(payload, indent=2))
    url = webhook_for(webhook, env)
    return post_json(url, payload) if url else 0


def _email(to: tuple[str, ...], subject: str, body: str) -> None:
    try:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook() as hook:
            hook.send_email_smtp(to=list(to), subject=subject, html_content=f"<pre>{body}</pre>")
    except Exception as exc:
        log.warning("email page failed: %s", type(exc).__name__)


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
