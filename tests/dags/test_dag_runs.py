"""Whole cycles through dag.test() (one pytest process: the first run pays Airflow's warm-up)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from reconciler.orchestration import taskgraph as tg
from tests.dags import support
from tests.dags.conftest import HOME

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture()
def webhook():
    hook = support.Webhook()
    os.environ["RECONCILER_TEST_WEBHOOK"] = hook.url
    yield hook
    hook.close()


def test_no_drift_skips_actuation(dagbag):
    sim = support.seed("sim")
    calls = sim.stats.apply_calls
    events = support.asset_events("sim")
    dr, states = support.run(dagbag, "sim")
    assert dr.state == "success"
    assert states[tg.ROUTE] == "success" and states[tg.RECORD] == "success"
    assert states[tg.plan_task(1)] == "skipped" and states[tg.REPORT] == "skipped"
    assert support.asset_events("sim") == events + 1  # in sync counts as converged
    assert support.last_outcome("sim").status == "in_sync"
    assert support.fleet("sim").stats.apply_calls == calls == 0


def test_drift_converges_and_leaves_unowned_alone(dagbag):
    sim = support.seed("sim")
    sim.delete("sim.Node", "node-a2")  # high: a missing node
    sim.put("sim.Node", "orphan", {"pool": "default"})  # ours, not desired: deleted
    sim.put("sim.Node", "by-hand", {"pool": "default"}, managed=False)  # not ours: left alone
    unowned = [r for r in sim.resources() if not r.managed]
    dr, states = support.run(dagbag, "sim")
    assert dr.state == "success", states
    outcome = support.last_outcome("sim")
    assert outcome.status == "converged" and outcome.final_drift.drifted == 0
    assert outcome.actions_succeeded > 0 and outcome.actions_failed == 0
    assert [r for r in support.fleet("sim").resources() if not r.managed] == unowned
    assert states[f"{tg.actuate_task(1)}[0]"] == "success" and states[tg.plan_task(2)] == "skipped"
    dr, states = support.run(dagbag, "sim")
    assert support.last_outcome("sim").status == "in_sync"


def test_drift_on_moto_server_converges_and_leaves_unowned_and_protected_alone(dagbag):
    """Through the proxy that keeps AWS's rules: the seed's client tokens are remembered (so the
    instance terminated by hand must be re-created under a new one) and new instances are
    listed only 3 s after launch (verify waits for them)."""
    from reconciler.embedded import MotoProcess, endpoint_file, seed_aws_demo
    from tests.support.fault_proxy import AwsRules, FaultProxy

    with MotoProcess() as moto:
        proxy = FaultProxy(moto.url)
        endpoint_file().write_text(proxy.start() + "\n")
        drift = seed_aws_demo(proxy.url, target="cloud")
        assert any("legacy-batch" in line for line in drift)
        proxy.rules = AwsRules(listing_lag_s=3.0, tag_lag_s=3.0)
        dr, states = support.run(dagbag, "cloud")
        assert dr.state == "success", states
        outcome = support.last_outcome("cloud")
        assert outcome.status == "converged" and outcome.actions_succeeded >= 3
        dr, _ = support.run(dagbag, "cloud")
        assert support.last_outcome("cloud").status == "in_sync"
        proxy.stop()
        import boto3

        ec2 = boto3.client("ec2", endpoint_url=moto.url, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
        names = [{t["Key"]: t["Value"] for t in i.get("Tags", [])}.get("Name")
                 for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
                 if i["State"]["Name"] != "terminated"]
        assert "legacy-batch" in names and "ledger-db" in names


def test_critical_drift_pages_then_acts(dagbag, webhook):
    sim = support.seed("sim")
    sim.delete("sim.Workload", "checkout")  # sla: critical
    dr, states = support.run(dagbag, "sim")
    assert states[tg.PAGE] == "success" and dr.state == "success"
    assert [b["event"] for b in webhook.bodies] == ["critical_drift"]
    assert webhook.bodies[0]["urgency"] == "critical"
    assert support.fleet("sim").get("sim.Workload", "checkout") is not None


def test_dry_run_actuates_nothing_and_records_nothing(dagbag):
    """A dry run is a look (core.cycle): no history row, no audit row, no cycle state in the
    store; what it saw is in the run's artifacts."""
    from reconciler.orchestration.pipeline import Step
    from reconciler.orchestration.runtime import correlation_id_for_run

    sim = support.seed("sim")
    sim.delete("sim.Node", "node-a2")
    history = len(support.store().recent_cycles("sim", 1000))
    dr, states = support.run(dagbag, "sim", {"dry_run": True})
    assert states[tg.REPORT] == "success" and states[tg.plan_task(1)] == "skipped"
    assert states[tg.RECORD] == "success"
    assert support.fleet("sim").get("sim.Node", "node-a2") is None
    assert len(support.store().recent_cycles("sim", 1000)) == history
    cid = correlation_id_for_run("sim", dr.run_id)
    assert support.store().audit_rows(target="sim", correlation_id=cid) == []
    assert support.store().load_cycle_state("sim", cid) is None
    state = Step.open("sim", cid).state()
    assert state is not None and state.dry_run and state.route.status == "reported"


