"""The safety rules under the real scheduler, against what an operator can do to a run.

A cleared task, a task marked successful by hand, a CLI apply while a run waits for a human,
a deadline that passes mid-actuation: the actuation guard (core.guard) must hold in each,
whatever Airflow's task states say. And a run the scheduler starts by itself converges.

    pytest -m system tests/system/test_airflow_safety.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler.orchestration import taskgraph as tg
from tests.system.world import ROOT, SimTarget, World, airflow_world, pause

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]
APPROVE, ACTUATE = tg.approve_task(1), tg.actuate_task(1)

# a deletion needs approval; every urgency is routed to a plan
GATED = "max_parallel: 4, max_delete_fraction: 0.0, auto_apply: [low, high, critical]"
# the deadline passes while slow creates are applied one at a time (one pool slot): 60 s of
# creates, begun some 15-35 s into the run; the grace is longer than any rollback of them
DEADLINE_S, LATENCY_S, CREATES = 45, 1.0, 60
GRACE_S = DEADLINE_S + 30
SLOW = (f"max_parallel: 1, max_delete_fraction: 0.5, cycle_deadline_seconds: {DEADLINE_S}, "
        f"rollback_grace_seconds: {GRACE_S}, sense_deadline_seconds: 20, "
        "auto_apply: [low, high, critical]")

TARGETS = {
    "rejected": SimTarget(schedule="null", policy=GATED),
    "marked": SimTarget(schedule="null", policy=GATED),
    "held": SimTarget(schedule="null", policy=GATED),
    "approved": SimTarget(schedule="null", policy=GATED),
    "slow": SimTarget(schedule="null", policy=SLOW, faults=f"{{latency_s: {LATENCY_S}}}",
                      extra_nodes=CREATES),
    "minutely": SimTarget(schedule='"*/1 * * * *"'),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with airflow_world(tmp_path_factory.mktemp("safety"), TARGETS) as w:
        yield w


def _cid(target: str, run_id: str) -> str:
    from reconciler.orchestration.runtime import correlation_id_for_run

    return correlation_id_for_run(target, run_id)


def _rows(world: World, target: str, kind: str, cid: str | None = None) -> list[dict[str, Any]]:
    return world.store().audit_rows(target=target, kind=kind, correlation_id=cid, limit=10_000)


def _refusals(world: World, target: str, cid: str) -> list[str]:
    return [r["payload"]["detail"]["reason"] for r in _rows(world, target, "event", cid)
            if r["payload"]["type"] == "action_refused"]


def _waiting_for_approval(world: World, target: str) -> tuple[str, str]:
    """A fresh run of ``target`` with a stray to delete, parked on its approval."""
    world.fleet(target).put("sim.Node", "stray", {"pool": "default"})
    dag = f"reconcile__{target}"
    run = world.stack.trigger(dag)
    world.wait_task(dag, run, APPROVE, ("awaiting_input",))
    return dag, run


PARKED_S = 5.0


def _answer(world: World, dag: str, run: str, choice: str, timeout_s: float = 120) -> None:
    """Answer the approval, and again if Airflow asks again. On Airflow 3.3.2 with the
    LocalExecutor an answer given before the executor reports that the parked task's process
    ended is lost: the scheduler reads that report as a state changed behind its back, retries
    the task, and the retry waits for a new answer (nothing is applied meanwhile)."""
    answered, deadline = None, time.monotonic() + timeout_s
    parked: tuple[int, float] | None = None  # (try, when first seen parked)
    while time.monotonic() < deadline:
        ti = next(t for t in world.stack.task_instances(dag, run)
                  if t["task_id"] == APPROVE)
        if ti["state"] in ("success", "failed", "skipped"):
            return
        if ti["state"] != "awaiting_input":
            parked = None
        elif parked is None or parked[0] != ti["try_number"]:
            parked = (ti["try_number"], time.monotonic())
        # answer a try only once it has stayed parked a while: by then the executor has
        # reported the parked process's end, and the scheduler no longer mistakes it for a
        # state changed behind its back (which retries the task, up to failing it)
        settled = parked is not None and time.monotonic() - parked[1] >= PARKED_S
        if settled and ti["try_number"] != answered:
            world.stack.request(
                "PATCH", f"/api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{APPROVE}/-1/"
                         "hitlDetails", {"chosen_options": [choice]})
            answered = ti["try_number"]
        time.sleep(1)
    raise TimeoutError(f"{dag}/{run}: the approval never took {choice!r}\n{world.stack.tail()}")


def _actuate_states(world: World, dag: str, run: str) -> list[str]:
    return [str(ti["state"]) for ti in world.stack.task_instances(dag, run)
            if ti["task_id"] == ACTUATE]


def _wait_actuate_done(world: World, dag: str, run: str, timeout_s: float = 120) -> list[str]:
    done = ("success", "failed", "skipped", "upstream_failed")
    deadline, states = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        states = _actuate_states(world, dag, run)
        if states and all(s in done for s in states):
            return states
        time.sleep(1)
    raise TimeoutError(f"{ACTUATE} still {states}\n{world.stack.tail()}")


def test_a_scheduled_run_converges_the_fleet(world):
    """Runs first: the target fires every minute until this test pauses it. Nothing here
    triggers it: the run that repairs the fleet is one the scheduler started."""
    dag = "reconcile__minutely"
    world.stack.wait_idle(dag)
    sim = world.fleet("minutely")
    sim.delete("sim.Node", "node-b2")
    since = datetime.now(UTC)
    try:
        outcome = _repairing_cycle(world, "minutely", since)
        runs = world.stack.request("GET", f"/api/v2/dags/{dag}/dagRuns?limit=100")["dag_runs"]
        run = next(r for r in runs
                   if _cid("minutely", r["dag_run_id"]) == outcome.correlation_id)
        state = world.stack.wait_run(dag, run["dag_run_id"])  # a paused DAG's run stays put
    finally:
        pause(world.stack, dag, True)
    assert outcome.trigger == "scheduled" and outcome.status == "converged", outcome
    assert sim.get("sim.Node", "node-b2") is not None
    assert run["run_type"] == "scheduled" and state == "success", (run, state)


def _repairing_cycle(world: World, target: str, since: datetime,
                     timeout_s: float = 180) -> Any:
    """The first cycle of ``target`` recorded after ``since`` that applied something."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        acted = [c for c in world.cycles(target)
                 if c.finished_at > since and c.actions_succeeded]
        if acted:
            return acted[-1]
        time.sleep(2)
    raise TimeoutError(f"no cycle of {target} repaired the fleet\n{world.stack.tail()}")


