"""Reconciler's notices through Airflow's notifiers: Slack (incoming webhook), PagerDuty (Events
v2), Apprise and SMTP, each from the connection the target names under ``alerts``.

Every send is checked and bounded like the webhook (reconciler.outgoing): an endpoint must be
https (http only to loopback), a failure is logged by type and never raised (an alert must not
fail a cycle or an approval), and a notice's text is sent as written, never rendered as a Jinja
template (resource names and reasons come from people's config). Provider packages are imported
only for the channels a target configures.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Awaitable, Mapping
from functools import cached_property
from typing import Any

from airflow.sdk import BaseNotifier

from reconciler.outgoing import url_problem
from reconciler.output.notify import (
    Ledger,
    Notice,
    apprise_path_problem,
    dedup_key,
    plain_text,
    severity_for,
    slack_blocks,
)

__all__ = ["ApprovalNotifier", "announce", "aannounce", "notifiers_for", "after_record",
           "required_action_link", "PAGERDUTY_EVENTS_URL"]

log = logging.getLogger(__name__)
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com"
_APPRISE_TYPE = {"info": "info", "warning": "warning", "error": "failure", "critical": "failure"}


def _run(coro: Awaitable[Any]) -> Any:
    """Run a coroutine from sync code (a task); a worker thread if a loop already runs here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=60)  # type: ignore[arg-type]


class _Checked:
    """What every channel adds to the provider's notifier: an endpoint check before sending
    and no template rendering of the (final) text."""

    channel = ""

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        return None  # the text is final: "{{ conn... }}" in a resource name stays text

    def endpoint_problem(self) -> str | None:
        return None

    async def aendpoint_problem(self) -> str | None:
        return await asyncio.to_thread(self.endpoint_problem)


def _slack(conn_id: str, notice: Notice) -> BaseNotifier:
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

    class SlackNotice(_Checked, SlackWebhookNotifier):
        channel = "slack"

        def endpoint_problem(self) -> str | None:
            return url_problem(self.hook.client.url)

        async def aendpoint_problem(self) -> str | None:
            return url_problem((await self.hook.get_async_client()).url)

    return SlackNotice(slack_webhook_conn_id=conn_id, text=plain_text(notice),
                       blocks=slack_blocks(notice), timeout=10)


def _pagerduty(conn_id: str, notice: Notice) -> BaseNotifier:
    """The provider's notifier over its async Events hook, the one whose base URL can be set:
    the connection's ``host`` overrides https://events.pagerduty.com (the sync hook builds a
    ``pagerduty.EventsApiV2Client`` with no URL argument, so it cannot be pointed elsewhere)."""
    from airflow.providers.common.compat.connection import get_async_connection
    from airflow.providers.pagerduty.hooks.pagerduty_events import PagerdutyEventsAsyncHook
    from airflow.providers.pagerduty.notifications.pagerduty import PagerdutyNotifier
    from airflow.sdk import BaseHook

    class EventsHook(PagerdutyEventsAsyncHook):
        retry_limit = 2

        async def run(self, session: Any = None, endpoint: str | None = None, data: Any = None,
                      json: Any = None, headers: Any = None,
                      extra_options: dict[str, Any] | None = None) -> Any:
            # a redirect would carry the routing key's event to whatever host it names
            options = {"allow_redirects": False, **(extra_options or {})}
            return await super().run(session, endpoint, data, json, headers, options)

    class PagerDutyNotice(_Checked, PagerdutyNotifier):
        channel = "pagerduty"

        @cached_property
        def hook_async(self) -> EventsHook:
            return EventsHook(integration_key=self.integration_key,
                              pagerduty_events_conn_id=self.pagerduty_events_conn_id)

        def _endpoint(self, host: str | None) -> str | None:
            base = (host or PAGERDUTY_EVENTS_URL).rstrip("/")
            self.hook_async.base_url = base if "://" in base else f"https://{base}"
            return url_problem(f"{self.hook_async.base_url}/v2/enqueue")

        def endpoint_problem(self) -> str | None:
            return self._endpoint(BaseHook.get_connection(str(self.pagerduty_events_conn_id)).host)

        async def aendpoint_problem(self) -> str | None:
            conn = await get_async_connection(str(self.pagerduty_events_conn_id))
            return self._endpoint(conn.host)

        def notify(self, context: Any) -> None:
            _run(self.async_notify(context))

    resolve = notice.kind == "resolved"
    details = {**notice.details, "correlation_id": notice.correlation_id or None}
    return PagerDutyNotice(
        pagerduty_events_conn_id=conn_id, summary=notice.title[:1024], severity=notice.severity,
        source=f"reconciler/{notice.target}", action="resolve" if resolve else "trigger",
        dedup_key=dedup_key(notice.target), component=notice.target, group="reconciler",
        class_type=notice.kind, custom_details={k: v for k, v in details.items() if v},
        links=[{"href": notice.link, "text": "Open in Airflow"}] if notice.link else None)


