"""Reconciler: drift detection and self-healing for a cloud fleet (core library, no Airflow)."""

__version__ = "0.1.0"
