"""The dashboard's FastAPI app: HTML pages for people, the same data as JSON under ``/api``.

Mounted by the plugin at ``/reconciler`` inside Airflow's api-server. Routes are sync functions
(FastAPI runs them in its thread pool) because the store is synchronous SQLAlchemy; they read
the state store only, never a provider.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from reconciler_airflow.ui import actions, data
from reconciler_airflow.ui.auth import Reader, Resetter, Trigger, get_user, readable_targets
from reconciler_airflow.ui.charts import drift_chart
from reconciler_airflow.ui.runlinks import cycle_path

__all__ = ["create_app", "MOUNT"]

MOUNT = "/reconciler"
AUDIT_KINDS = ("operator", "event", "action", "plan")
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True,
    undefined=jinja2.StrictUndefined)


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


_TEMPLATES.filters.update(when=_when, q=lambda v: quote(str(v), safe=""),
                          short=lambda v: (v or "-")[:12],
                          chart=lambda history: Markup(drift_chart(history)))  # escaped inside


def _page(request: Request, template: str, code: int = 200, **ctx: Any) -> HTMLResponse:
    base = request.scope.get("root_path", "").rstrip("/")
    airflow = base.removesuffix(MOUNT) + "/"
    html = _TEMPLATES.get_template(template).render(
        base=base, airflow=airflow, notice=request.query_params.get("done"),
        notice_run=request.query_params.get("run_id"), **ctx)
    return HTMLResponse(html, status_code=code)


def _bad_time(text: str | None) -> datetime | None:
    try:
        return data.parse_time(text)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"bad time {text!r}: {exc}") from exc


def _audit(request: Request, user: Any, target: str | None, kind: str | None,
           since: str | None, until: str | None, limit: int) -> list[dict[str, Any]]:
    allowed = readable_targets(request, user, DagAccessEntity.AUDIT_LOG)
    if target:
        if target not in allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"no access to target {target!r}")
        allowed = [target]
    if kind and kind not in AUDIT_KINDS:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"kind must be one of {AUDIT_KINDS}")
    return data.audit_trail(data.store(), allowed, _bad_time(since), _bad_time(until),
                            kind or None, max(1, min(limit, 2000)))


def _cycle(target: str, correlation_id: str) -> dict[str, Any]:
    detail = data.cycle_detail(data.store(), target, correlation_id)
    if detail is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no cycle {correlation_id!r}")
    return detail


def _json_routes(app: FastAPI) -> None:
    @app.get("/api/targets")
    def api_targets(request: Request, user: GetUserDep) -> list[dict[str, Any]]:
        st = data.store()
        return [data.target_summary(st, n) for n in readable_targets(request, user)]

    @app.get("/api/targets/{target}")
    def api_target(target: str, user: Reader) -> dict[str, Any]:
        return data.target_summary(data.store(), target)

    @app.get("/api/targets/{target}/cycles/{correlation_id}")
    def api_cycle(target: str, correlation_id: str, user: Reader) -> dict[str, Any]:
        return _cycle(target, correlation_id)

    @app.get("/api/audit")
    def api_audit(request: Request, user: GetUserDep, target: str | None = None,
                  kind: str | None = None, since: str | None = None, until: str | None = None,
                  limit: int = 200) -> list[dict[str, Any]]:
        return _audit(request, user, target, kind, since, until, limit)

    @app.post("/api/targets/{target}/breaker/reset")
    def api_reset(target: str, user: Resetter) -> dict[str, Any]:
        return actions.reset_breaker(data.store(), target, user.get_name())

    @app.post("/api/targets/{target}/dry-run", status_code=status.HTTP_201_CREATED)
    def api_dry_run(target: str, user: Trigger) -> dict[str, Any]:
        return actions.trigger_dry_run(data.store(), target, user.get_name())


def _html_routes(app: FastAPI) -> None:
    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request, user: GetUserDep) -> HTMLResponse:
        st = data.store()
        rows = [data.target_summary(st, n) for n in readable_targets(request, user)]
        return _page(request, "overview.html", targets=rows, user=user.get_name())

    @app.get("/targets/{target}", response_class=HTMLResponse)
    def target_page(request: Request, target: str, user: Reader) -> HTMLResponse:
        summary = data.target_summary(data.store(), target)
        return _page(request, "target.html", t=summary, user=user.get_name())

    @app.get("/targets/{target}/cycles/{correlation_id}", response_class=HTMLResponse)
    def cycle_page(request: Request, target: str, correlation_id: str,
                   user: Reader) -> HTMLResponse:
        return _page(request, "cycle.html", c=_cycle(target, correlation_id),
                     user=user.get_name())

    @app.get("/runs/{dag_id}/{run_id:path}")
    def run_cycle(request: Request, dag_id: str, run_id: str,
                  user: GetUserDep) -> RedirectResponse:
        """A DAG run's cycle page (the "Drift" tab on each run; ``reconcile__<target>`` DAGs)."""
        target = next((t for t in data.target_names() if data.dag_id(t) == dag_id), None)
        if target is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{dag_id!r} reconciles no target")
        if target not in readable_targets(request, user):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"no access to target {target!r}")
        base = request.scope.get("root_path", "").rstrip("/")
        return RedirectResponse(f"{base}/{cycle_path(target, run_id)}",
                                status_code=status.HTTP_307_TEMPORARY_REDIRECT)

    @app.get("/audit", response_class=HTMLResponse)
    def audit_page(request: Request, user: GetUserDep, target: str | None = None,
                   kind: str | None = None, since: str | None = None, until: str | None = None,
                   limit: int = 200) -> HTMLResponse:
        rows = _audit(request, user, target, kind, since, until, limit)
        return _page(request, "audit.html", rows=rows, user=user.get_name(),
                     targets=readable_targets(request, user, DagAccessEntity.AUDIT_LOG),
                     kinds=AUDIT_KINDS, f={"target": target or "", "kind": kind or "",
                                           "since": since or "", "until": until or "",
                                           "limit": limit})

    @app.post("/targets/{target}/breaker/reset")
    def form_reset(request: Request, target: str, user: Resetter) -> RedirectResponse:
        actions.reset_breaker(data.store(), target, user.get_name())
        return _back(request, target, {"done": "breaker_reset"})

    @app.post("/targets/{target}/dry-run")
    def form_dry_run(request: Request, target: str, user: Trigger) -> RedirectResponse:
        run = actions.trigger_dry_run(data.store(), target, user.get_name())
        return _back(request, target, {"done": "dry_run", "run_id": run["run_id"]})


