"""Reconciler's Airflow shell: DAG factory, task callables, alerts. The only Airflow-aware code
besides ``dags/``; everything it runs lives in the ``reconciler`` package."""