@pytest.mark.parametrize(("choice", "status"), [("Approve", "converged"),
                                                 ("Reject", "needs_approval")])
def test_a_plan_past_the_blast_radius_waits_for_a_human(dagbag, choice, status):
    sim = support.seed("gated")
    sim.put("sim.Node", "stray", {"pool": "default"})
    approver = support.Approver(choice)
    approver.start()
    events = support.asset_events("gated")
    dr, states = support.run(dagbag, "gated")
    approver.join(5)
    assert approver.error is None and approver.answered, approver.error
    assert states[tg.approve_task(1)] == "success"
    assert support.last_outcome("gated").status == status
    assert support.asset_events("gated") == events + (choice == "Approve")
    gone = support.fleet("gated").get("sim.Node", "stray") is None
    assert gone == (choice == "Approve")


def test_a_later_pass_never_applies_what_no_human_approved(dagbag):
    """Pass 1 needs no approval; a stray appears meanwhile; pass 2 would delete it, which
    needs approval: the cycle ends needs_approval and the stray stays for the next cycle."""
    sim = support.seed("gated")
    sim.delete("sim.Node", "node-a2")
    sim.delete("sim.Node", "node-b1")
    stray = threading.Thread(target=_put_stray_once_created, args=("gated", "node-a2"),
                             daemon=True)
    stray.start()
    dr, states = support.run(dagbag, "gated")
    stray.join(5)
    assert states[tg.approve_task(1)] == "skipped"
    assert states[f"{tg.actuate_task(1)}[0]"] == "success"
    assert states[tg.plan_task(2)] == "skipped" and states[tg.actuate_task(2)] == "skipped"
    outcome = support.last_outcome("gated")
    assert outcome.status == "needs_approval" and "pass 2" in outcome.error
    assert support.fleet("gated").get("sim.Node", "node-a2") is not None
    assert support.fleet("gated").get("sim.Node", "stray") is not None


