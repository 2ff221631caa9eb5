"""The ``reconcile`` CLI, run as a subprocess the way a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

DESIRED = """\
resources:
  - kind: sim.Node
    name: node-1
    spec: {pool: default, instance_type: m5.large}
  - kind: sim.Node
    name: node-2
    spec: {pool: default, instance_type: m5.large}
  - kind: sim.Workload
    name: web
    sla: critical
    spec:
      replicas: 3
      containers: [{name: web, image: "nginx:1.27"}]
"""


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    desired = tmp_path / "desired"
    desired.mkdir()
    (desired / "fleet.yaml").write_text(DESIRED)
    config = tmp_path / "targets.yaml"
    config.write_text(textwrap.dedent(f"""\
        targets:
          lab:
            provider: {{type: simulated, options: {{state: "{tmp_path}/sim.db"}}}}
            desired: desired
            schedule: "10m"
            policy: {{max_parallel: 4, backoff_base_s: 0.01, backoff_cap_s: 0.1}}
        """))
    return {**os.environ, "RECONCILER_CONFIG": str(config), "RECONCILER_HOME": str(tmp_path),
            "RECONCILER_STORE_URL": f"sqlite:///{tmp_path}/state.db",
            "PYTHONPATH": str(ROOT / "include")}


def reconcile(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_validate_ok(env):
    out = reconcile(env, "validate", "--target", "lab")
    assert out.returncode == 0, out.stderr
    assert "valid: 3 resources" in out.stdout


def test_validate_names_file_line_and_field(env, tmp_path):
    (tmp_path / "desired" / "fleet.yaml").write_text(DESIRED.replace("replicas: 3",
                                                                     "replicas: -1"))
    out = reconcile(env, "validate", "--target", "lab")
    assert out.returncode == 1
    assert "fleet.yaml:12: resources[2].spec.replicas" in out.stderr and "replicas" in out.stderr


def test_unknown_target_is_a_clear_error(env):
    out = reconcile(env, "plan", "--target", "nope")
    assert out.returncode == 1 and "no target 'nope'" in out.stderr


def test_plan_apply_plan_follows_terraforms_exit_codes(env):
    assert reconcile(env, "sim", "seed", "--target", "lab").returncode == 0
    assert reconcile(env, "plan", "--target", "lab").returncode == 0
    drift = reconcile(env, "sim", "drift", "--target", "lab", "--fraction", "1.0")
    assert drift.returncode == 0 and "drift:" in drift.stdout
    plan = reconcile(env, "plan", "--target", "lab", "--json")
    assert plan.returncode == 2, plan.stderr
    data = json.loads(plan.stdout.splitlines()[-1])
    assert data["status"] in ("reported", "needs_approval") or data["plan"]["waves"]
    apply = reconcile(env, "apply", "--target", "lab", "--yes")
    if apply.returncode == 3:  # the drift deletes a stray: past the blast radius, --yes is not it
        apply = reconcile(env, "apply", "--target", "lab", "--approve", data["plan"]["hash"])
    assert apply.returncode == 0, apply.stdout + apply.stderr
    assert "Outcome: converged" in apply.stdout
    assert reconcile(env, "plan", "--target", "lab").returncode == 0
    history = reconcile(env, "history", "--target", "lab", "--json")
    cycles = json.loads(history.stdout)["cycles"]
    assert [c["status"] for c in cycles][0] == "converged"  # plans are read-only: not recorded


def test_apply_json_streams_events_then_the_outcome(env):
    reconcile(env, "sim", "seed", "--target", "lab")
    out = reconcile(env, "apply", "--target", "lab", "--json")
    assert out.returncode == 0, out.stderr
    *events, outcome = [json.loads(line) for line in out.stdout.splitlines()]
    assert outcome["status"] == "in_sync"
    out = reconcile(env, "apply", "--target", "lab", "--dry-run", "--json")
    assert out.returncode == 0


def test_apply_stops_for_approval_with_exit_3_then_applies_that_plan(env, tmp_path):
    reconcile(env, "sim", "seed", "--target", "lab")
    fleet = tmp_path / "desired" / "fleet.yaml"
    fleet.write_text(DESIRED.replace("  - kind: sim.Node\n    name: node-2\n"
                                     "    spec: {pool: default, instance_type: m5.large}\n", ""))
    out = reconcile(env, "apply", "--target", "lab")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "deletes 1 of 3 managed resources" in out.stdout
    plan_hash = out.stderr.split("--approve ")[1].split()[0]
    out = reconcile(env, "apply", "--target", "lab", "--approve", plan_hash)
    assert out.returncode == 0, out.stdout + out.stderr


FIVE = "".join(f"""\
  - kind: sim.Node
    name: node-{i}
    spec: {{pool: default, instance_type: m5.large}}
