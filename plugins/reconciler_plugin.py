"""Airflow's entry point into the ``reconciler_airflow`` package (the only module under
``plugins/`` Airflow loads by path; ``.airflowignore`` keeps it off the package's modules, so
each is imported once, under its real name).

Every Airflow process loads plugins at start, the dag-processor's manager included, and its
parsing children are forked from it: importing the DAG factory here means no parse of
``dags/`` pays for importing it again.
"""

import reconciler_airflow.factory  # noqa: F401  (pre-loaded for the dag-processor's children)
from reconciler_airflow.plugin import ReconcilerPlugin

__all__ = ["ReconcilerPlugin"]