def _apprise(conn_id: str, notice: Notice) -> BaseNotifier:
    from airflow.providers.apprise.hooks.apprise import AppriseHook
    from airflow.providers.apprise.notifications.apprise import AppriseNotifier
    from airflow.sdk import BaseHook
    from apprise import NotifyType

    class AppriseNotice(_Checked, AppriseNotifier):
        channel = "apprise"

        def endpoint_problem(self) -> str | None:
            config = AppriseHook(self.apprise_conn_id).get_config_from_conn(
                BaseHook.get_connection(self.apprise_conn_id))
            paths = [c["path"] for c in (config if isinstance(config, list) else [config])]
            problems = [p for path in paths if (p := apprise_path_problem(str(path)))]
            return problems[0] if problems else None

    return AppriseNotice(apprise_conn_id=conn_id, body=plain_text(notice), title=notice.title,
                         notify_type=NotifyType(_APPRISE_TYPE[notice.severity]))


def _email(to: list[str], conn_id: str | None, notice: Notice) -> BaseNotifier:
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    class EmailNotice(_Checked, SmtpNotifier):
        channel = "smtp"

    return EmailNotice(to=to, smtp_conn_id=conn_id, subject=f"[reconciler] {notice.title}",
                       html_content=f"<pre>{html.escape(plain_text(notice))}</pre>")


def notifiers_for(channels: Mapping[str, Any], notice: Notice) -> list[BaseNotifier]:
    """The configured channels' notifiers for one notice. PagerDuty gets the notices that open
    the target's incident and the one that resolves it; the others get every notice."""
    builders: list[tuple[str, Any]] = []
    if channels.get("slack_conn_id"):
        builders.append(("slack", lambda: _slack(channels["slack_conn_id"], notice)))
    if channels.get("pagerduty_conn_id") and (notice.opens_incident or notice.kind == "resolved"):
        builders.append(("pagerduty", lambda: _pagerduty(channels["pagerduty_conn_id"], notice)))
    if channels.get("apprise_conn_id"):
        builders.append(("apprise", lambda: _apprise(channels["apprise_conn_id"], notice)))
    if channels.get("smtp_to"):
        builders.append(("smtp", lambda: _email(list(channels["smtp_to"]),
                                                channels.get("smtp_conn_id"), notice)))
    built = []
    for name, build in builders:
        try:
            built.append(build())
        except ImportError as exc:  # a provider package missing on this worker
            log.warning("%s notifications need %s: not sent", name, exc.name)
    return built


def _sent(notifier: Any, context: Any) -> str:
    try:
        problem = notifier.endpoint_problem()
        if problem:
            log.warning("%s notification not sent: %s", notifier.channel, problem)
            return "refused"
        notifier.notify(context)
    except Exception as exc:  # an alert must not fail the cycle; a URL may hold a token
        log.warning("%s notification failed: %s", notifier.channel, type(exc).__name__)
        return "failed"
    return "sent"


async def _asent(notifier: Any, context: Any) -> str:
    try:
        problem = await notifier.aendpoint_problem()
        if problem:
            log.warning("%s notification not sent: %s", notifier.channel, problem)
            return "refused"
        await asyncio.wait_for(notifier.async_notify(context), timeout=60)
    except Exception as exc:
        log.warning("%s notification failed: %s", notifier.channel, type(exc).__name__)
        return "failed"
    return "sent"


