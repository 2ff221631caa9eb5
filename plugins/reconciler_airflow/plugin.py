"""The ``reconciler`` Airflow plugin: the drift dashboard inside Airflow's UI.

A FastAPI app mounted by the api-server at ``/reconciler`` (HTML pages and a JSON API, all
behind Airflow's own authentication and authorization), a navigation entry that shows it
in the UI, a "Drift" tab on every DAG run (its cycle's page) and the "Drift cycle" extra link
of ``actuate`` task instances. Every Airflow process loads this file (task runners do, for
macros), so the app and Airflow's API security modules are only imported where
``fastapi_apps`` is read: the api-server.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from reconciler_airflow.links import CycleLink

__all__ = ["ReconcilerPlugin"]

# A small gauge: the nav icon (a data URI, since the machine serving it may have no internet).
_ICON = ("data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24' "
         "fill='none' stroke='%23888' stroke-width='2'><path d='M3 17a9 9 0 0 1 18 0'/>"
         "<path d='M12 17l5-6'/></svg>")


@cache
def _apps() -> list[dict[str, Any]]:
    from reconciler_airflow.ui.app import MOUNT, create_app

    return [{"app": create_app(), "url_prefix": MOUNT, "name": "Reconciler drift dashboard"}]


class ReconcilerPlugin(AirflowPlugin):
    name = "reconciler"
    external_views = [{
        "name": "Drift dashboard",
        "href": "reconciler/",  # relative to the UI's base URL (works under a path prefix)
        "url_route": "reconciler",
        "destination": "nav",
        "category": "browse",
        "icon": _ICON,
    }, {
        # A tab on each DAG run; the UI fills in {DAG_ID}/{RUN_ID}, the dashboard redirects to
        # the run's cycle (runs of other DAGs get a 404 page saying so).
        "name": "Drift",
        "href": "reconciler/runs/{DAG_ID}/{RUN_ID}",
        "url_route": "reconciler-drift",
        "destination": "dag_run",
        "icon": _ICON,
    }]
    operator_extra_links = [CycleLink()]

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """Built on first read, once per process (only the api-server reads it)."""
        return _apps()