def test_a_rejected_plan_whose_actuate_is_cleared_applies_nothing(world):
    """Airflow 3.3 skips the cleared batch again (the approval task's recorded skip decision,
    NotPreviouslySkippedDep); were it to run, the guard must refuse it (no approval record)."""
    dag, run = _waiting_for_approval(world, "rejected")
    _answer(world, dag, run, "Reject")
    assert world.stack.wait_run(dag, run) == "success"
    assert set(_actuate_states(world, dag, run)) == {"skipped"}
    world.stack.request("POST", f"/api/v2/dags/{dag}/clearTaskInstances", {
        "dry_run": False, "dag_run_id": run, "task_ids": [ACTUATE],
        "only_failed": False, "reset_dag_runs": True})
    states = _wait_actuate_done(world, dag, run)
    world.stack.wait_run(dag, run)
    cid = _cid("rejected", run)
    assert world.fleet("rejected", seed=False).get("sim.Node", "stray") is not None
    applied = [r for r in _rows(world, "rejected", "action", cid)
               if not (r["payload"]["error"] or "").startswith("refused:")]
    assert applied == [], applied
    if "failed" in states:  # it ran: the guard, not a task state, stopped it
        assert _refusals(world, "rejected", cid), states
    else:
        assert set(states) == {"skipped"} and not _rows(world, "rejected", "action", cid)
    assert world.cycles("rejected")[0].status == "needs_approval"


def test_a_cleared_actuate_of_a_finished_approved_run_applies_nothing(world):
    """The batch really runs again here (Airflow does not skip it): the guard must refuse it,
    though this cycle's approval covers the very same plan, for the run let go of the lease."""
    dag, run = _waiting_for_approval(world, "approved")
    _answer(world, dag, run, "Approve")
    assert world.stack.wait_run(dag, run) == "success"
    cid = _cid("approved", run)
    assert world.cycles("approved")[0].status == "converged"
    sim = world.fleet("approved", seed=False)
    assert sim.get("sim.Node", "stray") is None
    sim.put("sim.Node", "stray", {"pool": "default"})  # the same plan would delete it again
    before = len(_rows(world, "approved", "action", cid))
    world.stack.request("POST", f"/api/v2/dags/{dag}/clearTaskInstances", {
        "dry_run": False, "dag_run_id": run, "task_ids": [ACTUATE],
        "only_failed": False, "reset_dag_runs": True})
    assert _wait_actuate_done(world, dag, run) == ["failed"]
    world.stack.wait_run(dag, run)
    assert sim.get("sim.Node", "stray") is not None
    rows = _rows(world, "approved", "action", cid)
    again = rows[:len(rows) - before]  # newest first
    assert again and all(r["payload"]["error"].startswith("refused:") for r in again), again
    assert any("lease" in r for r in _refusals(world, "approved", cid))


