"""One reconciliation DAG per target in the targets config ($RECONCILER_CONFIG).

Wiring only: the factory reads the small targets file and builds tasks; the desired state,
the provider and the state store are touched only when tasks run. A task process builds only
its own DAG (``build_all`` reads Airflow's parsing context).
"""

from reconciler_airflow.factory import build_all

globals().update(build_all())