""" for i in range(1, 6))


def test_yes_never_approves_a_plan_beyond_policy_only_its_hash_does(env, tmp_path):
    """Desired state cut from five nodes to one: ``apply --yes`` (how cron and CI run it)
    deletes nothing; the hash ``plan`` printed approves exactly that plan."""
    fleet = tmp_path / "desired" / "fleet.yaml"
    fleet.write_text("resources:\n" + FIVE)
    assert reconcile(env, "sim", "seed", "--target", "lab").returncode == 0
    fleet.write_text("resources:\n" + FIVE.split("  - kind", 2)[1].join(["  - kind", ""]))
    plan = json.loads(reconcile(env, "plan", "--target", "lab", "--json").stdout.splitlines()[-1])
    out = reconcile(env, "apply", "--target", "lab", "--yes")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "deletes 4 of 5 managed resources" in out.stdout
    assert f"--approve {plan['plan']['hash']}" in out.stderr  # the same plan, the same hash
    from reconciler.providers.simulated import SimulatedProvider

    sim = SimulatedProvider(tmp_path / "sim.db")
    assert len([r for r in sim.resources() if r.key.kind == "sim.Node"]) == 5
    out = reconcile(env, "apply", "--target", "lab", "--yes", "--approve", plan["plan"]["hash"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert [r.key.name for r in sim.resources() if r.key.kind == "sim.Node"] == ["node-1"]


def test_status_and_breaker_reset(env):
    reconcile(env, "sim", "seed", "--target", "lab")
    reconcile(env, "apply", "--target", "lab")
    status = json.loads(reconcile(env, "status", "--target", "lab", "--json").stdout)
    assert status["breaker"]["state"] == "closed" and status["last_cycle"]["status"] == "in_sync"
    out = reconcile(env, "breaker", "reset", "--target", "lab")
    assert out.returncode == 0 and "closed -> closed" in out.stdout


def test_two_applies_at_once_one_acts_the_other_backs_off(env, tmp_path):
    import subprocess as sp

    reconcile(env, "sim", "seed", "--target", "lab")
    config = tmp_path / "targets.yaml"
    config.write_text(config.read_text().replace(
        f'state: "{tmp_path}/sim.db"', f'state: "{tmp_path}/sim.db", faults: {{latency_s: 1.0}}'))
    from reconciler.providers.simulated import SimulatedProvider

    fleet = SimulatedProvider(tmp_path / "sim.db")
    for name in ("node-1", "node-2"):
        fleet.delete("sim.Node", name)
    cmd = [sys.executable, "-m", "reconciler", "apply", "--target", "lab", "--yes", "--json"]
    procs = [sp.Popen(cmd, env=env, stdout=sp.PIPE, stderr=sp.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 4], outs
    busy = outs[[p.returncode for p in procs].index(4)]
    assert "holds its lease" in busy[1]
    from reconciler.store import open_store

    rows = open_store(env["RECONCILER_STORE_URL"]).audit_rows(target="lab", kind="action",
                                                              limit=1000)
    done = [r["payload"]["action_id"] for r in rows if r["payload"]["state"] == "succeeded"]
    assert sorted(done) == ["create:sim.Node/node-1", "create:sim.Node/node-2"]


def _outage(tmp_path: Path, kinds: str) -> None:
    """The simulated provider fails every listing of these kinds (as if Describe* failed)."""
    config, state = tmp_path / "targets.yaml", f'state: "{tmp_path}/sim.db"'
    config.write_text(config.read_text().replace(
        state, f"{state}, faults: {{fail_kinds: {kinds}}}"))


def test_plan_exits_1_not_2_when_a_kind_could_not_be_observed(env, tmp_path):
    reconcile(env, "sim", "seed", "--target", "lab")
    _outage(tmp_path, "[sim.Node]")
    out = reconcile(env, "plan", "--target", "lab", "--json")
    assert out.returncode == 1, out.stdout + out.stderr
    data = json.loads(out.stdout.splitlines()[-1])
    assert data["result"] == "incomplete" and list(data["incomplete_kinds"]) == ["sim.Node"]
    node = data["incomplete_kinds"]["sim.Node"]
    assert node["completeness"] == 0.0 and "simulated outage" in node["errors"][0]
    assert data["completeness_threshold"] == 1.0
    assert {"status", "plans", "plan", "correlation_id"} <= set(data)  # the old keys stay
    assert data["plan"]["audit"]["counts"]["blocked"] == 2


def test_plan_of_a_partly_unobserved_fleet_still_shows_what_it_saw_and_would_do(env, tmp_path):
    reconcile(env, "sim", "seed", "--target", "lab")
    reconcile(env, "sim", "drift", "--target", "lab", "--fraction", "1.0")
    _outage(tmp_path, "[sim.Node]")
    out = reconcile(env, "plan", "--target", "lab")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "+ sim.Node/node-1" in out.stdout  # what it saw: the nodes look missing ...
    assert "blocked create sim.Node/node-1: sim.Node observed 0% < threshold 100%" in out.stdout
    assert "sim.Workload/web" in out.stdout  # ... and the kind it did see is still planned
    assert "Incomplete: 1 kind(s) observed below completeness_threshold 100%" in out.stdout
    assert "  sim.Node: 0% observed: listing sim.Node failed: simulated outage" in out.stdout


def test_a_kind_out_of_scope_does_not_make_the_plan_incomplete(env, tmp_path):
    reconcile(env, "sim", "seed", "--target", "lab")
    _outage(tmp_path, "[sim.Node]")
    out = reconcile(env, "plan", "--target", "lab", "--only-kinds", "sim.Workload", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout.splitlines()[-1])
    assert data["result"] == "in_sync" and data["incomplete_kinds"] == {}


def test_plan_json_says_changes_or_in_sync(env):
    reconcile(env, "sim", "seed", "--target", "lab")
    data = json.loads(reconcile(env, "plan", "--target", "lab", "--json").stdout.splitlines()[-1])
    assert data["result"] == "in_sync" and data["incomplete_kinds"] == {}
    reconcile(env, "sim", "drift", "--target", "lab", "--fraction", "1.0")
    out = reconcile(env, "plan", "--target", "lab", "--json")
    assert out.returncode == 2 and json.loads(out.stdout.splitlines()[-1])["result"] == "changes"


def test_apply_dry_run_exits_1_when_a_kind_could_not_be_observed(env, tmp_path):
    reconcile(env, "sim", "seed", "--target", "lab")
    _outage(tmp_path, "[sim.Workload]")
    out = reconcile(env, "apply", "--target", "lab", "--dry-run", "--json")
    assert out.returncode == 1, out.stdout + out.stderr
    data = json.loads(out.stdout.splitlines()[-1])
    assert data["result"] == "incomplete" and list(data["incomplete_kinds"]) == ["sim.Workload"]


def _by_hand(tmp_path: Path, *names: str, tags: dict[str, str] | None = None) -> None:
    """Resources made by hand in the target's scope: owned by no target."""
    from reconciler.providers.simulated import SimulatedProvider

    sim = SimulatedProvider(tmp_path / "sim.db")
    for name in names:
        sim.put("sim.Node", name, {"pool": "default", "tags": tags or {}}, managed=False)