def _note(ledger: Ledger | None, notice: Notice, results: dict[str, str]) -> None:
    if ledger is not None and results.get("pagerduty") == "sent":
        action = "resolve" if notice.kind == "resolved" else "trigger"
        ledger.note(notice.correlation_id, pagerduty=action)


def announce(channels: Mapping[str, Any], notice: Notice, ledger: Ledger | None = None,
             context: Any = None) -> dict[str, str]:
    """Send ``notice`` on every configured channel: ``{channel: sent|refused|failed}``."""
    results = {n.channel: _sent(n, context or {})  # type: ignore[attr-defined]
               for n in notifiers_for(channels, notice)}
    _note(ledger, notice, results)
    return results


async def aannounce(channels: Mapping[str, Any], notice: Notice, ledger: Ledger | None = None,
                    context: Any = None) -> dict[str, str]:
    """:func:`announce` for the triggerer (deadline callbacks): the notifiers' async paths."""
    results = {n.channel: await _asent(n, context or {})  # type: ignore[attr-defined]
               for n in notifiers_for(channels, notice)}
    if ledger is not None:
        await asyncio.to_thread(_note, ledger, notice, results)
    return results


def after_record(target: Any, outcome: Mapping[str, Any]) -> None:
    """After a cycle is recorded: announce the breaker's move (opened, or closed again) and,
    once the target converged, resolve its open PagerDuty incident. Never raises."""
    channels = target.config.alerts.channels
    if not any(channels.values()):
        return
    try:
        ledger = Ledger(target.store, target.name)
        cid = str(outcome.get("correlation_id") or "")
        from reconciler.output.notify import breaker_notice

        breaker = target.store.load_breaker(target.name)
        notice = breaker_notice(target.name, breaker.state, ledger.breaker(), breaker.reason, cid)
        if notice is not None:
            announce(channels, notice, ledger)
            ledger.note(cid, breaker=breaker.state)
        if outcome.get("converged") and ledger.incident_open():
            announce(channels, Notice("resolved", target.name, "info",
                                      {"status": outcome.get("status")}, cid), ledger)
    except Exception:
        log.warning("notifications after the cycle of %s failed", target.name, exc_info=True)


def critical_notice(target: str, correlation_id: str, compared: Mapping[str, Any]) -> Notice:
    drift = compared.get("drift") or {}
    return Notice("critical_drift", target, severity_for(drift.get("urgency")),
                  {"urgency": drift.get("urgency"), "magnitude": drift.get("magnitude"),
                   "counts": compared.get("counts")}, correlation_id)


def required_action_link(context: Any) -> str | None:
    """The Required Action page of the waiting approval (``[api] base_url``, else localhost)."""
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback=None) or "http://localhost:8080"
    try:
        return str(context["task"].generate_link_to_ui(task_instance=context["ti"],
                                                       base_url=base))
    except Exception:
        log.warning("no Required Action link for this approval", exc_info=True)
        return None


class ApprovalNotifier(BaseNotifier):
    """HITL notifier of the approval task: tells the channels a plan waits, with the plan's
    hash, counts, risk and reasons, and a link to its Required Action page. Built at DAG
    parse time, so it holds only JSON-safe settings; providers are imported when it fires."""

    template_fields = ()

    def __init__(self, *, target: str, pass_no: int, channels: Mapping[str, Any]) -> None:
        super().__init__()
        self.target, self.pass_no, self.channels = target, pass_no, dict(channels)

    def notify(self, context: Any) -> None:
        try:
            from reconciler.orchestration import taskgraph as tg
            from reconciler_airflow.tasks import correlation_id

            task = tg.plan_task(self.pass_no)
            summary = tg.from_xcom(tg.PlanSummary, context["ti"].xcom_pull(
                task_ids=task, key=tg.SUMMARY_KEY), task)
            notice = Notice("approval_needed", self.target, "warning", {
                "plan": summary.hash[:12], "counts": summary.counts,
                "max risk": summary.max_risk, "why": "; ".join(summary.approval_reasons)},
                correlation_id(self.target), required_action_link(context))
            announce(self.channels, notice, context=context)
        except Exception:  # the approval itself must still be asked for
            log.warning("approval notification for %s failed", self.target, exc_info=True)
