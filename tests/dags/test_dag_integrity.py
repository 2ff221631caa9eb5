"""One cached DagBag: imports, shape, retries, pools, params, and no heavy imports at parse."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from reconciler.orchestration import taskgraph as tg
from tests.dags.conftest import ROOT, TARGET_POLICIES

HEAVY = {"boto3", "botocore", "great_expectations", "pandas"}


def test_no_import_errors_and_one_dag_per_target(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {f"reconcile__{t}" for t in (*TARGET_POLICIES, "cloud")}


def test_every_dag_has_tags_retries_and_a_single_active_run(dagbag):
    for dag in dagbag.dags.values():
        assert "reconciler" in dag.tags
        assert dag.max_active_runs == 1 and not dag.catchup
        for t in dag.tasks:
            assert t.retries >= 2, t.task_id
            assert t.retry_exponential_backoff, t.task_id


def test_no_run_and_no_task_outlives_its_cycle(dagbag):
    from datetime import timedelta

    from reconciler.config import load_config
    from tests.dags.conftest import TARGETS

    for name, cfg in load_config(TARGETS).targets.items():
        dag = dagbag.dags[f"reconcile__{name}"]
        policy = cfg.policy
        grace = policy.cycle_deadline_seconds + policy.rollback_grace_seconds
        assert dag.dagrun_timeout == timedelta(seconds=grace + 300)
        for task in dag.tasks:
            assert task.execution_timeout is not None, task.task_id
            assert task.execution_timeout <= timedelta(seconds=grace), task.task_id


def test_every_pool_a_task_names_is_known(dagbag):
    assert not [w for w in dagbag.dag_warnings if "pool" in str(w).lower()]
    pools = {t.pool for d in dagbag.dags.values() for t in d.tasks}
    assert pools <= {"default_pool", "reconciler__cloud",
                     *(f"reconciler__{t}" for t in TARGET_POLICIES)}
    actuate = dagbag.dags["reconcile__sim"].get_task(tg.actuate_task(1))
    assert actuate.pool == "reconciler__sim"


def test_manual_trigger_params(dagbag):
    params = dagbag.dags["reconcile__sim"].params
    assert set(params.keys()) == {"dry_run", "only_kinds", "reset_breaker", "desired_version"}
    assert params["dry_run"] is False


def test_the_shape_of_a_cycle(dagbag):
    dag = dagbag.dags["reconcile__sim"]
    ids = {t.task_id for t in dag.tasks}
    passes = {task(i) for i in (1, 2, 3) for task in (tg.plan_task, tg.actuate_task,
                                                       tg.verify_task)}
    assert ids == {tg.SENSE, tg.VALIDATE, tg.COMPARE, tg.ROUTE, tg.REPORT, tg.PAGE, tg.ROLLBACK,
                   tg.RECORD, tg.approve_task(1), *passes}
    assert dag.get_task(tg.SENSE).mode == "reschedule"
    assert dag.get_task(tg.verify_task(3)).mode == "reschedule"
    assert dag.get_task(tg.RECORD).trigger_rule == "all_done"
    assert dag.get_task(tg.RECORD).outlets  # the converged asset event goes out through an alias
    assert dag.get_task(tg.ROLLBACK).upstream_task_ids == {tg.actuate_task(i) for i in (1, 2, 3)}


def test_interval_schedules_get_a_stable_per_target_jitter():
    from reconciler_airflow.factory import START, schedule_for

    sched, start = schedule_for("a", "10m")
    assert sched.total_seconds() == 600 and START <= start < START.replace(minute=10)
    assert schedule_for("a", "10m") == schedule_for("a", "10m")
    assert schedule_for("a", "*/5 * * * *")[0].endswith("-59/5 * * * *")
    assert schedule_for("a", "0 3 * * *")[0] == "0 3 * * *"


def test_dag_files_and_plugins_import_nothing_heavy_at_module_level():
    for path in [*(ROOT / "dags").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not {n.split(".")[0] for n in names} & HEAVY, (path, names)


_LOAD_PLUGINS = """
import json, sys
from airflow import plugins_manager
plugins, errors = plugins_manager._get_plugins()
print(json.dumps({"plugins": [p.name for p in plugins], "errors": errors,
                  "factory": "reconciler_airflow.factory" in sys.modules,
                  "strays": [m for m in ("factory", "tasks", "operators", "setup")
                             if m in sys.modules]}))
"""


def test_airflow_loads_one_plugin_which_preloads_the_dag_factory():
    """The dag-processor forks its parsing children from a process that loaded the plugins:
    the factory must be among them, under its real name, so no parse imports it again."""
    out = subprocess.run([sys.executable, "-c", _LOAD_PLUGINS], env=os.environ.copy(),
                         capture_output=True, text=True, timeout=300, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == {"plugins": ["reconciler"], "errors": {}, "factory": True, "strays": []}


def test_a_bad_target_is_a_warning_and_the_others_still_load(tmp_path: Path):
    config = tmp_path / "targets.yaml"
    config.write_text(textwrap.dedent("""\
        targets:
          good:
            provider: {type: simulated}
            desired: /nowhere
          bad:
            provider: {type: nope}
            desired: /nowhere
        """))
    code = textwrap.dedent(f"""
        import sys, warnings
        sys.path.insert(0, {str(ROOT / 'plugins')!r})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from reconciler_airflow.factory import build_all
            dags = build_all({str(config)!r})
        print(sorted(dags))
        print([str(w.message) for w in caught if "reconciler" in str(w.message)])
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "['reconcile__good']" in out.stdout and "target 'bad' skipped" in out.stdout


