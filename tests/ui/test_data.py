"""The dashboard's read models from a real pipeline cycle: no Airflow, no provider calls."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler_airflow.ui import data
from reconciler_airflow.ui.charts import drift_chart
from reconciler_airflow.ui.runlinks import record_run_link, run_link
from tests.ui.support import pipeline_cycle, seed_fleet, write_targets


@pytest.fixture
def cycle(tmp_path, monkeypatch):
    config = write_targets(tmp_path, ["shop", "idle"])
    monkeypatch.setenv("RECONCILER_CONFIG", str(config))
    monkeypatch.setenv("RECONCILER_HOME", str(tmp_path / "reconciler"))
    monkeypatch.setenv("RECONCILER_STORE_URL", f"sqlite:///{tmp_path}/reconciler/state.db")
    monkeypatch.delenv("AIRFLOW__METRICS__STATSD_ON", raising=False)
    seed_fleet(tmp_path, "shop").delete("sim.Node", "node-a2")
    result = pipeline_cycle("shop", "shop-data-1")
    store = result["step"].target.store
    record_run_link(store, "shop", "shop-data-1", "reconcile__shop", "manual__1",
                    diff_ref=result["compared"].diff_ref)
    return store


def test_targets_come_from_the_config(cycle):
    assert data.target_names() == ["idle", "shop"]


def test_the_summary_has_urgency_drift_outcome_version_and_breaker(cycle):
    shop = data.target_summary(cycle, "shop")
    assert shop["urgency"] == "none" and shop["magnitude"] == 0
    assert shop["last"]["status"] == "converged" and shop["last"]["actions_succeeded"] == 1
    assert shop["history"][0]["initial_magnitude"] > 0
    assert shop["breaker"] == {"target": "shop", "state": "closed", "consecutive_failures": 0,
                               "opened_at": None, "reason": None, "open": False}
    assert data.target_summary(cycle, "idle")["last"] is None


def test_drifting_since_is_the_start_of_the_unconverged_streak(cycle):
    from reconciler.core.model import Drift, Outcome

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i, urgency in enumerate(["none", "high", "high"]):
        left = Drift(magnitude=0 if urgency == "none" else 3, urgency=urgency)
        cycle.record_cycle(Outcome(target="idle", correlation_id=f"idle-{i}", status="failed",
                                   converged=False, started_at=t0 + timedelta(hours=i),
                                   finished_at=t0 + timedelta(hours=i, minutes=1),
                                   final_drift=left))
    summary = data.target_summary(cycle, "idle")
    assert summary["drifting_since"] == (t0 + timedelta(hours=1)).isoformat()
    assert summary["urgency"] == "high"


def test_a_cycle_detail_has_diff_plan_results_events_and_the_run(cycle):
    detail = data.cycle_detail(cycle, "shop", "shop-data-1")
    assert detail["run"] == {"dag_id": "reconcile__shop", "run_id": "manual__1",
                             "diff_ref": detail["run"]["diff_ref"]}
    assert detail["diff"]["counts"]["add"] == 1  # the first diff, not the converged one
    assert detail["plans"][0]["approval"] == "not required"
    assert [a["state"] for a in detail["actions"]] == ["succeeded"]
    assert "action_started" in {e["type"] for e in detail["events"]}
    assert data.cycle_detail(cycle, "shop", "nope") is None


def test_a_run_link_is_written_once(cycle):
    record_run_link(cycle, "shop", "shop-data-1", "reconcile__shop", "manual__2")
    assert run_link(cycle, "shop", "shop-data-1")["run_id"] == "manual__1"


def test_s3_artifacts_are_named_not_fetched():
    value, why = data.read_artifact("s3://bucket/cid/diff.json", "s3://bucket")
    assert value is None and "never calls the cloud" in why


def test_only_artifacts_under_the_targets_artifact_folder_are_opened(cycle, tmp_path):
    root = data.artifact_root("shop")
    diff_ref = run_link(cycle, "shop", "shop-data-1")["diff_ref"]
    assert data.read_artifact(diff_ref, root) == (json.loads(Path(diff_ref).read_text()), None)
    secret = tmp_path / "elsewhere.json"
    secret.write_text('{"password": "hunter2"}')
    link = Path(root) / "link.json"
    link.symlink_to(secret)
    for ref in (str(secret), f"{root}/../../elsewhere.json", str(link)):
        value, why = data.read_artifact(ref, root)
        assert value is None and "outside the target's artifact folder" in why, ref
    assert data.read_artifact(diff_ref, None)[0] is None  # a target no longer configured
    assert data.read_artifact(diff_ref, data.artifact_root("idle"))[0] is None


def test_a_cycle_whose_stored_diff_points_elsewhere_shows_no_file(cycle, tmp_path):
    secret = tmp_path / "elsewhere.json"
    secret.write_text('{"counts": {"add": 99}}')
    record_run_link(cycle, "shop", "shop-data-2", "reconcile__shop", "manual__9",
                    diff_ref=str(secret))
    detail = data.cycle_detail(cycle, "shop", "shop-data-2")
    assert detail["diff"] is None and "not opened" in detail["diff_note"]


def test_the_audit_trail_filters_by_target_kind_and_time(cycle):
    rows = data.audit_trail(cycle, ["shop"], None, None, None, 500)
    assert {r["kind"] for r in rows} == {"plan", "action", "event", "operator"}
    assert all(r["target"] == "shop" for r in rows)
    actions = data.audit_trail(cycle, ["shop"], None, None, "action", 500)
    assert actions[0]["summary"].startswith("create sim.Node/node-a2 -> succeeded")
    future = datetime.now(UTC) + timedelta(hours=1)
    assert data.audit_trail(cycle, ["shop"], future, None, None, 500) == []
    assert data.audit_trail(cycle, ["shop"], None, datetime(2020, 1, 1, tzinfo=UTC), None,
                            500) == []
    assert data.parse_time("2026-11-28T10:00") == datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert data.parse_time("") is None


def test_the_audit_trail_loads_at_most_limit_rows_over_all_targets(tmp_path):
    from reconciler.store import SqlStore, open_store

    class Counting(SqlStore):
        loaded = 0

        def audit_rows(self, *args, **kwargs):
            rows = super().audit_rows(*args, **kwargs)
            Counting.loaded += len(rows)
            return rows

    st = Counting(open_store(f"sqlite:///{tmp_path}/state.db").engine)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(30):
        st._now = lambda i=i: t0 + timedelta(minutes=i)
        st.record_operator(["a", "b", "c"][i % 3], "ops", f"note-{i}")
    rows = data.audit_trail(st, ["a", "b", "c"], None, None, None, 4)
    assert [r["summary"] for r in rows] == [f"note-{i}" for i in (29, 28, 27, 26)]
    assert Counting.loaded == 4
    assert len(data.audit_trail(st, ["a", "b"], None, None, None, 100)) == 20


def test_the_chart_escapes_what_it_shows():
    svg = drift_chart([{"started_at": "<b>", "status": "failed", "initial_magnitude": 3,
                        "final_magnitude": 1}])
    assert "<b>" not in svg and "&lt;b&gt;" in svg and svg.startswith("<svg")
    assert "No cycles" in drift_chart([])


def test_each_action_shows_one_state_now_pending_done_failed_or_rolled_back():
    from reconciler.core.model import ActionResult, ResourceKey

    def row(aid: str, state: str, attempts: int = 1, rollback: bool = False) -> dict:
        kind, _, name = aid.partition(":")[2].removesuffix("#undo").partition("/")
        result = ActionResult(action_id=aid, key=ResourceKey(kind=kind, name=name),
                              type="create", state=state, attempts=attempts, rollback=rollback)
        return {"payload": result.model_dump(mode="json")}

    def planned(*ids: str) -> dict:
        return {"payload": {"waves": [{"index": 0, "actions": [
            {"id": i, "type": "create", "target": {"kind": "sim.Node", "name": i[-1]}}
            for i in ids]}]}}

    rows = [row("create:sim.Node/a", "failed"), row("create:sim.Node/a", "succeeded", 2),
            row("create:sim.Node/b", "succeeded"), row("create:sim.Node/c", "failed"),
            row("create:sim.Node/b#undo", "succeeded", rollback=True)]
    ids = ("create:sim.Node/a", "create:sim.Node/b", "create:sim.Node/c", "create:sim.Node/d")
    states = {(v["action_id"], v["state"], v["attempts"])
              for v in data.action_states(rows, [planned(*ids)])}
    assert states == {("create:sim.Node/a", "succeeded", 2),  # a retry fixed it: one line
                      ("create:sim.Node/b", "rolled_back", 1),
                      ("create:sim.Node/c", "failed", 1),
                      ("create:sim.Node/d", "pending", 0),
                      ("create:sim.Node/b#undo", "succeeded", 1)}
    # an action whose start is recorded but no result yet is running, not pending
    running = {(v["action_id"], v["state"])
               for v in data.action_states(rows, [planned(*ids)], {"create:sim.Node/d"})}
    assert ("create:sim.Node/d", "running") in running


@pytest.fixture
def strays(tmp_path, monkeypatch):
    """Target ``shop`` with a node missing, plus two hand-made nodes; one carries a tag the
    policy ignores."""
    config = write_targets(tmp_path, ["shop"],
                           extra_policy=", unmanaged_ignore: {tags: {owner: ci}}")
    monkeypatch.setenv("RECONCILER_CONFIG", str(config))
    monkeypatch.setenv("RECONCILER_HOME", str(tmp_path / "reconciler"))
    monkeypatch.setenv("RECONCILER_STORE_URL", f"sqlite:///{tmp_path}/reconciler/state.db")
    monkeypatch.delenv("AIRFLOW__METRICS__STATSD_ON", raising=False)
    sim = seed_fleet(tmp_path, "shop")
    spec = dict(sim.get("sim.Node", "node-a1").spec)
    sim.put("sim.Node", "by-hand", spec, managed=False)
    sim.put("sim.Node", "ci-runner", {**spec, "tags": {"owner": "ci"}}, managed=False)
    sim.delete("sim.Node", "node-a2")
    result = pipeline_cycle("shop", "shop-strays-1")
    store = result["step"].target.store
    record_run_link(store, "shop", "shop-strays-1", "reconcile__shop", "manual__2",
                    diff_ref=result["compared"].diff_ref)
    return store, sim


def test_a_cycle_lists_unmanaged_resources_per_kind_with_the_coverage_figure(strays):
    store, sim = strays
    detail = data.cycle_detail(store, "shop", "shop-strays-1")
    assert detail["outcome"]["status"] == "converged"
    assert [a["key"] for a in detail["actions"]] == ["sim.Node/node-a2"]  # the strays: never
    nodes = {u["kind"]: u for u in detail["diff"]["unmanaged"]}["sim.Node"]
    managed = sum(1 for r in sim.observe("sim.Node", 60).resources if r.managed) - 1  # a2 back
    assert nodes["resources"] == ["sim.Node/by-hand"] and nodes["more"] == 0
    assert (nodes["managed"], nodes["unmanaged"], nodes["ignored"]) == (managed, 1, 1)
    assert nodes["figure"] == f"{managed} of {managed + 1} managed " \
        f"({round(100 * managed / (managed + 1))}%)"


def test_the_cycle_page_shows_the_unmanaged_panel(strays):
    from reconciler_airflow.ui.app import _TEMPLATES

    store, _ = strays
    detail = data.cycle_detail(store, "shop", "shop-strays-1")
    html = _TEMPLATES.get_template("cycle.html").render(
        c=detail, base="", airflow="/", notice=None, notice_run=None, user="ops")
    panel = html[html.index('<section id="unmanaged">'):]
    assert "? sim.Node/by-hand" in panel and "ci-runner" not in panel
    assert "1 ignored" in panel and "managed (" in panel


def test_a_diff_recorded_before_coverage_existed_says_so():
    assert data.unmanaged_view({"additions": []}) is None
    view = data.unmanaged_view({"unmanaged": [{"kind": "k", "name": "x"}],
                                "coverage": {"k": {"managed": 1140, "unmanaged": 100}}})
    assert view == [{"kind": "k", "managed": 1140, "unmanaged": 100, "ignored": 0,
                     "fraction": 0.919355, "figure": "1,140 of 1,240 managed (92%)",
                     "resources": ["k/x"], "more": 99}]
