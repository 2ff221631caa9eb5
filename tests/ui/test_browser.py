"""An on-call engineer in headless Chromium: log in to Airflow, open the drift dashboard from the
navigation, see the real cycle, open it, reset a breaker, find the reset in the audit trail."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.ui.support import ROOT

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]

CHROMIUM = Path("/usr/bin/chromium")
OUT = ROOT / "out" / "ui"


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: scripts/test.sh installs it (apt-get)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                  "--disable-background-networking", "--no-first-run"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def open_breaker(dashboard):
    """The ``web`` breaker open as after failed cycles; closed again afterwards."""
    from reconciler.core import breaker as brk

    store = dashboard.store()
    store.update_breaker("web", lambda b: brk.after_cycle(
        b, True, 1, datetime.now(UTC), "3 failed cycles in a row"))
    yield
    store.update_breaker("web", lambda b: brk.BreakerState(target="web"))


def _login(page, dashboard) -> None:
    page.goto(dashboard.url + "/")
    page.wait_for_url("**/auth/login**")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", dashboard.passwords["admin"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/" not in url)


def _shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, OUT / f"{name}.png")
    return path


def test_an_operator_sees_the_drift_opens_a_cycle_resets_the_breaker_and_finds_it_audited(
        dashboard, browser, open_breaker, tmp_path):
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    _login(page, dashboard)

    # the navigation entry, then the dashboard in Airflow's frame
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Drift dashboard").click()
    page.wait_for_url("**/plugin/reconciler**")
    frame = page.frame_locator("iframe[title='Drift dashboard']")
    web = frame.locator("section.card[data-target=web]")
    web.locator(".badge.s-converged").wait_for()
    assert web.locator(".badge.u-none").inner_text() == "none"
    assert web.locator(".badge.b-open").inner_text() == "breaker open"
    assert web.locator("svg.chart circle").count() >= 1
    assert frame.locator("section.card[data-target=edge]").count() == 1
    page.wait_for_timeout(300)  # let the chart's fonts settle before the picture
    shot = _shot(page, tmp_path, "dashboard")
    assert shot.stat().st_size > 10_000

    # the cycle: diff, plan, action results, the Airflow run it came from
    web.get_by_role("link", name=dashboard.correlation_id).click()
    frame.locator("#actions").get_by_text("create:sim.Node/node-a2").wait_for()
    assert "succeeded" in frame.locator("#actions").inner_text()
    assert "sim.Node/node-a2" in frame.locator("#diff").inner_text()
    assert "not required" in frame.locator(".plan .approval").inner_text()
    assert dashboard.run_id in frame.locator("#airflow-run").inner_text()
    _shot(page, tmp_path, "cycle")

    # reset the open breaker from the target's page
    frame.get_by_role("link", name="web", exact=True).first.click()
    frame.get_by_text("Reset breaker…").click()
    frame.get_by_role("button", name="Confirm reset").click()
    frame.get_by_text("Breaker reset").wait_for()
    assert frame.locator(".badge.b-half_open").count() == 1
    assert dashboard.store().load_breaker("web").state == "half_open"

    # the audit trail, filtered to this target's operator rows, names the user
    frame.get_by_role("link", name="Audit trail").first.click()
    frame.locator("select[name=target]").select_option("web")
    frame.locator("select[name=kind]").select_option("operator")
    frame.get_by_role("button", name="Filter").click()
    row = frame.locator("#audit tr.row-operator", has_text="breaker_reset").first
    row.wait_for()
    assert "admin" in row.inner_text() and "from=open" in row.inner_text()
    _shot(page, tmp_path, "audit")

    # a link to the Airflow run opens it in Airflow's own UI, not inside the frame
    frame.get_by_role("link", name=dashboard.correlation_id).first.click()
    frame.locator("#airflow-run a").first.click()
    page.wait_for_url("**/dags/reconcile__web/runs/**")
    assert "/plugin/" not in page.url
