"""The dashboard's endpoints on a real api-server: refused without Airflow credentials, working
with them, authorized per target's DAG, and every operator action audited with the user's name."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from tests.ui.support import ROOT, call

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]


_LIST_ROUTES = """
import json
from fastapi.routing import APIRoute
from reconciler_airflow.ui.app import MOUNT, create_app
print(json.dumps(sorted([m, MOUNT + r.path] for r in create_app().routes
                        if isinstance(r, APIRoute) for m in r.methods)))
"""


@pytest.fixture(scope="module")
def routes(dashboard) -> list[tuple[str, str]]:
    """Every (method, path template) the plugin app serves, read from the app itself (in a
    process with the stack's Airflow configuration, as the api-server builds it)."""
    env = {**dashboard.stack.env(), "PYTHONPATH": f"{ROOT / 'include'}:{ROOT / 'plugins'}"}
    out = subprocess.run([sys.executable, "-c", _LIST_ROUTES], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    return [(m, p) for m, p in json.loads(out.stdout.strip().splitlines()[-1])]


def _path(template: str, dashboard) -> str:
    return template.replace("{target}", "web").replace(
        "{correlation_id}", dashboard.correlation_id).replace(
        "{dag_id}", "reconcile__web").replace("{run_id:path}", quote(dashboard.run_id, safe=""))


def test_the_plugin_is_registered_with_a_nav_entry(dashboard):
    plugins = call(dashboard.url, "GET", "/api/v2/plugins", dashboard.token()).json()["plugins"]
    ours = next(p for p in plugins if p["name"] == "reconciler")
    assert [a["url_prefix"] for a in ours["fastapi_apps"]] == ["/reconciler"]
    assert ours["external_views"][0]["url_route"] == "reconciler"
    assert ours["external_views"][0]["href"] == "reconciler/"
    assert ours["external_views"][1]["destination"] == "dag_run"


def test_the_app_serves_the_expected_endpoints(routes):
    assert len(routes) == 13
    assert ("POST", "/reconciler/api/targets/{target}/breaker/reset") in routes
    assert ("POST", "/reconciler/targets/{target}/dry-run") in routes


def test_every_endpoint_refuses_a_caller_without_valid_credentials(dashboard, routes):
    for method, template in routes:
        path = _path(template, dashboard)
        assert call(dashboard.url, method, path).status == 401, (method, path)
        assert call(dashboard.url, method, path, token="not-a-jwt").status in (401, 403)
        page = call(dashboard.url, method, path, headers={"Accept": "text/html"})
        assert page.status == 401, (method, path)
        if method == "GET":  # a person gets a way to log in, not a JSON error
            assert "/auth/login" in page.text


def test_every_read_endpoint_works_with_a_token(dashboard, routes):
    tokens = {user: dashboard.token(user) for user in ("admin", "viewer")}
    for method, template in routes:
        if method != "GET":
            continue  # the POSTs are exercised (and audited) by the tests below
        for user, token in tokens.items():
            reply = call(dashboard.url, method, _path(template, dashboard), token)
            expected = 307 if template.startswith("/reconciler/runs/") else 200  # a redirect
            assert reply.status == expected, (user, template, reply.text)


def test_the_overview_shows_the_real_cycle(dashboard):
    targets = call(dashboard.url, "GET", "/reconciler/api/targets", dashboard.token()).json()
    by_name = {t["name"]: t for t in targets}
    assert set(by_name) == {"web", "edge"}
    web = by_name["web"]
    assert web["last"]["correlation_id"] == dashboard.correlation_id
    assert web["last"]["status"] == "converged" and web["last"]["actions_succeeded"] == 1
    assert web["urgency"] == "none" and web["magnitude"] == 0 and web["drifting_since"] is None
    assert len(web["desired_version"]) >= 12
    assert web["history"][-1]["initial_magnitude"] > 0
    assert web["breaker"]["state"] == "closed"
    assert by_name["edge"]["last"] is None and by_name["edge"]["urgency"] == "unknown"


def test_a_cycle_shows_diff_plan_actions_events_and_its_airflow_run(dashboard):
    path = f"/reconciler/api/targets/web/cycles/{dashboard.correlation_id}"
    cycle = call(dashboard.url, "GET", path, dashboard.token()).json()
    assert cycle["run"]["dag_id"] == "reconcile__web"
    assert cycle["run"]["run_id"] == dashboard.run_id
    assert cycle["diff"]["counts"]["add"] == 1
    assert cycle["diff"]["additions"][0]["key"] == "sim.Node/node-a2"
    plan = cycle["plans"][0]
    assert plan["approval"] == "not required" and plan["max_risk"]
    assert [a["id"] for w in plan["waves"] for a in w["actions"]] == ["create:sim.Node/node-a2"]
    assert [(a["action_id"], a["state"], a["attempts"]) for a in cycle["actions"]] == [
        ("create:sim.Node/node-a2", "succeeded", 1)]
    types = {e["type"] for e in cycle["events"]}
    assert {"drift_detected", "action_started", "action_completed", "converged",
            "cycle_finished"} <= types
    html = call(dashboard.url, "GET", path.replace("/api", ""), dashboard.token(),
                headers={"Accept": "text/html"}).text
    assert f"dags/reconcile__web/runs/{dashboard.run_id.replace(':', '%3A').replace('+', '%2B')}" \
        in html


def test_a_dag_runs_drift_tab_redirects_to_the_runs_cycle_page(dashboard):
    token = dashboard.token("viewer")
    run = quote(dashboard.run_id, safe="")
    reply = call(dashboard.url, "GET", f"/reconciler/runs/reconcile__web/{run}", token)
    assert reply.status == 307, reply.text
    assert reply.headers["location"] == \
        f"/reconciler/targets/web/cycles/{dashboard.correlation_id}"
    page = call(dashboard.url, "GET", reply.headers["location"], token)
    assert page.status == 200 and dashboard.correlation_id in page.text
    assert call(dashboard.url, "GET", f"/reconciler/runs/some_other_dag/{run}",
                token).status == 404


def test_an_unknown_target_or_cycle_is_404(dashboard):
    token = dashboard.token()
    assert call(dashboard.url, "GET", "/reconciler/api/targets/nope", token).status == 404
    assert call(dashboard.url, "GET", "/reconciler/api/targets/web/cycles/nope",
                token).status == 404
    assert call(dashboard.url, "POST", "/reconciler/api/targets/nope/breaker/reset",
                token).status == 404


def test_a_viewer_may_read_but_not_reset_or_trigger(dashboard):
    token = dashboard.token("viewer")
    for action in ("breaker/reset", "dry-run"):
        reply = call(dashboard.url, "POST", f"/reconciler/api/targets/edge/{action}", token)
        assert reply.status == 403, reply.text
    rows = call(dashboard.url, "GET", "/reconciler/api/audit?target=edge&kind=operator",
                dashboard.token()).json()
    assert not [r for r in rows if r["actor"] == "viewer"]


def _open_breaker(dashboard, target: str) -> None:
    from reconciler.core import breaker as brk

    now = datetime.now(UTC)
    dashboard.store().update_breaker(
        target, lambda b: brk.after_cycle(b, True, 1, now, "simulated: 3 failed cycles"))
    assert dashboard.store().load_breaker(target).state == "open"


def test_a_breaker_reset_is_audited_with_the_users_name(dashboard):
    _open_breaker(dashboard, "edge")
    reply = call(dashboard.url, "POST", "/reconciler/api/targets/edge/breaker/reset",
                 dashboard.token())
    assert reply.status == 200, reply.text
    assert reply.json()["breaker"]["state"] == "half_open"
    assert dashboard.store().load_breaker("edge").state == "half_open"
    row = call(dashboard.url, "GET", "/reconciler/api/audit?target=edge&kind=operator",
               dashboard.token()).json()[0]
    assert (row["actor"], row["target"]) == ("admin", "edge")
    assert row["summary"].startswith("breaker_reset") and "from=open" in row["summary"]
    assert "airflow.reconciler.edge.breaker.open" in dashboard.statsd.names()


def test_a_dry_run_is_an_airflow_run_triggered_as_the_user(dashboard):
    reply = call(dashboard.url, "POST", "/reconciler/api/targets/edge/dry-run", dashboard.token())
    assert reply.status == 201, reply.text
    made = reply.json()
    run = call(dashboard.url, "GET", f"/api/v2/dags/reconcile__edge/dagRuns/{made['run_id']}",
               dashboard.token()).json()
    assert run["conf"] == {"dry_run": True} and run["triggering_user_name"] == "admin"
    rows = call(dashboard.url, "GET", "/reconciler/api/audit?target=edge&kind=operator",
                dashboard.token()).json()
    audited = next(r for r in rows if r["summary"].startswith("dry_run_triggered"))
    assert audited["actor"] == "admin" and audited["correlation_id"] == made["correlation_id"]


def test_a_cookie_authenticated_post_must_come_from_this_origin(dashboard):
    cookie = {"Cookie": f"_token={dashboard.token()}"}
    path = "/reconciler/api/targets/edge/breaker/reset"
    evil = call(dashboard.url, "POST", path, headers={**cookie, "Origin": "http://127.0.0.1:1"})
    assert evil.status == 403 and "cross-origin" in evil.text
    assert call(dashboard.url, "POST", path, headers=cookie).status == 403  # no origin at all
    same = call(dashboard.url, "POST", path, headers={**cookie, "Origin": dashboard.url})
    assert same.status == 200, same.text


def test_the_audit_trail_filters_by_target_kind_and_time(dashboard):
    token, url = dashboard.token(), dashboard.url

    def audit(query: str) -> list[dict]:
        reply = call(url, "GET", f"/reconciler/api/audit?{query}", token)
        assert reply.status == 200, reply.text
        return reply.json()

    web = audit("target=web&limit=2000")
    assert web and {r["target"] for r in web} == {"web"}
    assert {r["kind"] for r in audit("target=web&kind=action")} == {"action"}
    assert {r["correlation_id"] for r in audit("target=web&kind=plan")} == {
        dashboard.correlation_id}
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert audit(f"target=web&since={later}") == []
    assert audit("target=web&until=2020-01-01") == []
    assert len(audit("since=2020-01-01T00:00:00Z")) >= len(web)
    assert call(url, "GET", "/reconciler/api/audit?since=yesterday", token).status == 400
    assert call(url, "GET", "/reconciler/api/audit?kind=nope", token).status == 400