def test_plan_lists_unmanaged_resources_with_question_marks_and_coverage_but_stays_in_sync(
        env, tmp_path):
    reconcile(env, "sim", "seed", "--target", "lab")
    _by_hand(tmp_path, "hand-made")
    out = reconcile(env, "plan", "--target", "lab")
    assert out.returncode == 0, out.stdout + out.stderr  # unmanaged resources are not changes
    assert "  ? sim.Node/hand-made  (not owned by any target" in out.stdout
    assert "Coverage: sim.Node: 2 of 3 managed (67%)" in out.stdout
    data = json.loads(reconcile(env, "plan", "--target", "lab", "--json").stdout.splitlines()[-1])
    assert data["result"] == "in_sync" and data["unmanaged"] == ["sim.Node/hand-made"]
    assert data["coverage"]["sim.Node"] == {"managed": 2, "unmanaged": 1, "ignored": 0,
                                            "fraction": 0.666667}
    assert data["coverage"]["sim.Workload"]["fraction"] == 1.0


def test_apply_never_touches_an_unmanaged_resource_and_ignore_rules_hide_it(env, tmp_path):
    reconcile(env, "sim", "seed", "--target", "lab")
    _by_hand(tmp_path, "scratch-1")
    _by_hand(tmp_path, "ci-runner", tags={"owner": "ci"})
    out = reconcile(env, "apply", "--target", "lab", "--yes", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout.splitlines()[-1])
    assert data["plans"] == [] and data["unmanaged"] == ["sim.Node/ci-runner", "sim.Node/scratch-1"]
    config = tmp_path / "targets.yaml"
    config.write_text(config.read_text().replace(
        "backoff_cap_s: 0.1}", "backoff_cap_s: 0.1, unmanaged_ignore: "
        "{names: ['scratch-*'], tags: {owner: ci}}}"))
    data = json.loads(reconcile(env, "plan", "--target", "lab", "--json").stdout.splitlines()[-1])
    assert data["unmanaged"] == [] and data["coverage"]["sim.Node"]["ignored"] == 2
    assert data["coverage"]["sim.Node"]["fraction"] == 1.0
