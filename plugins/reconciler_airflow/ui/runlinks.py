"""Which Airflow run recorded a cycle: the cycle's correlation id is a hash of the run id, so the
record task stores ``dag_id``/``run_id`` (and the run's artifact references) as an audit row that
the dashboard turns into links to the run's grid and task logs. No Airflow import here."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

__all__ = ["RUN_LINK", "cycle_path", "record_run_link", "run_link"]

log = logging.getLogger(__name__)
RUN_LINK = "airflow_run"


def cycle_path(target: str, run_id: str) -> str:
    """The dashboard's page of the cycle an Airflow run of ``target`` ran, under its mount."""
    from reconciler.orchestration.runtime import correlation_id_for_run

    cid = correlation_id_for_run(target, run_id)
    return f"targets/{quote(target, safe='')}/cycles/{quote(cid, safe='')}"


def run_link(store: Any, target: str, correlation_id: str) -> dict[str, Any] | None:
    """The newest run link of a cycle: ``{"dag_id", "run_id", "diff_ref", ...}`` or None."""
    rows = store.audit_rows(target=target, kind="operator", correlation_id=correlation_id,
                            limit=50)
    for row in rows:
        if row["payload"].get("what") == RUN_LINK:
            return dict(row["payload"].get("detail") or {})
    return None


def record_run_link(store: Any, target: str, correlation_id: str, dag_id: str, run_id: str,
                    **refs: str | None) -> None:
    """Write the link once per cycle (a retried record task adds nothing); never raises."""
    try:
        if run_link(store, target, correlation_id) is not None:
            return
        detail = {"dag_id": dag_id, "run_id": run_id,
                  **{k: v for k, v in refs.items() if v}}
        store.record_operator(target, "airflow", RUN_LINK, detail, correlation_id)
    except Exception:  # a missing link only costs the dashboard a hyperlink
        log.warning("could not record the Airflow run of cycle %s", correlation_id, exc_info=True)