def _put_stray_once_created(target: str, name: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if support.fleet(target).get("sim.Node", name) is not None:
            support.fleet(target).put("sim.Node", "stray", {"pool": "default"})
            return
        time.sleep(0.02)


def test_an_approval_that_comes_after_the_fleet_changed_applies_nothing(dagbag):
    sim = support.seed("gated")
    sim.put("sim.Node", "stray", {"pool": "default"})
    moved = lambda: support.fleet("gated").put("sim.Node", "stray", {"pool": "other"})  # noqa: E731
    approver = support.Approver("Approve", before=moved)
    approver.start()
    dr, states = support.run(dagbag, "gated")
    approver.join(5)
    assert approver.answered and states[tg.approve_task(1)] == "success"
    assert states[f"{tg.actuate_task(1)}[0]"] == "skipped"
    outcome = support.last_outcome("gated")
    assert outcome.status == "needs_approval" and "went stale" in outcome.error
    assert support.fleet("gated").get("sim.Node", "stray") is not None
    rows = support.store().audit_rows(target="gated", kind="operator", limit=5)
    assert [r for r in rows if "plan_stale" in str(r)]


def test_a_field_another_controller_keeps_reverting_is_left_alone(dagbag):
    support.seed("sim")
    outcomes = []
    for _ in range(4):
        support.fleet("sim").put("sim.Workload", "catalog", _catalog(replicas=9))
        support.run(dagbag, "sim")
        outcomes.append(support.last_outcome("sim"))
    assert [o.status for o in outcomes] == ["converged"] * 3 + ["in_sync"]
    assert outcomes[3].flapping == ("sim.Workload/catalog:replicas",)
    assert support.fleet("sim").get("sim.Workload", "catalog").spec["replicas"] == 9


def _catalog(replicas: int) -> dict:
    from reconciler.desired import load_desired

    desired = load_desired(HOME / "desired" / "sim")
    spec = next(r.spec for r in desired.resources if r.key.name == "catalog")
    return {**spec, "replicas": replicas}


def test_a_failed_batch_rolls_back_and_the_breaker_counts_it(dagbag):
    from reconciler.providers.simulated import Faults

    sim = support.seed("flaky")
    sim.delete("sim.Node", "node-a2")
    sim.delete("sim.Node", "node-b1")
    sim.faults = Faults(fail_actions=frozenset({"sim.Node/node-b1"}))
    _enable_faults("flaky", {"fail_actions": ["sim.Node/node-b1"]})
    try:
        dr, states = support.run(dagbag, "flaky")
    finally:
        _enable_faults("flaky", None)
    assert dr.state == "failed"
    assert states[tg.ROLLBACK] == "success" and states[tg.plan_task(2)] == "upstream_failed"
    assert support.fleet("flaky").get("sim.Node", "node-a2") is None  # created, then undone
    outcome = support.last_outcome("flaky")
    assert outcome.status == "failed" and outcome.actions_failed >= 1
    assert support.store().load_breaker("flaky").consecutive_failures == 1


def test_bad_desired_state_fails_validate_with_file_and_line(dagbag):
    support.seed("broken")
    bad = HOME / "desired" / "broken" / "zz-bad.yaml"
    bad.write_text("resources:\n  - kind: sim.Node\n    name: x\n    spec: {replicas: 3}\n")
    history = len(support.store().recent_cycles("broken"))
    calls = support.fleet("broken").stats.apply_calls
    try:
        dr, states = support.run(dagbag, "broken")
    finally:
        bad.unlink()
    assert states[tg.VALIDATE] == "failed" and dr.state == "failed"
    assert states[tg.plan_task(1)] in ("upstream_failed", "skipped")
    assert support.fleet("broken").stats.apply_calls == calls
    assert len(support.store().recent_cycles("broken")) == history  # history untouched


def _enable_faults(target: str, fail_actions: dict[str, object] | None) -> None:
    """Switch the target's provider faults in the targets file (tasks re-read it each run)."""
    from tests.dags.conftest import TARGETS

    text = TARGETS.read_text()
    marker = f'state: "{support.STATE}/{target}-sim.db"'
    faults = f', faults: {{fail_actions: {fail_actions["fail_actions"]}}}' if fail_actions else ""
    lines = [line.split(marker)[0] + marker + faults + "}}" if marker in line else line
             for line in text.splitlines()]
    TARGETS.write_text("\n".join(lines) + "\n")


def test_a_name_held_by_an_unowned_resource_is_blocked_not_a_failed_cycle(dagbag):
    sim = support.seed("sim")
    sim.delete("sim.Node", "node-a2")
    sim.put("sim.Node", "node-a2", {"pool": "default"}, managed=False)  # someone else's
    dr, states = support.run(dagbag, "sim")
    assert dr.state == "success", states
    outcome = support.last_outcome("sim")
    assert outcome.status == "blocked" and "conflict" in (outcome.error or ""), outcome
    assert support.store().load_breaker("sim").consecutive_failures == 0


def test_a_run_that_finds_the_target_busy_says_busy(dagbag):
    sim = support.seed("sim")
    sim.delete("sim.Node", "node-a2")
    store = support.store()
    assert store.acquire_lease("sim", "cli:someone", 600)  # a CLI apply holds the target
    try:
        dr, states = support.run(dagbag, "sim")
    finally:
        store.release_lease("sim", "cli:someone")
    assert states[tg.plan_task(1)] == "failed"
    outcome = support.last_outcome("sim")
    assert outcome.status == "busy" and "lease" in (outcome.error or ""), outcome
    assert support.fleet("sim").get("sim.Node", "node-a2") is None
    assert store.load_breaker("sim").consecutive_failures == 0


def test_with_a_settling_period_verify_waits_for_the_fix_to_hold(dagbag):
    sim = support.seed("settle")
    sim.delete("sim.Node", "node-a2")
    t0 = time.monotonic()
    dr, states = support.run(dagbag, "settle")
    assert dr.state == "success", states
    assert support.last_outcome("settle").status == "converged"
    assert time.monotonic() - t0 >= 3  # verify poked until the fix held for settle_seconds


def test_drift_that_comes_back_while_settling_is_not_called_converged(dagbag):
    """Something undoes the fix while verify waits for it to hold: pass 1 does not settle, and
    as the drift did not fall the cycle stops as a failed one (the breaker counts it)."""
    sim = support.seed("settle")
    sim.delete("sim.Node", "node-a2")
    undo = threading.Thread(target=_delete_once_created, args=("settle", "node-a2"), daemon=True)
    undo.start()
    dr, states = support.run(dagbag, "settle")
    undo.join(5)
    outcome = support.last_outcome("settle")
    assert outcome.status == "no_progress" and outcome.counts_as_failure, outcome
    assert states[tg.verify_task(1)] == "success" and states[tg.plan_task(2)] == "skipped"


def _delete_once_created(target: str, name: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if support.fleet(target).get("sim.Node", name) is not None:
            time.sleep(0.5)  # inside the 3 s settling period
            support.fleet(target).delete("sim.Node", name)
            return
        time.sleep(0.02)


@pytest.mark.parametrize("attempt", range(3))
def test_a_later_wave_waits_for_an_earlier_one_under_dag_test_too(dagbag, attempt):
    """dag.test() runs mapped batches in no fixed order, one at a time, with a deferral's
    trigger inline: a wave-2 batch that went first must let wave 1 run, not block it."""
    sim = support.seed("sim")
    sim.delete("sim.Workload", "payments")  # wave 1
    sim.delete("sim.Workload", "checkout")  # wave 2: depends on payments
    dr, states = support.run(dagbag, "sim")
    assert dr.state == "success", states
    batches = [f"{tg.actuate_task(1)}[{i}]" for i in (0, 1)]
    assert [states[b] for b in batches] == ["success", "success"], states
    assert support.last_outcome("sim").status == "converged"
