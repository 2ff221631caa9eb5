"""The dashboard's two buttons, each audited with the user's name: reset a breaker, run a dry run.

A dry run is created the way Airflow's own ``airflow dags trigger`` creates one: the api-server
already holds the metadata database, so the plugin calls ``airflow.api.common.trigger_dag``
in-process instead of calling its own REST API back with the user's token.
"""

from __future__ import annotations

import logging
from typing import Any

from reconciler.core import breaker as brk
from reconciler.orchestration.runtime import correlation_id_for_run
from reconciler.output.metrics import Metrics
from reconciler.store import SqlStore
from reconciler_airflow.ui.data import dag_id

__all__ = ["reset_breaker", "trigger_dry_run"]

log = logging.getLogger(__name__)


def reset_breaker(st: SqlStore, target: str, actor: str) -> dict[str, Any]:
    """Open (or half-open) → half-open: the next cycle is a trial. Audited even when closed."""
    before = st.load_breaker(target)
    after = st.update_breaker(target, brk.reset)
    st.record_operator(target, actor, "breaker_reset",
                       {"via": "dashboard", "from": before.state, "to": after.state})
    Metrics.from_settings().breaker(after)
    log.info("breaker of %s reset by %s: %s -> %s", target, actor, before.state, after.state)
    return {"target": target, "actor": actor, "before": before.model_dump(mode="json"),
            "breaker": after.model_dump(mode="json")}


def trigger_dry_run(st: SqlStore, target: str, actor: str) -> dict[str, Any]:
    """Queue a ``dry_run`` run of the target's DAG as this user; the cycle changes nothing."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType

    dag = dag_id(target)
    run = trigger_dag(dag, triggered_by=DagRunTriggeredByType.UI, triggering_user_name=actor,
                      conf={"dry_run": True}, note=f"dry run from the drift dashboard by {actor}")
    if run is None:
        raise RuntimeError(f"{dag}: no run created")
    cid = correlation_id_for_run(target, run.run_id)
    st.record_operator(target, actor, "dry_run_triggered",
                       {"via": "dashboard", "dag_id": dag, "run_id": run.run_id}, cid)
    log.info("dry run of %s triggered by %s: %s", target, actor, run.run_id)
    return {"target": target, "actor": actor, "dag_id": dag, "run_id": run.run_id,
            "correlation_id": cid, "state": str(run.state)}
