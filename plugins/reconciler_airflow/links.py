"""The ``Drift cycle`` extra link of ``actuate`` task instances: to the dashboard's page of the
cycle the task's run belongs to (its correlation id derives from the run id).

Airflow computes it in the worker when the task finishes and keeps it as an XCom; the UI shows it
on the task instance. With ``[api] base_url`` set the link is absolute, else it is relative to the
UI's base URL (which the UI's pages declare as their ``<base href>``).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

__all__ = ["CycleLink", "cycle_url"]


def cycle_url(target: str, run_id: str, base_url: str | None = None) -> str:
    from reconciler_airflow.ui.runlinks import cycle_path

    prefix = f"{base_url.rstrip('/')}/" if base_url else ""
    return f"{prefix}reconciler/{cycle_path(target, run_id)}"


class CycleLink(BaseOperatorLink):
    """Link from an actuate task instance to its cycle's page on the drift dashboard."""

    name = "Drift cycle"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.configuration import conf

        # the worker passes the concrete task; a parsed DAG still has the mapped one
        target = getattr(operator, "target", None) or operator.partial_kwargs["target"]
        return cycle_url(target, ti_key.run_id,
                         conf.get("api", "base_url", fallback=None) or None)
