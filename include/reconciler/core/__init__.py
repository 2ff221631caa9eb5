"""The pure reconciliation engine: sense, compare, plan, actuate, convergence, loop.

Nothing here imports Airflow, boto3 or great_expectations; I/O and time come in through
the ports in :mod:`reconciler.core.ports` (an import-linter contract checks this).
"""