def _parsing_context(monkeypatch, dag_id: str) -> None:
    """As Airflow's task runner sets it before parsing the task's DAG file (its own context
    manager leaves the variable set afterwards, so a test sets it through monkeypatch)."""
    from airflow.sdk.definitions.context import _AIRFLOW_PARSING_CONTEXT_DAG_ID

    monkeypatch.setenv(_AIRFLOW_PARSING_CONTEXT_DAG_ID, dag_id)


def test_a_task_process_builds_only_its_own_dag(monkeypatch):
    from airflow.sdk import get_parsing_context

    from reconciler_airflow.factory import build_all
    from tests.dags.conftest import TARGETS

    assert get_parsing_context().dag_id is None  # the dag-processor's view: every target
    assert set(build_all(str(TARGETS))) == {f"reconcile__{t}" for t in (*TARGET_POLICIES,
                                                                          "cloud")}
    _parsing_context(monkeypatch, "reconcile__sim")
    dags = build_all(str(TARGETS))
    assert list(dags) == ["reconcile__sim"]
    assert dags["reconcile__sim"].get_task("pass_1.actuate").pool == "reconciler__sim"
    _parsing_context(monkeypatch, "reconcile__nobody")
    assert build_all(str(TARGETS)) == {}


def test_a_task_process_dagbag_holds_only_its_dag_and_no_import_error(airflow_db, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    _parsing_context(monkeypatch, "reconcile__gated")
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {} and bag.dag_ids == ["reconcile__gated"]


def test_a_task_process_warns_only_about_its_own_bad_target(tmp_path: Path, monkeypatch):
    import warnings

    from reconciler_airflow.factory import build_all

    config = tmp_path / "targets.yaml"
    config.write_text(textwrap.dedent("""\
        targets:
          good:
            provider: {type: simulated}
            desired: /nowhere
          bad:
            provider: {type: nope}
            desired: /nowhere
        """))
    for wanted, dags, warned in (("reconcile__good", ["reconcile__good"], []),
                                 ("reconcile__bad", [], ["bad"])):
        _parsing_context(monkeypatch, wanted)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert list(build_all(str(config))) == dags
        assert [n for n in ("good", "bad") for w in caught
                if f"target {n!r} skipped" in str(w.message)] == warned


def test_an_unreadable_config_builds_no_dags_but_imports(tmp_path: Path):
    config = tmp_path / "targets.yaml"
    config.write_text("targets: [unclosed\n")
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'plugins')!r});"
            f"from reconciler_airflow.factory import build_all; print(build_all({str(config)!r}))")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "{}", out.stderr[-2000:]


def test_setup_derives_pools_and_aws_connections_from_the_targets(tmp_path: Path):
    from reconciler_airflow.setup import connections_for, pools_for

    config = tmp_path / "targets.yaml"
    config.write_text(textwrap.dedent("""\
        targets:
          a:
            provider: {type: simulated}
            desired: /nowhere
            policy: {max_parallel: 16}
          b:
            provider: {type: aws, options: {aws_conn_id: aws_prod, region: eu-west-1}}
            desired: /nowhere
        """))
    pools = pools_for(str(config))
    assert pools["reconciler__a"]["slots"] == 16 and pools["reconciler__b"]["slots"] == 8
    assert not pools["reconciler__a"]["include_deferred"]
    conns = connections_for(str(config))
    assert list(conns) == ["aws_prod"]
    assert '"region_name": "eu-west-1"' in conns["aws_prod"]["extra"]


_PLUGIN_UI = """
import json
from airflow import plugins_manager
plugins, _ = plugins_manager._get_plugins()
ours = next(p for p in plugins if p.name == "reconciler")
print(json.dumps({"views": [[v["destination"], v["href"], v["url_route"]]
                            for v in ours.external_views],
                  "links": [type(link).__name__ for link in ours.operator_extra_links]}))
"""


def test_the_plugin_adds_a_drift_tab_to_each_run_and_an_extra_link_class():
    out = subprocess.run([sys.executable, "-c", _PLUGIN_UI], env=os.environ.copy(),
                         capture_output=True, text=True, timeout=300, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded["views"] == [["nav", "reconciler/", "reconciler"],
                               ["dag_run", "reconciler/runs/{DAG_ID}/{RUN_ID}",
                                "reconciler-drift"]]
    assert loaded["links"] == ["CycleLink"]


def test_an_actuate_task_instance_links_to_its_runs_cycle_page(dagbag, monkeypatch):
    from airflow.models.taskinstancekey import TaskInstanceKey

    from reconciler.orchestration.runtime import correlation_id_for_run

    run_id = "manual__2026-12-01T10:00:00+00:00"
    task = dagbag.dags["reconcile__sim"].get_task(tg.actuate_task(1))
    (link,) = [x for x in task.operator_extra_links if x.name == "Drift cycle"]
    key = TaskInstanceKey("reconcile__sim", tg.actuate_task(1), run_id, 1, 0)
    cid = correlation_id_for_run("sim", run_id)
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    assert link.get_link(task, ti_key=key) == f"reconciler/targets/sim/cycles/{cid}"
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://air.example/x/")
    assert link.get_link(task, ti_key=key) == \
        f"https://air.example/x/reconciler/targets/sim/cycles/{cid}"
    assert cid != correlation_id_for_run("sim", "another run")  # the link names this run's cycle