def _back(request: Request, target: str, query: dict[str, str]) -> RedirectResponse:
    base = request.scope.get("root_path", "").rstrip("/")
    return RedirectResponse(f"{base}/targets/{quote(target, safe='')}?{urlencode(query)}",
                            status_code=status.HTTP_303_SEE_OTHER)


async def _refused(request: Request, exc: Exception) -> Response:
    """401/403 stay 401/403; a person's browser also gets a page with a way to log in."""
    assert isinstance(exc, HTTPException)
    wants_html = "text/html" in request.headers.get("accept", "")
    if exc.status_code in (401, 403) and wants_html and request.method == "GET":
        from airflow.api_fastapi.app import get_auth_manager

        login = get_auth_manager().get_url_login(next_url=str(request.url))
        return _page(request, "refused.html", code=exc.status_code, login=login,
                     reason=str(exc.detail), user=None)
    return await http_exception_handler(request, exc)


def create_app() -> FastAPI:
    """A new dashboard app; every route requires an Airflow user (see ``ui.auth``)."""
    app = FastAPI(title="Reconciler drift dashboard", dependencies=[Depends(get_user)],
                  docs_url=None, redoc_url=None, openapi_url=None)
    _json_routes(app)
    _html_routes(app)
    app.add_exception_handler(HTTPException, _refused)
    return app
