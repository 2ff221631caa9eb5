"""A pipeline cycle sends its metrics to StatsD as Airflow's [metrics] settings say, and its
events to the default sinks; no Airflow process needed."""

from __future__ import annotations

import time

import pytest

from tests.ui.support import StatsdListener, Webhook, pipeline_cycle, seed_fleet, write_targets

EXPECTED = {
    "snapshot.completeness", "snapshot.resources", "snapshot.latency", "drift.magnitude",
    "drift.urgency", "drift.resources", "actions.create.succeeded", "actions.delete.succeeded",
    "cycle.duration", "cycle.status.converged", "breaker.open", "breaker.failures",
    "events.drift_detected", "events.action_started", "events.action_completed",
    "events.converged", "events.cycle_finished",
}


@pytest.fixture
def target(tmp_path, monkeypatch):
    """A simulated target ``shop`` with a node missing and a stray one, wired through env."""
    config = write_targets(tmp_path, ["shop"])
    monkeypatch.setenv("RECONCILER_CONFIG", str(config))
    monkeypatch.setenv("RECONCILER_HOME", str(tmp_path / "reconciler"))
    monkeypatch.setenv("RECONCILER_STORE_URL", f"sqlite:///{tmp_path}/reconciler/state.db")
    sim = seed_fleet(tmp_path, "shop")
    sim.delete("sim.Node", "node-b1")
    stray = sim.get("sim.Node", "node-b2")
    sim.put("sim.Node", "node-c9", dict(stray.spec), managed=True)
    return sim


@pytest.fixture
def statsd(monkeypatch):
    listener = StatsdListener()
    for key, value in {"STATSD_ON": "True", "STATSD_HOST": "127.0.0.1",
                       "STATSD_PORT": str(listener.port), "STATSD_PREFIX": "ops"}.items():
        monkeypatch.setenv(f"AIRFLOW__METRICS__{key}", value)
    yield listener
    listener.close()


def _wait_for(listener: StatsdListener, names: set[str], bound_s: float = 10.0) -> set[str]:
    """UDP is asynchronous: poll (bounded) until every name arrived or the bound passes."""
    deadline = time.monotonic() + bound_s
    while not names <= listener.names() and time.monotonic() < deadline:
        time.sleep(0.05)
    return listener.names()


def test_a_cycle_sends_every_metric_under_airflows_statsd_prefix(target, statsd):
    result = pipeline_cycle("shop", "shop-metrics-1")
    assert result["outcome"]["status"] == "converged"
    wanted = {f"ops.reconciler.shop.{name}" for name in EXPECTED}
    got = _wait_for(statsd, wanted)
    assert wanted <= got, sorted(wanted - got)
    drift = statsd.values("ops.reconciler.shop.drift.magnitude")
    assert float(drift[0].split("|")[0]) > 0 and drift[-1] == "0|g"
    assert statsd.values("ops.reconciler.shop.breaker.open") == ["0|g"]
    assert all(v.endswith("|ms") for v in statsd.values("ops.reconciler.shop.cycle.duration"))


def test_with_statsd_off_nothing_is_sent(target, monkeypatch):
    listener = StatsdListener()
    try:
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "False")
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(listener.port))
        pipeline_cycle("shop", "shop-metrics-off")
        time.sleep(0.3)  # give a stray datagram the chance to arrive (not an assertion on time)
        assert listener.lines == []
    finally:
        listener.close()


def test_the_default_sinks_post_every_event_to_the_webhook_and_audit_action_events(
        target, monkeypatch):
    hook = Webhook()
    try:
        monkeypatch.setenv("RECONCILER_EVENTS_WEBHOOK", hook.url)
        result = pipeline_cycle("shop", "shop-events-1")
    finally:
        hook.close()
    types = [b["type"] for b in hook.bodies]
    assert {"drift_detected", "action_started", "action_completed", "converged",
            "cycle_finished"} <= set(types)
    assert {b["correlation_id"] for b in hook.bodies} == {"shop-events-1"}
    audited = result["step"].target.store.audit_rows(
        target="shop", kind="event", correlation_id="shop-events-1", limit=1000)
    assert {"action_started", "action_completed"} <= {r["payload"]["type"] for r in audited}


def test_coverage_is_a_gauge_per_kind_of_managed_unmanaged_and_their_fraction(target, statsd):
    spec = dict(target.get("sim.Node", "node-a1").spec)
    for name in ("by-hand-1", "by-hand-2"):
        target.put("sim.Node", name, spec, managed=False)
    managed = sum(1 for r in target.observe("sim.Node", 60).resources if r.managed)
    pipeline_cycle("shop", "shop-coverage-1")
    base = "ops.reconciler.shop.coverage.sim.Node"
    got = _wait_for(statsd, {f"{base}.{g}" for g in ("managed", "unmanaged", "fraction")})
    assert f"{base}.ignored" in got and "ops.reconciler.shop.coverage.sim.Workload.fraction" in got
    assert statsd.values(f"{base}.managed") == [f"{managed}|g"]  # the first compare only
    assert statsd.values(f"{base}.unmanaged") == ["2|g"]
    assert statsd.values(f"{base}.fraction") == [f"{round(managed / (managed + 2), 6):g}|g"]
