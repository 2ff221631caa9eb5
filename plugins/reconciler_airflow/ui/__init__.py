"""The drift dashboard: a FastAPI app mounted by the ``reconciler`` Airflow plugin at /reconciler.

Kept import-light: task processes import :mod:`.runlinks` from here, and only the api-server
builds the app (``reconciler_airflow.ui.app``).
"""