def test_an_approval_marked_successful_by_hand_applies_nothing(world):
    dag, run = _waiting_for_approval(world, "marked")
    world.stack.request("PATCH", f"/api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{APPROVE}",
                        {"new_state": "success"})
    world.stack.wait_run(dag, run)
    cid = _cid("marked", run)
    assert world.fleet("marked", seed=False).get("sim.Node", "stray") is not None
    assert not [r for r in _rows(world, "marked", "action", cid)
                if r["payload"]["state"] == "succeeded"]
    states = _actuate_states(world, dag, run)
    reasons = _refusals(world, "marked", cid)
    # actuate ran and the guard refused it for want of an approval record, or it never ran
    assert (states == ["failed"] and reasons and all("needs approval" in r for r in reasons)) \
        or (states and set(states) <= {"skipped", "upstream_failed"}), (states, reasons)
    outcome = next(c for c in world.cycles("marked") if c.correlation_id == cid)
    assert not outcome.converged and outcome.status != "converged", outcome


def test_a_cli_apply_while_a_run_waits_for_approval_exits_busy(world):
    from reconciler.cli import EXIT_BUSY

    dag, run = _waiting_for_approval(world, "held")
    cid = _cid("held", run)
    before = sorted((r.key.kind, r.key.name, str(r.spec))
                    for r in world.fleet("held", seed=False).resources())
    env = {**os.environ, **world.env}
    cli = subprocess.run([sys.executable, "-m", "reconciler", "apply", "--target", "held",
                          "--yes"], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    try:
        assert cli.returncode == EXIT_BUSY, (cli.returncode, cli.stdout, cli.stderr)
        assert "holds its lease" in cli.stderr
        after = sorted((r.key.kind, r.key.name, str(r.spec))
                       for r in world.fleet("held", seed=False).resources())
        assert after == before
        assert _rows(world, "held", "action") == []
        assert world.store().lease_holder("held")[0] == cid  # the run still holds it
    finally:
        _answer(world, dag, run, "Reject")
        world.stack.wait_run(dag, run)


def test_a_deadline_overrun_stops_new_actions_and_still_rolls_back(world):
    sim = world.fleet("slow")
    for i in range(CREATES):
        sim.delete("sim.Node", f"extra-{i}")
    dag = "reconcile__slow"
    run = world.stack.trigger(dag)
    assert world.stack.wait_run(dag, run, timeout_s=DEADLINE_S + GRACE_S + 120) == "failed"
    cid = _cid("slow", run)
    deadline_at = world.store().load_cycle_state("slow", cid).deadline_at
    rows = [r["payload"] for r in _rows(world, "slow", "action", cid)]
    forward = [r for r in rows if not r["rollback"]]
    done = [r for r in forward if r["state"] == "succeeded"]
    started = [_at(r["started_at"]) for r in done]
    assert done, f"no create started before the deadline: the test proves nothing\n{rows}"
    assert max(started) < deadline_at, (max(started), deadline_at)
    reasons = _refusals(world, "slow", cid)
    assert reasons and all("deadline passed" in r for r in reasons), reasons
    undo = [r for r in rows if r["rollback"]]
    assert sorted(r["key"]["name"] for r in undo) == sorted(r["key"]["name"] for r in done)
    assert all(r["state"] == "succeeded" for r in undo), undo
    grace_end = deadline_at + timedelta(seconds=GRACE_S)
    assert max(_at(r["finished_at"]) for r in undo) <= grace_end
    assert not [n for n in sim.resources("sim.Node") if n.key.name.startswith("extra-")]
    assert world.cycles("slow")[0].status != "converged"


def _at(value: str) -> datetime:
    at = datetime.fromisoformat(value)
    return at if at.tzinfo else at.replace(tzinfo=UTC)
